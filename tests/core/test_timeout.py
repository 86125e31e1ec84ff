"""Tests for resilio.Timeout: deadlines in the context, async cancellation, thread mode."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import threading
from typing import Any

import pytest

import resilio
from resilio import backoff
from resilio.events import TimedOut
from resilio.testing import EventRecorder, FakeClock

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("REQUEST_ID", default="-")


def pipe(
    clock: FakeClock | None, *policies: resilio.Policy
) -> tuple[resilio.Pipeline, EventRecorder]:
    rec = EventRecorder()
    return resilio.Pipeline(list(policies), name="p", clock=clock, listeners=[rec]), rec


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
    async def test_hung_call_is_cancelled(self) -> None:
        """A hung awaitable is cancelled at the deadline and TimeoutExceeded raised."""
        p, rec = pipe(None, resilio.Timeout(0.02))
        cancelled = []

        async def hang() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        with pytest.raises(resilio.TimeoutExceeded, match="timed out") as info:
            await p.execute_async(hang)
        assert cancelled == [True]
        assert info.value.timeout == 0.02
        assert info.value.policy == "timeout"
        assert len(rec.of(TimedOut)) == 1

    async def test_success_passes_through(self, clock: FakeClock) -> None:
        """A call finishing in time returns its result and restores the deadline."""
        p, rec = pipe(clock, resilio.Timeout(1))
        ctx = resilio.Context()

        async def fn() -> float | None:
            return ctx.deadline

        assert await p.execute_async(fn, context=ctx) == 1001.0
        assert ctx.deadline is None
        assert rec.events == []

    async def test_outer_cancellation_propagates(self) -> None:
        """Cancelling the caller's task raises CancelledError, not TimeoutExceeded."""
        p, rec = pipe(None, resilio.Timeout(10))
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

    async def test_outer_asyncio_timeout_is_not_ours(self) -> None:
        """An enclosing asyncio.timeout raises its own TimeoutError, not TimeoutExceeded."""
        p, rec = pipe(None, resilio.Timeout(10))
        with pytest.raises(TimeoutError) as info:
            async with asyncio.timeout(0.02):
                await p.execute_async(asyncio.Event().wait)
        assert not isinstance(info.value, resilio.TimeoutExceeded)
        assert rec.events == []

    async def test_outer_retry_retries_a_per_attempt_timeout(self) -> None:
        """TimeoutExceeded is TRANSIENT: a retry outside a per-attempt timeout tries again."""
        p, _ = pipe(FakeClock(), resilio.Retry(attempts=3), resilio.Timeout(0.02))
        calls: list[int] = []

        async def first_hangs() -> str:
            calls.append(1)
            if len(calls) == 1:
                await asyncio.Event().wait()
            return "ok"

        assert await p.execute_async(first_hangs) == "ok"
        assert len(calls) == 2

    async def test_expired_deadline_refuses_async_call(self, clock: FakeClock) -> None:
        """An async call whose deadline already passed is not started."""
        p, _ = pipe(clock, resilio.Timeout(1))
        ctx = resilio.Context()
        ctx.deadline = clock.monotonic()

        async def fn() -> None:
            raise AssertionError("must not run")

        with pytest.raises(resilio.TimeoutExceeded):
            await p.execute_async(fn, context=ctx)


class TestAsyncWatchdog:
    async def test_hang_after_many_fast_calls_is_cancelled(self) -> None:
        """After many calls finished in time, a hung call is still cancelled on time."""
        p, _ = pipe(None, resilio.Timeout(0.03))

        async def fast() -> int:
            return 1

        for _ in range(100):
            assert await p.execute_async(fast) == 1
        with pytest.raises(resilio.TimeoutExceeded):
            await p.execute_async(asyncio.Event().wait)

    async def test_concurrent_calls_time_out_independently(self) -> None:
        """Of three concurrent calls, the two that hang time out and the quick one returns."""
        p, rec = pipe(None, resilio.Timeout(0.03))

        async def quick() -> str:
            await asyncio.sleep(0)
            return "quick"

        results = await asyncio.gather(
            p.execute_async(asyncio.Event().wait),
            p.execute_async(quick),
            p.execute_async(asyncio.Event().wait),
            return_exceptions=True,
        )
        assert isinstance(results[0], resilio.TimeoutExceeded)
        assert results[1] == "quick"
        assert isinstance(results[2], resilio.TimeoutExceeded)
        assert len(rec.of(TimedOut)) == 2

    async def test_tighter_outer_deadline_bounds_inner_timeout(self) -> None:
        """An inner long timeout under a short outer one times out at the outer deadline."""
        p, _ = pipe(None, resilio.Timeout(0.03, name="outer"), resilio.Timeout(10, name="inner"))
        with pytest.raises(resilio.TimeoutExceeded) as info:
            await p.execute_async(asyncio.Event().wait)
        assert info.value.policy in {"outer", "inner"}

    async def test_swallowed_cancellation_leaves_the_task_usable(self) -> None:
        """A call that swallows the timeout's cancellation returns its value; the task goes on."""
        p, _ = pipe(None, resilio.Timeout(0.02))

        async def stubborn() -> str:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                return "swallowed"
            return "unreachable"

        assert await p.execute_async(stubborn) == "swallowed"
        current = asyncio.current_task()
        assert current is not None
        assert current.cancelling() == 0
        await asyncio.sleep(0.001)  # not cancelled

    async def test_outer_cancellation_stops_the_watch(self) -> None:
        """After an outer cancellation the watchdog never cancels the task later."""
        p, _ = pipe(None, resilio.Timeout(0.02))
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
            await asyncio.sleep(0.05)  # would be cancelled if the watch were still live
            return "survived"

        task = asyncio.create_task(caller())
        await started.wait()
        task.cancel()
        assert await task == "survived"


class TestThreadMode:
    def test_returns_on_time_while_the_call_hangs(self) -> None:
        """Thread mode raises TimeoutExceeded on time; the worker is left to finish."""
        p, rec = pipe(None, resilio.Timeout(0.03, mode="thread"))
        release = threading.Event()
        finished = threading.Event()

        def hang() -> None:
            release.wait(5)
            finished.set()

        with pytest.raises(resilio.TimeoutExceeded):
            p.execute(hang)
        assert not finished.is_set()
        assert len(rec.of(TimedOut)) == 1
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

    async def test_thread_mode_async_uses_cancellation(self) -> None:
        """Under execute_async a thread-mode timeout still cancels the awaitable."""
        p, _ = pipe(None, resilio.Timeout(0.02, mode="thread"))
        with pytest.raises(resilio.TimeoutExceeded):
            await p.execute_async(asyncio.Event().wait)


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
