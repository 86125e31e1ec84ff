"""resilio.testing.FakeClock: instant sync sleeps; async sleepers share one virtual timeline."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import pytest

import resilio
from resilio import backoff
from resilio._clock import SYSTEM_CLOCK, timer_sleep, wait_event
from resilio.testing import FakeClock


async def sleeper(
    clock: FakeClock, seconds: float, woke: list[tuple[str, float]], label: str
) -> None:
    """Sleep on the fake clock, then note the label and the time read on waking."""
    await clock.sleep_async(seconds)
    woke.append((label, clock.monotonic()))


class TestConcurrentAsyncSleepers:
    async def test_two_equal_sleeps_wake_together(self) -> None:
        """Two tasks sleeping 1 s at once both wake at t=1, not one at 1 and one at 2."""
        clock = FakeClock()
        woke: list[tuple[str, float]] = []
        await asyncio.gather(sleeper(clock, 1, woke, "a"), sleeper(clock, 1, woke, "b"))
        assert woke == [("a", 1.0), ("b", 1.0)]
        assert clock.monotonic() == 1.0

    async def test_shorter_sleep_wakes_first_each_at_its_own_time(self) -> None:
        """Sleeps of 2 s and 1 s started together wake at t=1 (the 1 s) and then at t=2."""
        clock = FakeClock()
        woke: list[tuple[str, float]] = []
        await asyncio.gather(sleeper(clock, 2, woke, "two"), sleeper(clock, 1, woke, "one"))
        assert woke == [("one", 1.0), ("two", 2.0)]
        assert clock.monotonic() == 2.0

    async def test_equal_wake_times_keep_the_order_of_the_calls(self) -> None:
        """Sleepers due at the same time wake in the order they called sleep_async."""
        clock = FakeClock(start=10)
        woke: list[tuple[str, float]] = []
        labels = ["c", "a", "d", "b"]
        await asyncio.gather(*(sleeper(clock, 0.5, woke, x) for x in labels))
        assert woke == [(x, 10.5) for x in labels]

    async def test_a_task_sleeping_again_interleaves_with_the_others(self) -> None:
        """A task sleeping 1 s twice wakes at 1 and 2; one sleeping 1.5 s wakes in between."""
        clock = FakeClock()
        woke: list[tuple[str, float]] = []

        async def twice() -> None:
            for _ in range(2):
                await clock.sleep_async(1)
                woke.append(("twice", clock.monotonic()))

        await asyncio.gather(twice(), sleeper(clock, 1.5, woke, "once"))
        assert woke == [("twice", 1.0), ("once", 1.5), ("twice", 2.0)]

    async def test_task_woken_by_another_sleeps_on_the_same_timeline(self) -> None:
        """A task that starts sleeping after an event set by a ready task still wakes at t=1."""
        clock = FakeClock()
        woke: list[tuple[str, float]] = []
        go = asyncio.Event()

        async def waits_then_sleeps() -> None:
            await go.wait()
            await clock.sleep_async(1)
            woke.append(("late", clock.monotonic()))

        async def starter() -> None:
            go.set()

        await asyncio.gather(
            sleeper(clock, 1, woke, "early"),
            waits_then_sleeps(),
            starter(),
        )
        assert woke == [("early", 1.0), ("late", 1.0)]

    async def test_two_wake_ups_before_a_sleep_still_join_the_timeline(self) -> None:
        """A sleep started two wake-ups after a ready task's event still wakes at t=1."""
        clock = FakeClock()
        woke: list[tuple[str, float]] = []
        first, second = asyncio.Event(), asyncio.Event()

        async def relay() -> None:
            await first.wait()
            second.set()

        async def last() -> None:
            await second.wait()
            await sleeper(clock, 1, woke, "last")

        async def starter() -> None:
            first.set()

        await asyncio.gather(sleeper(clock, 1, woke, "early"), relay(), starter(), last())
        assert woke == [("early", 1.0), ("last", 1.0)]

    async def test_cancelled_sleeper_does_not_move_time(self) -> None:
        """A sleeper cancelled before its time is dropped: the clock never goes to its time."""
        clock = FakeClock()
        woke: list[tuple[str, float]] = []
        long = asyncio.create_task(clock.sleep_async(100))
        await asyncio.sleep(0)
        long.cancel()
        await sleeper(clock, 1, woke, "short")
        with pytest.raises(asyncio.CancelledError):
            await long
        assert woke == [("short", 1.0)]
        assert clock.monotonic() == 1.0

    async def test_time_moved_past_a_wake_time_is_kept(self) -> None:
        """advance() past a sleeper's wake time wakes it then without moving time back."""
        clock = FakeClock()
        woke: list[tuple[str, float]] = []
        task = asyncio.ensure_future(sleeper(clock, 1, woke, "a"))
        await asyncio.sleep(0)  # the sleeper registers
        clock.advance(5)
        await task
        assert woke == [("a", 5.0)]

    async def test_time_does_not_move_until_the_sleepers_settled(self) -> None:
        """Right after a task starts sleeping, the clock still reads the old time."""
        clock = FakeClock()
        task = asyncio.create_task(clock.sleep_async(3))
        await asyncio.sleep(0)
        assert clock.monotonic() == 0.0
        await task
        assert clock.monotonic() == 3.0

    async def test_zero_and_negative_sleeps_only_yield(self) -> None:
        """Non-positive async sleeps are recorded and do not move time."""
        clock = FakeClock(start=4)
        await clock.sleep_async(0)
        await clock.sleep_async(-1)
        assert clock.monotonic() == 4.0
        assert clock.sleeps == [0, -1]

    async def test_sleeps_are_recorded_in_call_order(self) -> None:
        """``sleeps`` lists the async sleeps in the order they were called, not woken."""
        clock = FakeClock()
        woke: list[tuple[str, float]] = []
        await asyncio.gather(sleeper(clock, 3, woke, "x"), sleeper(clock, 1, woke, "y"))
        assert clock.sleeps == [3, 1]

    def test_each_event_loop_keeps_its_own_sleepers_on_a_shared_time(self) -> None:
        """The same clock serves successive event loops; time carries over."""
        clock = FakeClock()

        async def two() -> list[tuple[str, float]]:
            woke: list[tuple[str, float]] = []
            await asyncio.gather(sleeper(clock, 2, woke, "a"), sleeper(clock, 2, woke, "b"))
            return woke

        assert asyncio.run(two()) == [("a", 2.0), ("b", 2.0)]
        assert asyncio.run(two()) == [("a", 4.0), ("b", 4.0)]


class ReadCountingClock(FakeClock):
    """A fake clock that lets a test wait until other threads have read it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self._read = threading.Condition()

    def monotonic(self) -> float:
        """Count the read, then return the virtual time."""
        with self._read:
            self.reads += 1
            self._read.notify_all()
        return super().monotonic()

    def await_reads(self, count: int) -> None:
        """Block until ``count`` more reads than so far happened (at most 5 s)."""
        with self._read:
            target = self.reads + count
            assert self._read.wait_for(lambda: self.reads >= target, timeout=5)


class TestTimers:
    async def test_timer_wakes_in_order_but_never_moves_time(self) -> None:
        """A timer wakes when a sleeper or advance() brings time to it; it never moves time."""
        clock = FakeClock()
        woke: list[tuple[str, float]] = []

        async def timer(seconds: float) -> None:
            await clock.timer_async(seconds)
            woke.append(("timer", clock.monotonic()))

        task = asyncio.ensure_future(
            asyncio.gather(timer(2), sleeper(clock, 3, woke, "sleep"), timer(4))
        )
        for _ in range(20):
            await asyncio.sleep(0)
        assert woke == [("timer", 2.0), ("sleep", 3.0)]  # the sleep took time past the timer
        assert clock.monotonic() == 3.0  # only a timer is left: time stands still
        clock.advance(5)
        await task
        assert woke == [("timer", 2.0), ("sleep", 3.0), ("timer", 8.0)]
        assert clock.sleeps == [3]

    def test_advance_from_another_thread_wakes_a_timer(self) -> None:
        """advance() called in another thread wakes a loop's due timer."""
        clock = FakeClock()

        async def main() -> float:
            thread = threading.Thread(target=clock.advance, args=(7,))
            waiting = asyncio.ensure_future(clock.timer_async(5))
            await asyncio.sleep(0)
            thread.start()
            await waiting
            thread.join()
            return clock.monotonic()

        assert asyncio.run(main()) == 7.0

    def test_waits_of_a_clock_use_its_timer(self) -> None:
        """Resilio's own async waits use timer_async where a clock has one, else sleep_async."""
        clock = FakeClock()
        assert timer_sleep(clock) == clock.timer_async
        assert timer_sleep(SYSTEM_CLOCK) == SYSTEM_CLOCK.sleep_async

    def test_thread_wait_ends_when_another_thread_moves_the_clock(self) -> None:
        """wait_event on a fake clock times out when the clock passes the end, not before."""
        clock = ReadCountingClock()
        event = threading.Event()
        results: list[tuple[bool, float]] = []
        waiting = threading.Thread(
            target=lambda: results.append((wait_event(event, 30, clock), clock.monotonic())),
            daemon=True,
        )
        waiting.start()
        clock.advance(29)
        clock.await_reads(2)  # the waiter has seen 29 s and gone on waiting at least once
        assert waiting.is_alive()
        assert results == []
        clock.advance(1)
        waiting.join(5)
        assert results == [(False, 30.0)]

    def test_thread_wait_counts_from_since(self) -> None:
        """Given since=, the wait ends `seconds` after that reading, not after a later one."""
        clock = FakeClock(start=100.0)
        since = clock.monotonic()
        clock.advance(5)  # time passed between the caller's reading and its wait
        assert wait_event(threading.Event(), 5, clock, since) is False  # already over: no wait
        assert clock.monotonic() == 105.0

    def test_thread_wait_returns_when_the_event_is_set(self) -> None:
        """wait_event on a fake clock returns True as soon as the event is set."""
        clock = FakeClock()
        event = threading.Event()
        results: list[bool] = []
        waiting = threading.Thread(
            target=lambda: results.append(wait_event(event, 30, clock)), daemon=True
        )
        waiting.start()
        event.set()
        waiting.join(5)
        assert results == [True]
        assert clock.monotonic() == 0.0


class TestSyncSleep:
    def test_sync_sleep_moves_time_at_once(self) -> None:
        """sleep() advances time by its argument immediately and records it."""
        clock = FakeClock(start=1)
        clock.sleep(2.5)
        assert clock.monotonic() == 3.5
        clock.sleep(0)
        assert clock.sleeps == [2.5, 0]
        assert clock.time() == 1_700_000_000.0 + 2.5

    async def test_sync_sleep_inside_a_task_is_instant(self) -> None:
        """A sync sleep called from a coroutine still moves time at once."""
        clock = FakeClock()

        async def work() -> float:
            clock.sleep(7)
            return clock.monotonic()

        assert await work() == 7.0


class TestWithPipelines:
    async def test_concurrent_retries_wait_in_parallel(self) -> None:
        """Two calls retrying after a 1 s backoff at the same time both retry at t=1."""
        clock = FakeClock()
        pipeline = resilio.Pipeline(
            [resilio.Retry(attempts=2, backoff=backoff.constant(1))],
            name="p",
            clock=clock,
            telemetry=False,
        )
        seen: dict[str, list[float]] = {"a": [], "b": []}

        def call(label: str) -> Callable[[], Awaitable[str]]:
            async def fn() -> str:
                seen[label].append(clock.monotonic())
                if len(seen[label]) == 1:
                    raise ConnectionError("down")
                return label

            return fn

        results = await asyncio.gather(
            pipeline.execute_async(call("a")),
            pipeline.execute_async(call("b")),
        )
        assert list(results) == ["a", "b"]
        assert seen == {"a": [0.0, 1.0], "b": [0.0, 1.0]}
        assert clock.monotonic() == 1.0
