"""Metrics: counters, duration histograms, gauges and their low-cardinality labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from resilio import (
    CircuitBreaker,
    CircuitOpen,
    Fallback,
    Pipeline,
    RateLimiter,
    Retry,
    telemetry,
)
from resilio.policies._base import Env, Layer, Policy
from resilio.telemetry import metrics as resilio_metrics
from resilio.testing import FakeClock

from .conftest import Metrics


def _points(data: dict[str, Any], name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    return {tuple(sorted(a.items())): v for a, v in data.get(name, [])}


def _flaky(failures: int) -> Any:
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise ConnectionError("down")
        return "ok"

    return fn


class _Bulkhead(Policy):
    kind: ClassVar[str] = "bulkhead"

    def __init__(self) -> None:
        self.name = "pool"
        self.options = None
        self.in_use = 3
        self.queued = 1

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        return Layer(inner, env, self)


class TestCounters:
    def test_executions_and_attempts(self, metrics: Metrics, clock: FakeClock) -> None:
        """Executions are counted by outcome and attempts by their own outcome."""
        p = Pipeline(
            [Retry(attempts=3, backoff=0)], name="m", clock=clock, meter_provider=metrics.provider
        )
        p.execute(lambda: 1)
        p.execute(_flaky(2))
        with pytest.raises(ConnectionError):
            p.execute(_flaky(9))
        data = metrics.collect()
        executions = _points(data, "resilio.executions")
        base = (("resilio.outcome", "success"), ("resilio.pipeline", "m"))
        assert executions[base] == 2
        failed = (
            ("error.type", "ConnectionError"),
            ("resilio.outcome", "failure"),
            ("resilio.pipeline", "m"),
        )
        assert executions[failed] == 1
        attempts = _points(data, "resilio.attempts")
        assert attempts[base] == 2
        assert attempts[(("resilio.outcome", "failure"), ("resilio.pipeline", "m"))] == 5

    def test_events_by_policy_and_name(self, metrics: Metrics, clock: FakeClock) -> None:
        """Policy events are counted with pipeline, policy and event labels."""
        p = Pipeline(
            [Fallback(value=0), Retry(attempts=2, backoff=0)],
            name="e",
            clock=clock,
            meter_provider=metrics.provider,
        )
        p.execute(_flaky(5))
        events = _points(metrics.collect(), "resilio.events")
        key = (
            ("resilio.event", "retry.scheduled"),
            ("resilio.pipeline", "e"),
            ("resilio.policy", "retry"),
        )
        assert events[key] == 1
        assert sum(events.values()) == 3  # scheduled, gave_up, fallback.used

    def test_durations_are_histograms(self, metrics: Metrics, clock: FakeClock) -> None:
        """By default only the execution duration is measured, in seconds, at collection."""
        p = Pipeline(
            [Retry(attempts=2, backoff=0)], name="d", clock=clock, meter_provider=metrics.provider
        )

        def slow() -> int:
            clock.advance(0.25)
            return 1

        p.execute(slow)
        data = metrics.collect()
        base = (("resilio.outcome", "success"), ("resilio.pipeline", "d"))
        assert _points(data, "resilio.execution.duration")[base] == (1, pytest.approx(0.25))
        assert "resilio.attempt.duration" not in data

    def test_attempt_durations_switch(self, metrics: Metrics, clock: FakeClock) -> None:
        """configure(attempt_durations=True) times each attempt of pipelines built after it."""
        telemetry.configure(attempt_durations=True)
        p = Pipeline(
            [Retry(attempts=3, backoff=0)], name="ad", clock=clock, meter_provider=metrics.provider
        )
        state = {"n": 0}

        def call() -> int:
            state["n"] += 1
            clock.advance(0.1 * state["n"])
            if state["n"] == 1:
                raise ConnectionError("down")
            return 1

        p.execute(call)
        durations = _points(metrics.collect(), "resilio.attempt.duration")
        assert durations[(("resilio.outcome", "failure"), ("resilio.pipeline", "ad"))] == (
            1,
            pytest.approx(0.1),
        )
        assert durations[(("resilio.outcome", "success"), ("resilio.pipeline", "ad"))] == (
            1,
            pytest.approx(0.2),
        )

    def test_trace_attempts_times_attempts(self, metrics: Metrics, clock: FakeClock) -> None:
        """A pipeline built with trace_attempts=True records attempt durations too."""
        p = Pipeline(
            [Retry(attempts=2, backoff=0)],
            name="ta",
            clock=clock,
            meter_provider=metrics.provider,
            trace_attempts=True,
        )
        p.execute(lambda: 1)
        durations = _points(metrics.collect(), "resilio.attempt.duration")
        assert durations[(("resilio.outcome", "success"), ("resilio.pipeline", "ta"))][0] == 1

    def test_durations_switch(self, metrics: Metrics, clock: FakeClock) -> None:
        """configure(durations=False) stops both histograms but keeps the counters."""
        telemetry.configure(durations=False, attempt_durations=True)
        p = Pipeline([Retry(attempts=2, backoff=0)], name="nd", meter_provider=metrics.provider)
        p.execute(lambda: 1)
        data = metrics.collect()
        assert "resilio.execution.duration" not in data
        assert "resilio.attempt.duration" not in data
        base = (("resilio.outcome", "success"), ("resilio.pipeline", "nd"))
        assert _points(data, "resilio.executions")[base] == 1
        assert _points(data, "resilio.attempts")[base] == 1

    def test_rejection_counts_no_attempt(self, metrics: Metrics, clock: FakeClock) -> None:
        """A call an open breaker rejected is an execution but not an attempt."""
        p = Pipeline(
            [CircuitBreaker(failure_threshold=1, break_duration=60)],
            name="rj",
            clock=clock,
            meter_provider=metrics.provider,
        )
        with pytest.raises(ConnectionError):
            p.execute(_flaky(1))
        with pytest.raises(CircuitOpen):
            p.execute(lambda: 1)
        data = metrics.collect()
        assert sum(_points(data, "resilio.attempts").values()) == 1
        assert sum(_points(data, "resilio.executions").values()) == 2

    def test_pending_durations_are_bounded(self, metrics: Metrics, clock: FakeClock) -> None:
        """Queued durations beyond MAX_PENDING are recorded at once, none lost."""
        p = Pipeline([], name="b", clock=clock, meter_provider=metrics.provider)
        for _ in range(resilio_metrics.MAX_PENDING + 10):
            p.execute(lambda: 1)
        stats = p._instrumentation.stats
        assert len(stats._pending) == resilio_metrics.MAX_PENDING
        data = metrics.collect()
        base = (("resilio.outcome", "success"), ("resilio.pipeline", "b"))
        assert _points(data, "resilio.execution.duration")[base][0] == (
            resilio_metrics.MAX_PENDING + 10
        )

    def test_rate_limiter_wait_sums_the_seconds_waited(
        self, metrics: Metrics, clock: FakeClock
    ) -> None:
        """resilio.rate_limiter.wait is the total of the waits, per pipeline and limiter."""
        p = Pipeline(
            [RateLimiter(rate=1, per=2, burst=1, max_wait=10, name="api")],
            name="rl",
            clock=clock,
            meter_provider=metrics.provider,
        )
        for _ in range(3):  # the first takes the burst; the next two wait 2s each
            p.execute(lambda: None)
        assert clock.sleeps == [2.0, 2.0]
        waits = _points(metrics.collect(), "resilio.rate_limiter.wait")
        assert waits == {(("resilio.pipeline", "rl"), ("resilio.policy", "api")): 4.0}

    def test_rate_limiter_without_waits_reports_none(
        self, metrics: Metrics, clock: FakeClock
    ) -> None:
        """A limiter that never made a call wait records no wait point."""
        p = Pipeline(
            [RateLimiter(rate=10, burst=10, max_wait=1)],
            name="rl",
            clock=clock,
            meter_provider=metrics.provider,
        )
        p.execute(lambda: None)
        assert _points(metrics.collect(), "resilio.rate_limiter.wait") == {}

    def test_metrics_switch(self, metrics: Metrics) -> None:
        """configure(metrics=False) stops counting for pipelines already built."""
        p = Pipeline([], name="s", meter_provider=metrics.provider)
        telemetry.configure(metrics=False)
        p.execute(lambda: 1)
        assert "resilio.executions" not in metrics.collect()


class TestGauges:
    def test_breaker_state_gauge(self, metrics: Metrics, clock: FakeClock) -> None:
        """The breaker state gauge reads 0 closed, 2 open, 1 half-open."""
        breaker = CircuitBreaker(failure_threshold=1, break_duration=5, name="cb")
        p = Pipeline([breaker], name="g", clock=clock, meter_provider=metrics.provider)
        p.execute(lambda: 1)
        key = (("resilio.pipeline", "g"), ("resilio.policy", "cb"))
        assert _points(metrics.collect(), "resilio.circuit.state")[key] == 0
        with pytest.raises(ConnectionError):
            p.execute(_flaky(1))
        assert _points(metrics.collect(), "resilio.circuit.state")[key] == 2

    def test_isolated_breaker_state_gauge(self, metrics: Metrics, clock: FakeClock) -> None:
        """An isolated breaker reads 3 (it reported nothing), and 0 again once reset."""
        breaker = CircuitBreaker(failure_threshold=1, break_duration=5, name="cb")
        p = Pipeline([breaker], name="iso", clock=clock, meter_provider=metrics.provider)
        p.execute(lambda: 1)
        key = (("resilio.pipeline", "iso"), ("resilio.policy", "cb"))
        breaker.isolate()
        assert _points(metrics.collect(), "resilio.circuit.state")[key] == 3
        with pytest.raises(CircuitOpen):
            p.execute(lambda: 1)
        assert _points(metrics.collect(), "resilio.circuit.state")[key] == 3
        breaker.reset()
        assert _points(metrics.collect(), "resilio.circuit.state")[key] == 0

    def test_bulkhead_gauges(self, metrics: Metrics) -> None:
        """Bulkhead in-use and queued gauges read the policy's attributes."""
        p = Pipeline([_Bulkhead()], name="bh", meter_provider=metrics.provider)
        p.execute(lambda: 1)
        data = metrics.collect()
        key = (("resilio.pipeline", "bh"), ("resilio.policy", "pool"))
        assert _points(data, "resilio.bulkhead.in_use")[key] == 3
        assert _points(data, "resilio.bulkhead.queued")[key] == 1

    def test_outbox_depth(self, metrics: Metrics) -> None:
        """observe_outbox reports the depth function's value under the outbox's name."""
        p = Pipeline([], name="ob", meter_provider=metrics.provider)
        p.execute(lambda: 1)
        resilio_metrics.observe_outbox("emails", lambda: 7)
        try:
            depth = _points(metrics.collect(), "resilio.outbox.depth")
            assert depth[(("resilio.outbox", "emails"),)] == 7
        finally:
            resilio_metrics.unobserve_outbox("emails")
        assert "emails" not in resilio_metrics.outbox_depths()

    def test_labels_are_low_cardinality(self, metrics: Metrics, clock: FakeClock) -> None:
        """Only the documented label keys appear on any metric point."""
        p = Pipeline(
            [Fallback(value=0), Retry(attempts=2, backoff=0)],
            name="l",
            clock=clock,
            meter_provider=metrics.provider,
        )
        p.execute(_flaky(5))
        allowed = {
            "resilio.pipeline",
            "resilio.policy",
            "resilio.event",
            "resilio.outcome",
            "error.type",
            "resilio.outbox",
        }
        for points in metrics.collect().values():
            for attributes, _ in points:
                assert set(attributes) <= allowed


class TestDocumentation:
    def test_every_metric_is_in_the_docs_table(self) -> None:
        """Every metric name and instrument kind is a row of the observability page's table."""
        page = Path(__file__).resolve().parents[2] / "docs" / "observability.md"
        if not page.exists():
            pytest.skip("docs/observability.md is not in this tree")
        rows = [line for line in page.read_text().splitlines() if line.startswith("| `resilio.")]
        documented = {line.split("`")[1]: line.split("|")[2].strip() for line in rows}
        expected = {name: kind for name, (kind, _, _) in resilio_metrics.METRICS.items()}
        assert {n: documented.get(n) for n in expected} == expected
