"""Tracing: the execution span, its events, attempt spans, context propagation and sampling."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind, StatusCode

from resilio import (
    Bulkhead,
    CircuitBreaker,
    CircuitOpen,
    Context,
    Fallback,
    Idempotency,
    Pipeline,
    Retry,
    Timeout,
    telemetry,
)
from resilio.testing import FakeClock

from .conftest import Tracing


def _flaky(failures: int, error: type[Exception] = ConnectionError) -> Any:
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise error("down")
        return "ok"

    return fn


def _events(span: Any) -> list[str]:
    return [e.name for e in span.events]


class TestExecutionSpan:
    def test_success_span_shape(self, tracing: Tracing, clock: FakeClock) -> None:
        """A success makes one INTERNAL span named after the pipeline, a child of the caller's."""
        p = Pipeline(
            [Retry(attempts=3, backoff=0)],
            name="orders",
            clock=clock,
            tracer_provider=tracing.provider,
        )
        with tracing.tracer.start_as_current_span("caller") as caller:
            assert p.execute(lambda: 42, context=Context("orders.create")) == 42
        span = tracing.named("resilio orders")[0]
        assert span.kind is SpanKind.INTERNAL
        assert span.parent is not None
        assert span.parent.span_id == caller.get_span_context().span_id
        assert dict(span.attributes or {}) == {
            "resilio.pipeline": "orders",
            "resilio.operation": "orders.create",
            "resilio.attempts": 1,
            "resilio.outcome": "success",
        }
        assert span.status.status_code is StatusCode.UNSET
        assert span.events == ()

    def test_retries_are_span_events(self, tracing: Tracing, clock: FakeClock) -> None:
        """Each scheduled retry is a span event with attempt, delay and error type."""
        p = Pipeline(
            [Retry(attempts=3, backoff=0.5)],
            name="p",
            clock=clock,
            tracer_provider=tracing.provider,
        )
        assert p.execute(_flaky(2)) == "ok"
        span = tracing.named("resilio p")[0]
        assert _events(span) == ["resilio.retry.scheduled", "resilio.retry.scheduled"]
        first = dict(span.events[0].attributes or {})
        assert first["resilio.attempt"] == 1
        assert first["resilio.delay"] == pytest.approx(0.5)
        assert first["error.type"] == "ConnectionError"
        assert first["resilio.policy"] == "retry"
        assert span.attributes["resilio.attempts"] == 3  # type: ignore[index]

    def test_failure_sets_error_status_and_type(self, tracing: Tracing, clock: FakeClock) -> None:
        """A failure has ERROR status (no description), error.type and one exception event."""
        p = Pipeline(
            [Retry(attempts=2, backoff=0)], name="p", clock=clock, tracer_provider=tracing.provider
        )
        with pytest.raises(ConnectionError):
            p.execute(_flaky(5))
        span = tracing.named("resilio p")[0]
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description is None
        assert span.attributes["error.type"] == "ConnectionError"  # type: ignore[index]
        assert span.attributes["resilio.outcome"] == "failure"  # type: ignore[index]
        exceptions = [e for e in span.events if e.name == "exception"]
        assert len(exceptions) == 1
        assert dict(exceptions[0].attributes or {}) == {"exception.type": "ConnectionError"}
        assert "resilio.retry.gave_up" in _events(span)

    def test_breaker_open_half_open_and_rejection(self, tracing: Tracing, clock: FakeClock) -> None:
        """Breaker transitions and rejections are events; a rejection's outcome is rejected."""
        breaker = CircuitBreaker(failure_threshold=2, break_duration=10)
        p = Pipeline([breaker], name="cb", clock=clock, tracer_provider=tracing.provider)
        for _ in range(2):
            with pytest.raises(ConnectionError):
                p.execute(_flaky(1))
        with pytest.raises(CircuitOpen):
            p.execute(lambda: "never")
        clock.advance(11)
        assert p.execute(lambda: "back") == "back"
        spans = tracing.named("resilio cb")
        assert "resilio.circuit.opened" in _events(spans[1])
        opened = next(e for e in spans[1].events if e.name == "resilio.circuit.opened")
        assert opened.attributes["resilio.break_duration"] == 10  # type: ignore[index]
        assert opened.attributes["resilio.state"] == "open"  # type: ignore[index]
        rejected = spans[2]
        assert rejected.attributes["resilio.outcome"] == "rejected"  # type: ignore[index]
        assert rejected.attributes["error.type"] == "resilio.errors.CircuitOpen"  # type: ignore[index]
        assert _events(rejected) == ["resilio.call.rejected", "exception"]
        assert rejected.events[0].attributes["resilio.retry_after"] == pytest.approx(10)  # type: ignore[index]
        assert _events(spans[3]) == ["resilio.circuit.half_opened", "resilio.circuit.closed"]
        states = [e.attributes["resilio.state"] for e in spans[3].events]  # type: ignore[index]
        assert states == ["half_open", "closed"]

    def test_fallback_outcome(self, tracing: Tracing, clock: FakeClock) -> None:
        """A fallback that replaced a failure gives outcome fallback, no ERROR, one event."""
        p = Pipeline(
            [Fallback(value="cached")], name="fb", clock=clock, tracer_provider=tracing.provider
        )
        assert p.execute(_flaky(1)) == "cached"
        span = tracing.named("resilio fb")[0]
        assert span.attributes["resilio.outcome"] == "fallback"  # type: ignore[index]
        assert span.status.status_code is StatusCode.UNSET
        assert _events(span) == ["resilio.fallback.used"]

    def test_idempotent_replay_event(self, tracing: Tracing, clock: FakeClock) -> None:
        """A replayed duplicate is a success span with one replay event and no key in it."""
        p = Pipeline([Idempotency()], name="idem", clock=clock, tracer_provider=tracing.provider)
        assert p.execute(lambda: 7, context=Context("send", idempotency_key="k-123")) == 7
        assert p.execute(lambda: 8, context=Context("send", idempotency_key="k-123")) == 7
        first, second = tracing.named("resilio idem")
        assert _events(first) == []
        assert _events(second) == ["resilio.idempotency.replayed"]
        replay = dict(second.events[0].attributes or {})
        assert replay["resilio.policy"] == "idempotency"
        assert "k-123" not in repr(replay)
        assert second.attributes["resilio.outcome"] == "success"  # type: ignore[index]

    async def test_async_breaker_rejection_and_fallback(
        self, tracing: Tracing, clock: FakeClock
    ) -> None:
        """Async: opening, half-open, rejection and fallback are events on the right spans."""
        breaker = CircuitBreaker(failure_threshold=1, break_duration=10)
        p = Pipeline(
            [Fallback(value="cached"), breaker],
            name="acb",
            clock=clock,
            tracer_provider=tracing.provider,
        )

        async def failing() -> str:
            raise ConnectionError("down")

        async def fine() -> str:
            return "live"

        assert await p.execute_async(failing) == "cached"
        assert await p.execute_async(fine) == "cached"
        clock.advance(11)
        assert await p.execute_async(fine) == "live"
        opened, rejected, recovered = tracing.named("resilio acb")
        assert _events(opened) == ["resilio.circuit.opened", "resilio.fallback.used"]
        assert _events(rejected) == ["resilio.call.rejected", "resilio.fallback.used"]
        assert rejected.attributes["resilio.outcome"] == "fallback"  # type: ignore[index]
        assert _events(recovered) == ["resilio.circuit.half_opened", "resilio.circuit.closed"]
        assert recovered.attributes["resilio.outcome"] == "success"  # type: ignore[index]

    async def test_async_spans_and_events(self, tracing: Tracing, clock: FakeClock) -> None:
        """Async executions are traced alike and stay children of the awaiting task's span."""
        p = Pipeline(
            [Retry(attempts=3, backoff=0)], name="a", clock=clock, tracer_provider=tracing.provider
        )
        state = {"n": 0}

        async def call() -> str:
            state["n"] += 1
            await asyncio.sleep(0)
            if state["n"] == 1:
                raise ConnectionError("down")
            return "ok"

        with tracing.tracer.start_as_current_span("caller"):
            assert await p.execute_async(call) == "ok"
        span = tracing.named("resilio a")[0]
        assert span.parent is not None
        assert _events(span) == ["resilio.retry.scheduled"]
        assert span.attributes["resilio.attempts"] == 2  # type: ignore[index]

    async def test_async_timeout_event(self, tracing: Tracing, clock: FakeClock) -> None:
        """An async timeout records a timeout event and fails with the timeout's error type."""
        p = Pipeline([Timeout(1)], name="t", clock=clock, tracer_provider=tracing.provider)

        async def slow() -> None:
            await clock.sleep_async(5)

        with pytest.raises(TimeoutError):
            await p.execute_async(slow)
        assert clock.monotonic() == 1001.0
        span = tracing.named("resilio t")[0]
        assert "resilio.timeout.exceeded" in _events(span)
        assert span.attributes["error.type"] == "resilio.errors.TimeoutExceeded"  # type: ignore[index]
        assert span.attributes["resilio.outcome"] == "failure"  # type: ignore[index]

    def test_cancellation_ends_span_without_error(self, tracing: Tracing) -> None:
        """A BaseException that is not an Exception ends the span as cancelled, not as a failure."""
        p = Pipeline([Retry(attempts=3, backoff=0)], name="k", tracer_provider=tracing.provider)

        def interrupted() -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            p.execute(interrupted)
        span = tracing.named("resilio k")[0]
        assert span.attributes["resilio.outcome"] == "cancelled"  # type: ignore[index]
        assert span.status.status_code is StatusCode.UNSET
        assert trace.get_current_span() is trace.INVALID_SPAN


class TestAttemptSpans:
    def test_attempt_children_hold_the_functions_spans(
        self, tracing: Tracing, clock: FakeClock
    ) -> None:
        """With trace_attempts each attempt is a child span holding the function's spans."""
        p = Pipeline(
            [Retry(attempts=3, backoff=0)],
            name="p",
            clock=clock,
            tracer_provider=tracing.provider,
            trace_attempts=True,
        )
        state = {"n": 0}

        def call() -> str:
            state["n"] += 1
            with tracing.tracer.start_as_current_span("http"):
                if state["n"] == 1:
                    raise ConnectionError("reset")
            return "ok"

        assert p.execute(call) == "ok"
        execution = tracing.named("resilio p")[0]
        attempts = tracing.named("resilio p attempt")
        https = tracing.named("http")
        assert [a.attributes["resilio.attempt"] for a in attempts] == [1, 2]  # type: ignore[index]
        assert all(a.parent.span_id == execution.context.span_id for a in attempts)  # type: ignore[union-attr]
        assert [h.parent.span_id for h in https] == [a.context.span_id for a in attempts]  # type: ignore[union-attr]
        assert attempts[0].status.status_code is StatusCode.ERROR
        assert attempts[0].attributes["error.type"] == "ConnectionError"  # type: ignore[index]
        assert [e.name for e in attempts[0].events] == []

    async def test_async_attempt_children_hold_the_functions_spans(
        self, tracing: Tracing, clock: FakeClock
    ) -> None:
        """Async: a span made across an await inside an attempt is that attempt's child."""
        p = Pipeline(
            [Retry(attempts=3, backoff=0)],
            name="aa",
            clock=clock,
            tracer_provider=tracing.provider,
            trace_attempts=True,
        )
        state = {"n": 0}

        async def call() -> str:
            state["n"] += 1
            await asyncio.sleep(0)
            with tracing.tracer.start_as_current_span("http"):
                await asyncio.sleep(0)
                if state["n"] == 1:
                    raise ConnectionError("reset")
            return "ok"

        with tracing.tracer.start_as_current_span("caller") as caller:
            assert await p.execute_async(call) == "ok"
        execution = tracing.named("resilio aa")[0]
        attempts = tracing.named("resilio aa attempt")
        https = tracing.named("http")
        assert execution.parent.span_id == caller.get_span_context().span_id  # type: ignore[union-attr]
        assert [h.parent.span_id for h in https] == [a.context.span_id for a in attempts]  # type: ignore[union-attr]
        assert {a.context.trace_id for a in attempts} == {caller.get_span_context().trace_id}

    def test_bulkhead_runs_in_the_callers_thread(self, tracing: Tracing) -> None:
        """A bulkhead has no worker thread: the function's span is the execution's child."""
        p = Pipeline([Bulkhead(max_concurrent=2)], name="bh", tracer_provider=tracing.provider)
        seen: dict[str, Any] = {}

        def call() -> None:
            seen["thread"] = threading.current_thread()
            with tracing.tracer.start_as_current_span("work"):
                pass

        p.execute(call)
        assert seen["thread"] is threading.current_thread()
        work, execution = tracing.spans()
        assert work.parent.span_id == execution.context.span_id  # type: ignore[union-attr]

    def test_thread_timeout_propagates_context(self, tracing: Tracing) -> None:
        """Spans made in the thread-timeout worker are children of the caller's attempt span."""
        p = Pipeline(
            [Retry(attempts=2, backoff=0), Timeout(5, mode="thread")],
            name="tt",
            tracer_provider=tracing.provider,
            trace_attempts=True,
        )
        seen: dict[str, Any] = {}

        def call() -> str:
            seen["thread"] = threading.current_thread().name
            with tracing.tracer.start_as_current_span("work"):
                return "ok"

        assert p.execute(call) == "ok"
        assert seen["thread"] != threading.current_thread().name
        attempt = tracing.named("resilio tt attempt")[0]
        work = tracing.named("work")[0]
        assert work.parent is not None
        assert work.parent.span_id == attempt.context.span_id

    def test_thread_timeout_event_reaches_the_span(
        self, tracing: Tracing, clock: FakeClock
    ) -> None:
        """A thread-mode timeout is recorded as an event on the caller's execution span."""
        release = threading.Event()
        p = Pipeline(
            [Timeout(1, mode="thread")], name="tt2", clock=clock, tracer_provider=tracing.provider
        )

        def overrun() -> None:
            clock.advance(2)  # past the deadline on the clock, then hang
            release.wait(5)

        try:
            with pytest.raises(TimeoutError):
                p.execute(overrun)
        finally:
            release.set()
        span = tracing.named("resilio tt2")[0]
        assert "resilio.timeout.exceeded" in _events(span)


class TestSamplingAndSwitches:
    def test_always_off_makes_no_span(self) -> None:
        """An ALWAYS_OFF provider is detected and no span is started at all."""
        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=ALWAYS_OFF)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        p = Pipeline([Retry(attempts=2, backoff=0)], name="off", tracer_provider=provider)
        assert p.execute(lambda: 1) == 1
        assert p._instrumentation._tracer() is None
        assert exporter.get_finished_spans() == ()

    def test_parent_based_off_traces_under_a_sampled_parent(self, tracing: Tracing) -> None:
        """ParentBased(ALWAYS_OFF) skips root executions but traces those under a sampled parent."""
        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        p = Pipeline([], name="pb", tracer_provider=provider)
        p.execute(lambda: 1)
        assert exporter.get_finished_spans() == ()
        with tracing.tracer.start_as_current_span("sampled-parent"):
            p.execute(lambda: 1)
        assert [s.name for s in exporter.get_finished_spans()] == ["resilio pb"]

    def test_attributes_only_when_recording(
        self, tracing: Tracing, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Under a valid but unsampled parent the span is made, no attribute is built."""
        from resilio.telemetry import otel

        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
        provider.add_span_processor(SimpleSpanProcessor(exporter))

        built: list[Any] = []

        def spy(event: Any) -> dict[str, Any]:
            built.append(event)
            return {}

        monkeypatch.setattr(otel, "event_attributes", spy)
        p = Pipeline([Retry(attempts=2, backoff=0)], name="nr", tracer_provider=provider)
        unsampled = trace.SpanContext(
            trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=trace.TraceFlags(0)
        )
        seen: dict[str, Any] = {}

        def call() -> str:
            seen.setdefault("spans", []).append(trace.get_current_span())
            if len(seen["spans"]) == 1:
                raise ConnectionError("down")
            return "ok"

        with trace.use_span(trace.NonRecordingSpan(unsampled)):
            assert p.execute(call) == "ok"
        inner = seen["spans"][0]
        assert inner.get_span_context().trace_id == 0x1234
        assert inner.get_span_context().span_id != 0x5678
        assert not inner.is_recording()
        assert built == []
        assert exporter.get_finished_spans() == ()

    def test_tracing_switch(self, tracing: Tracing) -> None:
        """configure(tracing=False) stops spans for pipelines already built."""
        p = Pipeline([], name="sw", tracer_provider=tracing.provider)
        telemetry.configure(tracing=False)
        p.execute(lambda: 1)
        assert tracing.spans() == []
        telemetry.configure(tracing=True)
        p.execute(lambda: 1)
        assert len(tracing.spans()) == 1

    def test_telemetry_false_means_no_instrumentation(self, tracing: Tracing) -> None:
        """Pipeline(telemetry=False) has no listeners from telemetry and makes no span."""
        p = Pipeline([], name="none", telemetry=False, tracer_provider=tracing.provider)
        p.execute(lambda: 1)
        assert p._instrumentation is None
        assert tracing.spans() == []

    def test_global_provider_set_after_build_is_used(self) -> None:
        """A global provider set after the pipeline was built is picked up (in a fresh process)."""
        code = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from resilio import Pipeline
p = Pipeline([], name="late")
p.execute(lambda: 1)
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
p.execute(lambda: 1)
print([s.name for s in exporter.get_finished_spans()])
"""
        root = str(Path(__file__).resolve().parents[2])
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
            cwd=root,
            env={**os.environ, "PYTHONPATH": root},
        )
        assert out.stdout.strip() == "['resilio late']"
