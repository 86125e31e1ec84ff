"""Cancelled executions: counted, timed and traced with the outcome ``cancelled``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

from resilio import Fallback, Pipeline, Retry, telemetry
from resilio.testing import FakeClock

from .conftest import Metrics, Tracing

CANCELLED = (("resilio.outcome", "cancelled"), ("resilio.pipeline", "c"))
FAILED_ATTEMPT = (("resilio.outcome", "failure"), ("resilio.pipeline", "c"))


def _points(data: dict[str, Any], name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    return {tuple(sorted(a.items())): v for a, v in data.get(name, [])}


def _pipeline(
    clock: FakeClock, metrics: Metrics, tracing: Tracing | None, trace_attempts: bool
) -> Pipeline:
    return Pipeline(
        [Retry(attempts=3, backoff=0)],
        name="c",
        clock=clock,
        meter_provider=metrics.provider,
        tracer_provider=tracing.provider if tracing is not None else None,
        trace_attempts=trace_attempts,
    )


def _check_metrics(metrics: Metrics, duration: float | None) -> None:
    data = metrics.collect()
    executions = _points(data, "resilio.executions")
    # Counted once, as cancelled, with no error.type (and nothing else counted).
    assert executions == {CANCELLED: 1}
    # The first attempt failed (it was retried); the interrupted second one is not counted.
    assert _points(data, "resilio.attempts") == {FAILED_ATTEMPT: 1}
    durations = _points(data, "resilio.execution.duration")
    if duration is None:
        assert durations == {}
    else:
        assert durations == {CANCELLED: (1, pytest.approx(duration))}


def _check_span(tracing: Tracing) -> None:
    (span,) = tracing.named("resilio c")
    attributes = dict(span.attributes or {})
    assert attributes["resilio.outcome"] == "cancelled"
    assert attributes["resilio.attempts"] == 2
    assert "error.type" not in attributes
    assert span.status.status_code is StatusCode.UNSET
    assert "exception" not in [e.name for e in span.events]


# (traced, trace_attempts, durations): the traced runner, the attempt layer, the metrics-only
# runner with and without durations.
PATHS = [
    pytest.param(True, False, True, id="traced"),
    pytest.param(True, True, True, id="traced-attempts"),
    pytest.param(False, False, True, id="metrics"),
    pytest.param(False, False, False, id="counters-only"),
]


class TestSync:
    @pytest.mark.parametrize(("traced", "trace_attempts", "durations"), PATHS)
    def test_keyboard_interrupt_is_counted_timed_and_traced(
        self,
        metrics: Metrics,
        tracing: Tracing,
        clock: FakeClock,
        traced: bool,
        trace_attempts: bool,
        durations: bool,
    ) -> None:
        """A KeyboardInterrupt in the second attempt: one cancelled execution, 2 attempts."""
        telemetry.configure(durations=durations)
        p = _pipeline(clock, metrics, tracing if traced else None, trace_attempts)
        calls = {"n": 0}

        def fn() -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("down")
            clock.advance(2.5)
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            p.execute(fn)
        assert calls["n"] == 2
        _check_metrics(metrics, 2.5 if durations else None)
        if traced:
            _check_span(tracing)
        else:
            assert tracing.spans() == []

    def test_fallback_before_an_interrupt_does_not_mark_the_next_call(
        self, metrics: Metrics, clock: FakeClock
    ) -> None:
        """A fallback seen by an execution that is then interrupted is forgotten with it."""
        p = Pipeline(
            [Fallback(value=0), Retry(attempts=1)],
            name="c",
            clock=clock,
            meter_provider=metrics.provider,
        )

        def fails() -> int:
            raise ConnectionError("down")

        armed = {"on": True}

        def interrupting_listener(event: Any) -> None:
            if armed["on"] and event.name == "fallback.used":
                raise KeyboardInterrupt

        p.add_listener(interrupting_listener)
        with pytest.raises(KeyboardInterrupt):
            p.execute(fails)
        armed["on"] = False
        assert p.execute(lambda: 1) == 1
        executions = _points(metrics.collect(), "resilio.executions")
        assert executions[CANCELLED] == 1
        assert executions[(("resilio.outcome", "success"), ("resilio.pipeline", "c"))] == 1
        assert (("resilio.outcome", "fallback"), ("resilio.pipeline", "c")) not in executions


class TestAsync:
    @pytest.mark.parametrize(("traced", "trace_attempts", "durations"), PATHS)
    async def test_task_cancel_is_counted_timed_and_traced(
        self,
        metrics: Metrics,
        tracing: Tracing,
        clock: FakeClock,
        traced: bool,
        trace_attempts: bool,
        durations: bool,
    ) -> None:
        """task.cancel() during the second attempt: one cancelled execution, 2 attempts."""
        telemetry.configure(durations=durations)
        p = _pipeline(clock, metrics, tracing if traced else None, trace_attempts)
        started = asyncio.Event()
        never = asyncio.Event()
        calls = {"n": 0}

        async def fn() -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("down")
            started.set()
            await never.wait()

        task = asyncio.create_task(p.execute_async(fn))
        await started.wait()
        clock.advance(4.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert calls["n"] == 2
        _check_metrics(metrics, 4.0 if durations else None)
        if traced:
            _check_span(tracing)
        else:
            assert tracing.spans() == []
