"""Tests for resilio.Timeout: deadlines in the context, async cancellation, thread mode."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

import resilio
from resilio import backoff
from resilio.events import TimedOut
from resilio.testing import EventRecorder, FakeClock
from tests._timeline import START, Timeline

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("REQUEST_ID", default="-")


def pipe(
    clock: FakeClock | None, *policies: resilio.Policy
) -> tuple[resilio.Pipeline, EventRecorder]:
    rec = EventRecorder()
    return resilio.Pipeline(list(policies), name="p", clock=clock, listeners=[rec]), rec


async def settle() -> None:
    """Let every ready task (and the fake clock's checks) run."""
    for _ in range(10):
        await asyncio.sleep(0)


async def time_out(
    clock: FakeClock, call: Coroutine[Any, Any, Any], seconds: float
) -> resilio.TimeoutExceeded:
    """Start ``call``; check it still waits at half of ``seconds``; move the clock to
    ``seconds`` and return the TimeoutExceeded it raises."""
    task = asyncio.ensure_future(call)
    await settle()
    clock.advance(seconds / 2)
    await settle()
    assert not task.done()
    clock.advance(seconds / 2)
    with pytest.raises(resilio.TimeoutExceeded) as info:
        await task
    return info.value


class TestCooperative:
    def test_deadline_set_during_call_and_restored(self, clock: FakeClock) -> None:
        """The call sees ``now + seconds`` as its deadline; afterwards the context has none."""
        p, rec = pipe(clock, resilio.Timeout(2))
        ctx = resilio.Context()
        seen: list[float | None] = []

        def fn() -> str:
            seen.append(ctx.deadline)
            return "ok"

        assert p.execute(fn, context=ctx) == "ok"
        assert seen == [1002.0]
        assert ctx.deadline is None
        assert rec.events == []

    def test_nested_timeouts_take_the_tighter_deadline(self, clock: FakeClock) -> None:
        """An inner longer timeout keeps the outer, tighter deadline."""
        p, _ = pipe(clock, resilio.Timeout(1), resilio.Timeout(5))
        ctx = resilio.Context()
        assert p.execute(lambda: ctx.deadline, context=ctx) == 1001.0
        p2, _ = pipe(clock, resilio.Timeout(5), resilio.Timeout(1))
        assert p2.execute(lambda: ctx.deadline, context=ctx) == 1001.0

    def test_per_attempt_timeout_does_not_leak(self, clock: FakeClock) -> None:
        """Inside a retry, each attempt gets a fresh deadline and none remains afterwards."""
        p, _ = pipe(
            clock, resilio.Retry(attempts=3, backoff=backoff.constant(3)), resilio.Timeout(1)
        )
        ctx = resilio.Context()
        seen: list[float | None] = []

        def fn() -> str:
            seen.append(ctx.deadline)
            if len(seen) < 3:
                raise ConnectionError("down")
            return "ok"

        assert p.execute(fn, context=ctx) == "ok"
        assert seen == [1001.0, 1004.0, 1007.0]
        assert ctx.deadline is None

    def test_call_after_the_deadline_is_refused(self, clock: FakeClock) -> None:
        """A call whose deadline already passed fails with TimeoutExceeded without running."""
        p, rec = pipe(clock, resilio.Timeout(5))
        ctx = resilio.Context()
        ctx.deadline = clock.monotonic() - 1
        calls: list[int] = []
        with pytest.raises(
            resilio.TimeoutExceeded, match="deadline passed before the call started"
        ):
            p.execute(lambda: calls.append(1), context=ctx)
        assert calls == []
        assert [e.timeout for e in rec.of(TimedOut)] == [5.0]

    def test_late_success_keeps_its_result(self, clock: FakeClock) -> None:
        """Cooperative mode cannot interrupt; a call returning late keeps its result."""
        p, rec = pipe(clock, resilio.Timeout(1))

        def slow() -> str:
            clock.advance(5)
            return "late"

        assert p.execute(slow) == "late"
        assert rec.events == []

    def test_retry_inside_stops_at_the_deadline(self, clock: FakeClock) -> None:
        """A retry under a total timeout stops when the next wait would pass the deadline."""
        p, _ = pipe(
            clock, resilio.Timeout(2), resilio.Retry(attempts=9, backoff=backoff.constant(0.9))
        )
        calls: list[int] = []

        def fn() -> None:
            calls.append(1)
            raise ConnectionError("down")

        with pytest.raises(ConnectionError):
            p.execute(fn)
        assert len(calls) == 3
        assert clock.sleeps == [0.9, 0.9]

    def test_timeout_exceeded_is_a_builtin_timeout_error(self) -> None:
        """TimeoutExceeded is also TimeoutError and a Rejected."""
        assert issubclass(resilio.TimeoutExceeded, TimeoutError)
        assert issubclass(resilio.TimeoutExceeded, resilio.Rejected)


class TestAsync:
    """Async timeouts on a fake clock: the deadline is the clock's, nothing waits for real."""

    async def test_hung_call_is_cancelled_when_the_clock_reaches_the_deadline(
        self, clock: FakeClock
    ) -> None:
        """A hung awaitable is cancelled when the fake clock reaches the deadline, not before."""
        p, rec = pipe(clock, resilio.Timeout(2))
        cancelled = []

        async def hang() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(clock.monotonic())
                raise

        error = await time_out(clock, p.execute_async(hang), 2)
        assert "timed out" in str(error)
        assert cancelled == [1002.0]
        assert error.timeout == 2.0
        assert error.policy == "timeout"
        assert [e.timeout for e in rec.of(TimedOut)] == [2.0]
        assert clock.sleeps == []  # the timeout's own wait is not a sleep

    async def test_sleep_past_the_timeout_is_cut_at_the_timeout(self, clock: FakeClock) -> None:
        """A call sleeping 5 s on the clock under Timeout(1) is cancelled at +1 s, not +5 s."""
        p, _ = pipe(clock, resilio.Timeout(1))
        returned: list[str] = []

        async def slow() -> None:
            await clock.sleep_async(5)
            returned.append("late")

        with pytest.raises(resilio.TimeoutExceeded):
            await p.execute_async(slow)
        assert returned == []
        assert clock.monotonic() == 1001.0
        assert clock.sleeps == [5]

    async def test_call_within_the_timeout_leaves_no_timer(self, clock: FakeClock) -> None:
        """A call sleeping less than its timeout returns; its timer never moves time afterwards."""
        p, rec = pipe(clock, resilio.Timeout(2))

        async def fn() -> str:
            await clock.sleep_async(1.5)
            return "ok"

        assert await p.execute_async(fn) == "ok"
        assert clock.monotonic() == 1001.5
        for _ in range(10):  # a live timer would move the clock to 1002 after 3 idle turns
            await asyncio.sleep(0)
        assert clock.monotonic() == 1001.5
        assert rec.events == []

    async def test_success_passes_through(self, clock: FakeClock) -> None:
        """A call finishing in time returns its result and restores the deadline."""
        p, rec = pipe(clock, resilio.Timeout(1))
        ctx = resilio.Context()

        async def fn() -> float | None:
            return ctx.deadline

        assert await p.execute_async(fn, context=ctx) == 1001.0
        assert ctx.deadline is None
        assert rec.events == []

    async def test_outer_cancellation_propagates(self, clock: FakeClock) -> None:
        """Cancelling the caller's task raises CancelledError, not TimeoutExceeded."""
        p, rec = pipe(clock, resilio.Timeout(10))
        started = asyncio.Event()

        async def hang() -> None:
            started.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(p.execute_async(hang))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert rec.events == []
        assert clock.monotonic() == 1000.0

    async def test_outer_retry_retries_a_per_attempt_timeout(self, clock: FakeClock) -> None:
        """TimeoutExceeded is TRANSIENT: a retry outside a per-attempt timeout tries again."""
        p, rec = pipe(
            clock, resilio.Retry(attempts=3, backoff=backoff.constant(1)), resilio.Timeout(2)
        )
        calls: list[float] = []

        async def first_hangs() -> str:
            calls.append(clock.monotonic())
            if len(calls) == 1:
                await asyncio.Event().wait()
            return "ok"

        task = asyncio.create_task(p.execute_async(first_hangs))
        await settle()
        clock.advance(2)
        assert await task == "ok"
        assert calls == [1000.0, 1003.0]  # timed out at 1002, then waited 1 s
        assert clock.sleeps == [1]
        assert [e.timeout for e in rec.of(TimedOut)] == [2.0]

    async def test_context_deadline_tighter_than_the_timeout(self, clock: FakeClock) -> None:
        """A deadline already on the context, tighter than the timeout's, is the one enforced."""
        p, _ = pipe(clock, resilio.Timeout(10))
        ctx = resilio.Context()
        ctx.deadline = clock.monotonic() + 2

        error = await time_out(clock, p.execute_async(asyncio.Event().wait, context=ctx), 2)
        assert clock.monotonic() == 1002.0
        assert error.policy == "timeout"
        assert ctx.deadline == 1002.0  # restored to the caller's own

    async def test_tighter_outer_timeout_wins_and_reports(self, clock: FakeClock) -> None:
        """Timeout(2) around Timeout(10): the call ends at +2 s and the outer one reports it."""
        p, rec = pipe(clock, resilio.Timeout(2, name="outer"), resilio.Timeout(10, name="inner"))
        error = await time_out(clock, p.execute_async(asyncio.Event().wait), 2)
        assert clock.monotonic() == 1002.0
        assert (error.policy, error.timeout) == ("outer", 2.0)
        assert [(e.policy, e.timeout) for e in rec.of(TimedOut)] == [("outer", 2.0)]

    async def test_real_wait_is_not_timed_out_by_the_fake_clock(self, clock: FakeClock) -> None:
        """A call waiting for something outside the clock (here a thread) is not cut short:
        a timer never moves the fake clock by itself."""
        p, rec = pipe(clock, resilio.Timeout(2))
        go = threading.Event()

        async def wait_for_thread() -> str:
            await asyncio.to_thread(go.wait, 5)
            return "done"

        task = asyncio.create_task(p.execute_async(wait_for_thread))
        await settle()
        go.set()
        assert await task == "done"
        assert clock.monotonic() == 1000.0
        assert rec.events == []

    async def test_expired_deadline_refuses_async_call(self, clock: FakeClock) -> None:
        """An async call whose deadline already passed is not started."""
        p, _ = pipe(clock, resilio.Timeout(1))
        ctx = resilio.Context()
        ctx.deadline = clock.monotonic()

        async def fn() -> None:
            raise AssertionError("must not run")

        with pytest.raises(resilio.TimeoutExceeded):
            await p.execute_async(fn, context=ctx)


@pytest.fixture(params=["fake-clock", "system-clock"])
def timeline(request: pytest.FixtureRequest) -> Iterator[Timeline]:
    """Both async timeout paths on virtual time: a fake clock, and the loop-timer fast path."""
    line = Timeline(request.param)
    yield line
    line.close()


class TestAsyncWatchdog:
    """Async timeouts on both clocks: the system clock's shared loop timer and a clock's timers."""

    def test_hang_after_many_fast_calls_is_cancelled(self, timeline: Timeline) -> None:
        """After many calls finished in time, a hung call is still cancelled on time."""
        p, rec = pipe(timeline.clock, resilio.Timeout(3))

        async def fast() -> int:
            return 1

        async def hung() -> float:
            with pytest.raises(resilio.TimeoutExceeded):
                await p.execute_async(asyncio.Event().wait)
            return timeline.now()

        async def main() -> list[Any]:
            for _ in range(100):
                assert await p.execute_async(fast) == 1
            return await asyncio.gather(hung(), timeline.sleep(5))

        timed_out, _ = timeline.run(main())
        assert timed_out == pytest.approx(START + 3, abs=1e-6)
        assert len(rec.of(TimedOut)) == 1

    def test_concurrent_calls_time_out_independently(self, timeline: Timeline) -> None:
        """Of three concurrent calls, the two that hang time out and the quick one returns."""
        p, rec = pipe(timeline.clock, resilio.Timeout(3))
        ended: list[tuple[str, float]] = []

        async def quick() -> str:
            await timeline.sleep(1)
            ended.append(("quick", timeline.now()))
            return "quick"

        async def hung(label: str) -> None:
            with pytest.raises(resilio.TimeoutExceeded):
                await p.execute_async(asyncio.Event().wait)
            ended.append((label, timeline.now()))

        async def main() -> list[Any]:
            return await asyncio.gather(
                hung("a"), p.execute_async(quick), hung("b"), timeline.sleep(5)
            )

        assert timeline.run(main())[1] == "quick"
        assert [label for label, _ in ended] == ["quick", "a", "b"]
        assert [at for _, at in ended] == pytest.approx([START + 1, START + 3, START + 3], abs=1e-6)
        assert len(rec.of(TimedOut)) == 2

    def test_tighter_outer_deadline_bounds_inner_timeout(self, timeline: Timeline) -> None:
        """An inner 10 s timeout under a 1 s outer one ends the call at +1 s, not +10 s."""
        p, rec = pipe(
            timeline.clock, resilio.Timeout(1, name="outer"), resilio.Timeout(10, name="inner")
        )

        async def hung() -> tuple[resilio.TimeoutExceeded, float]:
            with pytest.raises(resilio.TimeoutExceeded) as info:
                await p.execute_async(asyncio.Event().wait)
            return info.value, timeline.now()

        async def main() -> list[Any]:
            return await asyncio.gather(hung(), timeline.sleep(20))

        (error, at), _ = timeline.run(main())
        assert at == pytest.approx(START + 1, abs=1e-3)
        assert len(rec.of(TimedOut)) == 1
        # Both deadlines are the same instant; with the system clock the two loop timers may
        # fire in either order, so only the fake clock pins which policy reports it.
        if timeline.clock is not None:
            assert (error.policy, error.timeout) == ("outer", 1.0)
        else:
            assert error.policy in {"outer", "inner"}

    def test_swallowed_cancellation_leaves_the_task_usable(self, timeline: Timeline) -> None:
        """A call that swallows the timeout's cancellation returns its value; the task goes on."""
        p, _ = pipe(timeline.clock, resilio.Timeout(2))

        async def stubborn() -> str:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                return "swallowed"
            return "unreachable"

        async def main() -> tuple[str, int, float]:
            mover = asyncio.create_task(timeline.sleep(3))  # moves time past the deadline
            result = await p.execute_async(stubborn)
            current = asyncio.current_task()
            assert current is not None
            cancelling = current.cancelling()
            await mover
            await timeline.sleep(5)  # not cancelled
            return result, cancelling, timeline.now()

        assert timeline.run(main()) == ("swallowed", 0, pytest.approx(START + 8, abs=1e-6))

    def test_outer_cancellation_stops_the_watch(self, timeline: Timeline) -> None:
        """After an outer cancellation the timeout never cancels the task later."""
        p, _ = pipe(timeline.clock, resilio.Timeout(2))
        started = asyncio.Event()

        async def hang() -> None:
            started.set()
            await asyncio.Event().wait()

        async def caller() -> str:
            with contextlib.suppress(asyncio.CancelledError):
                await p.execute_async(hang)
            current = asyncio.current_task()
            assert current is not None
            current.uncancel()
            await timeline.sleep(5)  # would be cancelled at +2 s if the watch were still live
            return "survived"

        async def main() -> str:
            task = asyncio.create_task(caller())
            await started.wait()
            task.cancel()
            return await task

        assert timeline.run(main()) == "survived"
        assert timeline.now() == pytest.approx(START + 5, abs=1e-6)

    def test_outer_asyncio_timeout_is_not_ours(self) -> None:
        """An enclosing asyncio.timeout raises its own TimeoutError, not TimeoutExceeded."""
        line = Timeline("system-clock")
        p, rec = pipe(None, resilio.Timeout(10))

        async def main() -> None:
            async with asyncio.timeout(2):
                await p.execute_async(asyncio.Event().wait)

        try:
            with pytest.raises(TimeoutError) as info:
                line.run(main())
        finally:
            line.close()
        assert not isinstance(info.value, resilio.TimeoutExceeded)
        assert line.now() == pytest.approx(START + 2, abs=1e-6)
        assert rec.events == []


class TestThreadMode:
    def test_returns_on_time_while_the_call_hangs(self, clock: FakeClock) -> None:
        """Thread mode raises TimeoutExceeded when the clock passes the deadline; the worker
        is left to finish."""
        p, rec = pipe(clock, resilio.Timeout(2, mode="thread"))
        release = threading.Event()
        finished = threading.Event()

        def hang() -> None:
            clock.advance(3)  # the call takes 3 s of the clock's time, then hangs
            release.wait(5)
            finished.set()

        with pytest.raises(resilio.TimeoutExceeded):
            p.execute(hang)
        assert not finished.is_set()
        assert [e.timeout for e in rec.of(TimedOut)] == [2.0]
        assert clock.monotonic() == 1003.0
        release.set()
        assert finished.wait(5)

    def test_result_error_and_contextvars_pass_through(self) -> None:
        """Results, the real exception and context variables cross the worker thread."""
        p, _ = pipe(None, resilio.Timeout(5, mode="thread"))
        token = REQUEST_ID.set("req-7")
        try:
            assert p.execute(REQUEST_ID.get) == "req-7"
        finally:
            REQUEST_ID.reset(token)

        def boom() -> None:
            raise KeyError("k")

        with pytest.raises(KeyError):
            p.execute(boom)
        assert p.execute(threading.current_thread).name.startswith("resilio-timeout")

    def test_base_exceptions_propagate_from_the_worker(self) -> None:
        """A KeyboardInterrupt raised in the worker reaches the caller."""
        p, _ = pipe(None, resilio.Timeout(5, mode="thread"))

        def interrupt() -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            p.execute(interrupt)

    def test_attempts_copied_back(self, clock: FakeClock) -> None:
        """A retry inside a thread-mode timeout reports its attempts on the caller's context."""
        p, _ = pipe(clock, resilio.Timeout(5, mode="thread"), resilio.Retry(attempts=3, backoff=0))
        ctx = resilio.Context()
        calls: list[int] = []

        def fn() -> str:
            calls.append(1)
            if len(calls) < 2:
                raise ConnectionError("x")
            return "ok"

        assert p.execute(fn, context=ctx) == "ok"
        assert ctx.attempt == 2
        assert ctx.deadline is None

    async def test_thread_mode_async_uses_cancellation(self, clock: FakeClock) -> None:
        """Under execute_async a thread-mode timeout still cancels the awaitable, on the clock."""
        p, _ = pipe(clock, resilio.Timeout(2, mode="thread"))
        await time_out(clock, p.execute_async(asyncio.Event().wait), 2)
        assert clock.monotonic() == 1002.0


class TestOptions:
    @pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), "1", True])
    def test_invalid_seconds(self, bad: Any) -> None:
        """Seconds must be a positive finite number."""
        with pytest.raises(ValueError, match="seconds"):
            resilio.Timeout(bad)

    def test_invalid_mode(self) -> None:
        """Only cooperative and thread modes exist."""
        with pytest.raises(ValueError, match="mode"):
            resilio.Timeout(1, mode="signal")  # type: ignore[arg-type]

    def test_timedelta_and_from_options(self) -> None:
        """A timedelta is converted to seconds; from_options rebuilds the policy."""
        t = resilio.Timeout(datetime.timedelta(milliseconds=1500), mode="thread", name="t")  # type: ignore[arg-type]
        assert t.options.seconds == 1.5
        again = resilio.Timeout.from_options(t.options, name="t2")
        assert (again.options, again.name, again.kind) == (t.options, "t2", "timeout")
