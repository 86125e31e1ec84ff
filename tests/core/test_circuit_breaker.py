"""Tests of the circuit breaker policy: trip rules, half-open trials, events, sharing."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from resilio._context import Context
from resilio._pipeline import Pipeline
from resilio.classify import Classification, ErrorKind
from resilio.errors import CircuitOpen
from resilio.events import (
    BreakerStoreDegraded,
    CallRejected,
    CircuitClosed,
    CircuitOpened,
)
from resilio.policies.circuit_breaker import CircuitBreaker, CircuitBreakerOptions, CircuitState
from resilio.stores import MemoryBreakerStore
from resilio.testing import EventRecorder, FakeClock


class BadRequest(Exception):
    pass


def classifier(error: BaseException, ctx: Context) -> Classification | None:
    if isinstance(error, BadRequest):
        return Classification(kind=ErrorKind.PERMANENT)
    return None


def make(
    clock: FakeClock, name: str = "p", **options: Any
) -> tuple[CircuitBreaker, Pipeline, EventRecorder]:
    breaker = CircuitBreaker(**options)
    recorder = EventRecorder()
    pipeline = Pipeline(
        [breaker],
        name=name,
        clock=clock,
        listeners=[recorder],
        classifier=classifier,
        telemetry=False,
    )
    return breaker, pipeline, recorder


def state_of(breaker: CircuitBreaker) -> CircuitState:
    return breaker.state


def ok() -> str:
    return "ok"


def down() -> str:
    raise ConnectionError("down")


def bad() -> str:
    raise BadRequest("bad")


async def aok() -> str:
    return "ok"


async def adown() -> str:
    raise ConnectionError("down")


def fail_times(pipeline: Pipeline, n: int) -> None:
    for _ in range(n):
        with pytest.raises(ConnectionError):
            pipeline.execute(down)


class TestConsecutiveFailures:
    def test_opens_after_threshold_and_tripping_call_gets_its_own_error(
        self, clock: FakeClock
    ) -> None:
        """The call that trips the breaker raises its own error; the next gets CircuitOpen."""
        breaker, p, rec = make(clock, failure_threshold=3, break_duration=10)
        fail_times(p, 2)
        assert state_of(breaker) is CircuitState.CLOSED
        with pytest.raises(ConnectionError) as tripped:
            p.execute(down)
        assert state_of(breaker) is CircuitState.OPEN
        clock.advance(4)
        with pytest.raises(CircuitOpen) as info:
            p.execute(ok)
        assert info.value.__cause__ is tripped.value
        assert info.value.retry_after == pytest.approx(6.0)
        assert info.value.pipeline == "p"
        assert info.value.policy == "circuit_breaker"
        opened = rec.of(CircuitOpened)
        assert len(opened) == 1
        assert opened[0].reason == "failures"
        assert opened[0].error_type == "ConnectionError"
        assert [e.reason for e in rec.of(CallRejected)] == ["circuit_open"]

    def test_success_resets_the_run(self, clock: FakeClock) -> None:
        """A success between failures restarts the consecutive count."""
        breaker, p, _ = make(clock, failure_threshold=3)
        fail_times(p, 2)
        assert p.execute(ok) == "ok"
        fail_times(p, 2)
        assert state_of(breaker) is CircuitState.CLOSED
        assert breaker.snapshot().consecutive_failures == 2

    def test_permanent_failures_count_as_neither(self, clock: FakeClock) -> None:
        """PERMANENT failures neither count nor reset the run of counted failures."""
        breaker, p, rec = make(clock, failure_threshold=2)
        fail_times(p, 1)
        for _ in range(5):
            with pytest.raises(BadRequest):
                p.execute(bad)
        assert state_of(breaker) is CircuitState.CLOSED
        assert breaker.snapshot().consecutive_failures == 1
        fail_times(p, 1)
        assert state_of(breaker) is CircuitState.OPEN
        assert rec.of(CircuitOpened)

    def test_no_events_on_closed_success(self, clock: FakeClock) -> None:
        """A success through a closed breaker emits nothing and reads no time."""
        _, p, rec = make(clock)
        assert p.execute(ok) == "ok"
        assert rec.events == []

    async def test_async_opens_and_rejects(self, clock: FakeClock) -> None:
        """The async path trips on the threshold and rejects with CircuitOpen."""
        breaker, p, _ = make(clock, failure_threshold=2, break_duration=5)
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await p.execute_async(adown)
        assert state_of(breaker) is CircuitState.OPEN
        with pytest.raises(CircuitOpen) as info:
            await p.execute_async(aok)
        assert info.value.retry_after == pytest.approx(5.0)


class TestHalfOpen:
    def test_first_call_after_break_is_a_trial_that_closes(self, clock: FakeClock) -> None:
        """After the break the first call runs as a trial; its success closes the circuit."""
        breaker, p, rec = make(clock, failure_threshold=1, break_duration=10)
        fail_times(p, 1)
        clock.advance(9.999)
        with pytest.raises(CircuitOpen):
            p.execute(ok)
        clock.advance(0.001)
        assert p.execute(ok) == "ok"
        assert state_of(breaker) is CircuitState.CLOSED
        assert rec.names() == [
            "circuit.opened",
            "call.rejected",
            "circuit.half_opened",
            "circuit.closed",
        ]
        assert rec.of(CircuitClosed)[0].reason == "recovered"

    def test_trial_failure_reopens_with_escalating_break(self, clock: FakeClock) -> None:
        """A failed trial reopens; the break grows by the multiplier up to the cap."""
        breaker, p, rec = make(
            clock,
            failure_threshold=1,
            break_duration=10,
            break_duration_multiplier=2,
            max_break_duration=25,
        )
        fail_times(p, 1)
        for expected in (20, 25, 25):
            clock.advance(1000)
            fail_times(p, 1)
            assert state_of(breaker) is CircuitState.OPEN
            assert breaker.snapshot().retry_after == pytest.approx(expected)
        durations = [e.break_duration for e in rec.of(CircuitOpened)]
        assert durations == [10, 20, 25, 25]
        assert [e.reason for e in rec.of(CircuitOpened)][1:] == ["half_open_failure"] * 3
        clock.advance(1000)
        p.execute(ok)
        fail_times(p, 1)
        assert breaker.snapshot().retry_after == pytest.approx(10)

    def test_success_threshold(self, clock: FakeClock) -> None:
        """It takes success_threshold successful trials to close."""
        breaker, p, _ = make(clock, failure_threshold=1, break_duration=1, success_threshold=3)
        fail_times(p, 1)
        clock.advance(1)
        p.execute(ok)
        p.execute(ok)
        assert state_of(breaker) is CircuitState.HALF_OPEN
        p.execute(ok)
        assert state_of(breaker) is CircuitState.CLOSED

    def test_permanent_trial_failure_frees_the_slot(self, clock: FakeClock) -> None:
        """A PERMANENT failure during a trial neither closes nor reopens, and frees the slot."""
        breaker, p, _ = make(clock, failure_threshold=1, break_duration=1)
        fail_times(p, 1)
        clock.advance(1)
        with pytest.raises(BadRequest):
            p.execute(bad)
        assert state_of(breaker) is CircuitState.HALF_OPEN
        assert p.execute(ok) == "ok"
        assert state_of(breaker) is CircuitState.CLOSED

    async def test_half_open_admits_at_most_max_calls(self, clock: FakeClock) -> None:
        """While trials are in flight, calls beyond half_open_max_calls are rejected."""
        breaker, p, _ = make(clock, failure_threshold=1, break_duration=1, half_open_max_calls=2)
        with pytest.raises(ConnectionError):
            await p.execute_async(adown)
        clock.advance(1)
        gate = asyncio.Event()

        async def slow() -> str:
            await gate.wait()
            return "ok"

        trials = [asyncio.create_task(p.execute_async(slow)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(CircuitOpen) as info:
            await p.execute_async(aok)
        assert info.value.retry_after is None
        assert "is half-open and every trial slot is taken" in str(info.value)
        gate.set()
        assert await asyncio.gather(*trials) == ["ok", "ok"]
        assert state_of(breaker) is CircuitState.CLOSED

    async def test_lost_trial_frees_its_slot_after_a_break(self, clock: FakeClock) -> None:
        """A trial that never reports stops holding its slot after break_duration."""
        breaker, p, _ = make(clock, failure_threshold=1, break_duration=5)
        with pytest.raises(ConnectionError):
            await p.execute_async(adown)
        clock.advance(5)
        never = asyncio.Event()

        async def hang() -> str:
            await never.wait()
            return "late"

        lost = asyncio.create_task(p.execute_async(hang))
        await asyncio.sleep(0)
        with pytest.raises(CircuitOpen):
            await p.execute_async(aok)
        clock.advance(4.9)
        with pytest.raises(CircuitOpen):
            await p.execute_async(aok)
        clock.advance(0.1)
        assert await p.execute_async(aok) == "ok"
        assert state_of(breaker) is CircuitState.CLOSED
        never.set()
        assert await lost == "late"  # a late report from a freed trial changes nothing
        assert state_of(breaker) is CircuitState.CLOSED

    async def test_cancelled_trial_frees_its_slot_at_once(self, clock: FakeClock) -> None:
        """Cancelling a trial call releases its slot immediately, without counting it."""
        breaker, p, _ = make(clock, failure_threshold=1, break_duration=5)
        with pytest.raises(ConnectionError):
            await p.execute_async(adown)
        clock.advance(5)
        task = asyncio.create_task(p.execute_async(asyncio.sleep, 3600))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert state_of(breaker) is CircuitState.HALF_OPEN
        assert await p.execute_async(aok) == "ok"
        assert state_of(breaker) is CircuitState.CLOSED

    async def test_async_trial_failure_reopens(self, clock: FakeClock) -> None:
        """On the async path a failed trial reopens the circuit."""
        breaker, p, rec = make(clock, failure_threshold=1, break_duration=2)
        with pytest.raises(ConnectionError):
            await p.execute_async(adown)
        clock.advance(2)
        with pytest.raises(ConnectionError):
            await p.execute_async(adown)
        assert state_of(breaker) is CircuitState.OPEN
        assert rec.names().count("circuit.half_opened") == 1


class TestRateRules:
    def test_failure_rate_over_count_window(self, clock: FakeClock) -> None:
        """failure_rate trips once minimum_calls calls are in the count window."""
        breaker, p, rec = make(
            clock, failure_threshold=None, failure_rate=0.5, minimum_calls=4, window_size=4
        )
        p.execute(ok)
        fail_times(p, 1)
        p.execute(ok)
        assert state_of(breaker) is CircuitState.CLOSED
        fail_times(p, 1)
        assert state_of(breaker) is CircuitState.OPEN
        assert rec.of(CircuitOpened)[0].reason == "failure_rate"

    @pytest.mark.parametrize("window", [{"window_size": 10}, {"window": 60}])
    def test_rate_judged_when_a_success_reaches_minimum_calls(
        self, clock: FakeClock, window: dict[str, Any]
    ) -> None:
        """A success that brings the window to minimum_calls at a tripping rate opens it."""
        breaker, p, rec = make(
            clock, failure_threshold=None, failure_rate=0.5, minimum_calls=4, **window
        )
        fail_times(p, 3)
        assert state_of(breaker) is CircuitState.CLOSED
        assert p.execute(ok) == "ok"
        assert state_of(breaker) is CircuitState.OPEN
        opened = rec.of(CircuitOpened)[0]
        assert opened.reason == "failure_rate"
        assert opened.error_type is None
        assert breaker.snapshot().retry_after == pytest.approx(30)

    def test_count_window_forgets_old_calls(self, clock: FakeClock) -> None:
        """Only the last window_size calls count towards the rate."""
        breaker, p, _ = make(
            clock, failure_threshold=None, failure_rate=0.6, minimum_calls=5, window_size=5
        )
        fail_times(p, 2)
        for _ in range(5):
            p.execute(ok)
        fail_times(p, 2)
        assert state_of(breaker) is CircuitState.CLOSED
        assert breaker.snapshot().window_failures == 2
        fail_times(p, 1)
        assert state_of(breaker) is CircuitState.OPEN

    def test_failure_rate_over_time_window(self, clock: FakeClock) -> None:
        """With window=seconds, failures older than the window no longer count."""
        breaker, p, _ = make(
            clock, failure_threshold=None, failure_rate=0.5, minimum_calls=4, window=10
        )
        fail_times(p, 3)
        clock.advance(11)
        p.execute(ok)
        p.execute(ok)
        p.execute(ok)
        fail_times(p, 1)
        assert state_of(breaker) is CircuitState.CLOSED
        assert breaker.snapshot().window_calls == 4
        fail_times(p, 1)
        assert state_of(breaker) is CircuitState.CLOSED  # 2 of 5
        fail_times(p, 1)
        assert state_of(breaker) is CircuitState.OPEN  # 3 of 6

    def test_slow_call_rate(self, clock: FakeClock) -> None:
        """Calls slower than slow_call_duration trip slow_call_rate."""
        breaker, p, rec = make(
            clock,
            failure_threshold=None,
            slow_call_duration=1.0,
            slow_call_rate=0.5,
            minimum_calls=2,
            window_size=10,
        )

        def slow() -> str:
            clock.advance(1.5)
            return "ok"

        p.execute(ok)
        assert state_of(breaker) is CircuitState.CLOSED
        p.execute(slow)
        assert state_of(breaker) is CircuitState.OPEN
        assert rec.of(CircuitOpened)[0].reason == "slow_call_rate"

    async def test_async_failure_rate(self, clock: FakeClock) -> None:
        """The async path feeds the same window."""
        breaker, p, _ = make(
            clock, failure_threshold=None, failure_rate=1.0, minimum_calls=3, window_size=3
        )
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await p.execute_async(adown)
        assert state_of(breaker) is CircuitState.OPEN


class TestManual:
    def test_isolate_and_reset(self, clock: FakeClock) -> None:
        """isolate() rejects every call until reset(); both are reported to the pipeline."""
        breaker, p, rec = make(clock, break_duration=1)
        breaker.isolate()
        assert state_of(breaker) is CircuitState.ISOLATED
        clock.advance(100)
        with pytest.raises(CircuitOpen) as info:
            p.execute(ok)
        assert info.value.retry_after is None
        assert "is isolated (isolate() was called; reset() closes it)" in str(info.value)
        breaker.reset()
        assert state_of(breaker) is CircuitState.CLOSED
        assert p.execute(ok) == "ok"
        assert rec.of(CircuitOpened)[0].reason == "isolated"
        assert rec.of(CircuitClosed)[0].reason == "reset"

    def test_snapshot(self, clock: FakeClock) -> None:
        """snapshot() reports state, counters and wall-clock times."""
        breaker, p, _ = make(clock, failure_threshold=2, break_duration=10)
        fail_times(p, 2)
        with pytest.raises(CircuitOpen):
            p.execute(ok)
        snap = breaker.snapshot()
        assert snap.state is CircuitState.OPEN
        assert snap.failures == 2
        assert snap.rejections == 1
        assert snap.last_opened_at == pytest.approx(clock.time())
        assert snap.last_failure_at == pytest.approx(clock.time())
        assert snap.retry_after == pytest.approx(10)


class TestMisuse:
    def test_sync_def_returning_coroutine_is_refused_and_not_counted(
        self, clock: FakeClock
    ) -> None:
        """A sync def returning a coroutine gets a TypeError the breaker does not count."""
        breaker, p, _ = make(clock, failure_threshold=1)

        async def coro() -> None:
            return None

        def returns_coroutine() -> Any:
            return coro()

        with pytest.raises(TypeError, match="coroutine"):
            p.execute(returns_coroutine)
        assert state_of(breaker) is CircuitState.CLOSED
        assert breaker.snapshot().failures == 0

    def test_generator_function_is_refused(self, clock: FakeClock) -> None:
        """A generator function is refused before the breaker sees it."""
        breaker, p, _ = make(clock, failure_threshold=1)

        def gen() -> Any:
            yield 1

        with pytest.raises(TypeError, match="generator"):
            p.execute(gen)
        assert state_of(breaker) is CircuitState.CLOSED


INTERRUPTS = [KeyboardInterrupt, asyncio.CancelledError, SystemExit]
# The closed fast path; the slow path (a slow-call rule reads the clock); a rate window.
CLOSED_PATHS: dict[str, dict[str, Any]] = {
    "fast": {},
    "slow_call_rule": {"slow_call_duration": 5.0, "slow_call_rate": 0.5, "minimum_calls": 1},
    "rate_window": {"failure_rate": 0.5, "minimum_calls": 1, "window_size": 10},
}


def _assert_nothing_counted(breaker: CircuitBreaker) -> None:
    snap = breaker.snapshot()
    assert snap.state is CircuitState.CLOSED
    assert (snap.failures, snap.consecutive_failures, snap.window_failures) == (0, 0, 0)
    assert snap.last_failure_at is None


class TestInterrupts:
    """KeyboardInterrupt, CancelledError and SystemExit pass a closed breaker uncounted."""

    @pytest.mark.parametrize("path", list(CLOSED_PATHS))
    @pytest.mark.parametrize("exc_type", INTERRUPTS)
    def test_sync_interrupt_is_not_a_failure(
        self, clock: FakeClock, exc_type: type[BaseException], path: str
    ) -> None:
        """Raised at once, called once, no event; with threshold 1 the circuit stays closed."""
        breaker, p, rec = make(clock, failure_threshold=1, **CLOSED_PATHS[path])
        calls: list[int] = []

        def interrupted() -> None:
            calls.append(1)
            raise exc_type

        with pytest.raises(exc_type):
            p.execute(interrupted)
        assert calls == [1]
        assert rec.events == []
        _assert_nothing_counted(breaker)
        fail_times(p, 1)  # a real failure is still counted, and opens at threshold 1
        assert (breaker.snapshot().failures, breaker.state) == (1, CircuitState.OPEN)

    @pytest.mark.parametrize("path", list(CLOSED_PATHS))
    @pytest.mark.parametrize("exc_type", INTERRUPTS)
    async def test_async_interrupt_is_not_a_failure(
        self, clock: FakeClock, exc_type: type[BaseException], path: str
    ) -> None:
        """Under execute_async the same holds."""
        breaker, p, rec = make(clock, failure_threshold=1, **CLOSED_PATHS[path])
        calls: list[int] = []

        async def interrupted() -> None:
            calls.append(1)
            raise exc_type

        with pytest.raises(exc_type):
            await p.execute_async(interrupted)
        assert calls == [1]
        assert rec.events == []
        _assert_nothing_counted(breaker)

    async def test_cancelled_task_is_not_a_failure(self, clock: FakeClock) -> None:
        """A task cancelled while its call awaits inside the breaker is not counted."""
        breaker, p, _ = make(clock, failure_threshold=1)
        started = asyncio.Event()

        async def hangs() -> None:
            started.set()
            await asyncio.Event().wait()

        task = asyncio.ensure_future(p.execute_async(hangs))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        _assert_nothing_counted(breaker)

    @pytest.mark.parametrize("exc_type", INTERRUPTS)
    def test_interrupted_trial_frees_the_slot_uncounted(
        self, clock: FakeClock, exc_type: type[BaseException]
    ) -> None:
        """An interrupted half-open trial neither reopens nor closes; the next call is a trial."""
        breaker, p, _ = make(clock, failure_threshold=1, break_duration=10)
        fail_times(p, 1)
        clock.advance(10)

        def interrupted() -> None:
            raise exc_type

        with pytest.raises(exc_type):
            p.execute(interrupted)
        assert state_of(breaker) is CircuitState.HALF_OPEN
        assert breaker.snapshot().failures == 1
        assert p.execute(ok) == "ok"
        assert state_of(breaker) is CircuitState.CLOSED


class TestSharing:
    def test_events_go_to_the_pipeline_that_caused_them(self, clock: FakeClock) -> None:
        """A breaker in two pipelines reports a transition to the pipeline whose call caused it."""
        breaker = CircuitBreaker(failure_threshold=1)
        rec_a, rec_b = EventRecorder(), EventRecorder()
        a = Pipeline([breaker], name="a", clock=clock, listeners=[rec_a], telemetry=False)
        b = Pipeline([breaker], name="b", clock=clock, listeners=[rec_b], telemetry=False)
        with pytest.raises(ConnectionError):
            b.execute(down)
        assert rec_a.events == []
        assert [e.pipeline for e in rec_b.events] == ["b"]
        with pytest.raises(CircuitOpen) as info:
            a.execute(ok)
        assert info.value.pipeline == "a"

    def test_manual_transitions_go_once_to_each_live_pipeline(self, clock: FakeClock) -> None:
        """isolate()/reset() of a shared breaker: once per live pipeline, never to dropped ones."""
        breaker = CircuitBreaker()
        rec = EventRecorder()
        a = Pipeline([breaker], name="a", clock=clock, listeners=[rec], telemetry=False)
        b = Pipeline([breaker], name="b", clock=clock, listeners=[rec], telemetry=False)
        breaker.isolate()
        assert [(type(e), e.pipeline) for e in rec.events] == [
            (CircuitOpened, "a"),
            (CircuitOpened, "b"),
        ]
        rec.events.clear()
        del b
        gc.collect()
        breaker.reset()
        assert [(type(e), e.pipeline) for e in rec.events] == [(CircuitClosed, "a")]
        assert a.execute(ok) == "ok"

    def test_breaker_twice_in_one_pipeline_reports_once(self, clock: FakeClock) -> None:
        """A pipeline holding the same breaker twice gets one event per manual transition."""
        breaker = CircuitBreaker()
        rec = EventRecorder()
        Pipeline([breaker, breaker], name="twice", clock=clock, listeners=[rec], telemetry=False)
        gc.collect()  # the pipeline is unreferenced: it must no longer hear anything
        breaker.isolate()
        assert rec.events == []
        p = Pipeline(
            [breaker, breaker], name="twice", clock=clock, listeners=[rec], telemetry=False
        )
        breaker.reset()
        assert [(type(e), e.pipeline) for e in rec.events] == [(CircuitClosed, "twice")]
        assert p.execute(ok) == "ok"

    @pytest.mark.parametrize("telemetry", [True, False])
    def test_dropped_pipeline_is_freed(self, clock: FakeClock, telemetry: bool) -> None:
        """A breaker that lives on does not keep the pipelines it was put in alive."""
        breaker = CircuitBreaker(failure_threshold=1)
        p = Pipeline([breaker], name="dropped", clock=clock, telemetry=telemetry)
        assert p.execute(ok) == "ok"
        ref = weakref.ref(p)
        del p
        gc.collect()
        assert ref() is None

    def test_pipeline_that_opened_the_circuit_is_freed_once_it_closes(
        self, clock: FakeClock
    ) -> None:
        """The failure kept as CircuitOpen's cause (and its frames) is dropped when it closes."""
        breaker = CircuitBreaker(failure_threshold=1, break_duration=10)
        p = Pipeline([breaker], name="opened-here", clock=clock)
        fail_times(p, 1)
        ref = weakref.ref(p)
        del p
        other = Pipeline([breaker], name="later", clock=clock)
        clock.advance(10)
        assert other.execute(ok) == "ok"  # the trial closes the circuit
        assert state_of(breaker) is CircuitState.CLOSED
        gc.collect()
        assert ref() is None

    def test_separate_breakers_are_separate(self, clock: FakeClock) -> None:
        """Two breaker objects share nothing."""
        first, p1, _ = make(clock, failure_threshold=1)
        second, _, _ = make(clock, failure_threshold=1)
        fail_times(p1, 1)
        assert state_of(first) is CircuitState.OPEN
        assert state_of(second) is CircuitState.CLOSED


class TestOptions:
    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"failure_threshold": 0}, "failure_threshold"),
            ({"break_duration": 0}, "break_duration"),
            ({"failure_rate": 1.5}, "failure_rate"),
            ({"window": 5, "window_size": 5, "failure_rate": 0.5}, "not both"),
            ({"slow_call_rate": 0.5}, "go together"),
            ({"failure_threshold": None}, "no rule"),
            ({"break_duration_multiplier": 0.5}, "multiplier"),
            ({"store": object()}, "BreakerStore"),
        ],
    )
    def test_invalid_options_are_named(self, options: dict[str, Any], message: str) -> None:
        """Invalid options raise with a message naming the problem."""
        with pytest.raises((ValueError, TypeError), match=message):
            CircuitBreaker(**options)

    def test_from_options(self, clock: FakeClock) -> None:
        """from_options builds an equivalent breaker with its own state."""
        breaker = CircuitBreaker.from_options(CircuitBreakerOptions(failure_threshold=1), name="cb")
        assert breaker.name == "cb"
        assert breaker.kind == "circuit_breaker"
        p = Pipeline([breaker], clock=clock, telemetry=False)
        fail_times(p, 1)
        assert state_of(breaker) is CircuitState.OPEN


class TestSharedStore:
    def make_shared(
        self, clock: FakeClock, store: Any, **options: Any
    ) -> tuple[CircuitBreaker, Pipeline, EventRecorder]:
        options.setdefault("failure_threshold", 5)
        options.setdefault("break_duration", 30)
        return make(clock, store=store, name="svc", **options)

    def test_failures_anywhere_count(self, clock: FakeClock) -> None:
        """A records 4 of 5 failures; B (a new breaker) fails once: open for both."""
        store = MemoryBreakerStore(clock)
        a, pa, _ = self.make_shared(clock, store)
        fail_times(pa, 4)
        b, pb, rec_b = self.make_shared(clock, store)
        fail_times(pb, 1)
        assert state_of(b) is CircuitState.OPEN
        assert rec_b.of(CircuitOpened)
        clock.advance(1)  # A sees the opening on its first call after sync_interval
        with pytest.raises(CircuitOpen):
            pa.execute(ok)
        assert state_of(a) is CircuitState.OPEN

    def test_newcomer_neither_closes_nor_extends(self, clock: FakeClock) -> None:
        """C started while open adopts the open state and its original break end."""
        store = MemoryBreakerStore(clock)
        _, pa, _ = self.make_shared(clock, store, failure_threshold=1)
        fail_times(pa, 1)
        clock.advance(20)
        c, pc, _ = self.make_shared(clock, store, failure_threshold=1)
        with pytest.raises(CircuitOpen) as info:
            pc.execute(ok)
        assert info.value.retry_after == pytest.approx(10)
        assert state_of(c) is CircuitState.OPEN
        assert store.load("circuit_breaker").until == pytest.approx(1030)
        clock.advance(10)
        assert pc.execute(ok) == "ok"
        assert store.load("circuit_breaker").state == "closed"

    def test_only_one_process_runs_the_trial(self, clock: FakeClock) -> None:
        """After the break one process wins the half-open trial; the other keeps rejecting."""
        store = MemoryBreakerStore(clock)
        _, pa, _ = self.make_shared(clock, store, failure_threshold=1)
        b, pb, _ = self.make_shared(clock, store, failure_threshold=1)
        fail_times(pa, 1)
        with pytest.raises(CircuitOpen):
            pb.execute(ok)
        clock.advance(30)
        winner: list[str] = []

        def trial() -> str:
            with pytest.raises(CircuitOpen):
                pb.execute(ok)
            winner.append("a")
            return "ok"

        assert pa.execute(trial) == "ok"
        assert winner == ["a"]
        assert store.load("circuit_breaker").state == "closed"
        clock.advance(1)
        assert pb.execute(ok) == "ok"
        assert state_of(b) is CircuitState.CLOSED

    def test_success_path_batches_store_calls(self, clock: FakeClock) -> None:
        """Closed successes reach the store at most once per sync_interval."""
        calls: list[str] = []
        store = MemoryBreakerStore(clock)

        class Counting:
            def __getattr__(self, name: str) -> Any:
                calls.append(name)
                return getattr(store, name)

        _, p, _ = self.make_shared(clock, Counting(), sync_interval=2)
        calls.clear()
        for _ in range(100):
            p.execute(ok)
        assert calls.count("record") == 1
        clock.advance(2)
        p.execute(ok)
        assert calls.count("record") == 2

    def test_store_failure_degrades_to_local_state(self, clock: FakeClock) -> None:
        """A failing store is reported once; the breaker keeps working on local rules."""

        class Broken:
            def load(self, name: str, **kw: Any) -> Any:
                raise OSError("store down")

            record = transition = load

        breaker, p, rec = self.make_shared(clock, Broken(), failure_threshold=2)
        assert p.execute(ok) == "ok"
        fail_times(p, 2)
        assert state_of(breaker) is CircuitState.OPEN
        degraded = rec.of(BreakerStoreDegraded)
        assert len(degraded) == 1
        assert degraded[0].error_type == "OSError"
        assert breaker.snapshot().degraded

    async def test_async_path_uses_async_store_methods(self, clock: FakeClock) -> None:
        """The async path shares state through the store's _async methods."""
        store = MemoryBreakerStore(clock)
        _, pa, _ = self.make_shared(clock, store, failure_threshold=2)
        b, pb, _ = self.make_shared(clock, store, failure_threshold=2)
        with pytest.raises(ConnectionError):
            await pa.execute_async(adown)
        with pytest.raises(ConnectionError):
            await pb.execute_async(adown)
        assert state_of(b) is CircuitState.OPEN
        clock.advance(1)
        with pytest.raises(CircuitOpen):
            await pa.execute_async(aok)

    async def test_sync_only_store_on_the_loop_runs_in_a_thread(self, clock: FakeClock) -> None:
        """A store with only sync methods is called off the event loop."""
        import threading

        store = MemoryBreakerStore(clock)
        threads: set[int] = set()

        class SyncOnly:
            def load(self, name: str) -> Any:
                threads.add(threading.get_ident())
                return store.load(name)

            def record(self, name: str, **kw: Any) -> Any:
                threads.add(threading.get_ident())
                return store.record(name, **kw)

            def transition(self, name: str, **kw: Any) -> Any:
                threads.add(threading.get_ident())
                return store.transition(name, **kw)

        _, p, _ = self.make_shared(clock, SyncOnly(), failure_threshold=1)
        with pytest.raises(ConnectionError):
            await p.execute_async(adown)
        assert threads
        assert threading.get_ident() not in threads
        assert store.load("circuit_breaker").state == "open"

    def test_shared_breaker_rejects_count_window(self, clock: FakeClock) -> None:
        """A shared breaker needs a time window for its rate rules."""
        with pytest.raises(ValueError, match="time window"):
            CircuitBreaker(failure_rate=0.5, window_size=10, store=MemoryBreakerStore(clock))

    def test_shared_failure_rate_over_time_window(self, clock: FakeClock) -> None:
        """Rates are judged on the store's window counts from every process."""
        store = MemoryBreakerStore(clock)
        _, pa, _ = self.make_shared(
            clock, store, failure_threshold=None, failure_rate=0.5, minimum_calls=4, window=10
        )
        b, pb, _ = self.make_shared(
            clock, store, failure_threshold=None, failure_rate=0.5, minimum_calls=4, window=10
        )
        pa.execute(ok)
        pb.execute(ok)
        fail_times(pa, 1)
        assert state_of(b) is CircuitState.CLOSED
        fail_times(pb, 1)
        assert state_of(b) is CircuitState.OPEN

    def test_isolate_is_shared(self, clock: FakeClock) -> None:
        """isolate() on one breaker isolates the shared state; reset() closes it."""
        store = MemoryBreakerStore(clock)
        a, _, _ = self.make_shared(clock, store)
        b, pb, _ = self.make_shared(clock, store)
        a.isolate()
        with pytest.raises(CircuitOpen):
            pb.execute(ok)
        assert state_of(b) is CircuitState.ISOLATED
        a.reset()
        clock.advance(1)
        assert pb.execute(ok) == "ok"
        assert state_of(b) is CircuitState.CLOSED
