"""Tests of the bulkhead: concurrency limit, FIFO queue, timeouts, release on every path."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from resilio._context import Context
from resilio._pipeline import Pipeline
from resilio.errors import BulkheadFull
from resilio.events import BulkheadQueued, CallRejected
from resilio.policies.bulkhead import Bulkhead, BulkheadOptions
from resilio.testing import EventRecorder, FakeClock


def make(clock: FakeClock, **options: Any) -> tuple[Bulkhead, Pipeline, EventRecorder]:
    bulkhead = Bulkhead(**options)
    recorder = EventRecorder()
    pipeline = Pipeline([bulkhead], clock=clock, listeners=[recorder], telemetry=False)
    return bulkhead, pipeline, recorder


class TestLimits:
    def test_rejects_beyond_max_concurrent_without_queue(self, clock: FakeClock) -> None:
        """With no queue, a call beyond max_concurrent is rejected at once with BulkheadFull."""
        bulkhead, p, rec = make(clock, max_concurrent=2)
        started = threading.Barrier(3)
        release = threading.Event()

        def hold() -> str:
            started.wait()
            release.wait()
            return "done"

        threads = [threading.Thread(target=p.execute, args=(hold,)) for _ in range(2)]
        for t in threads:
            t.start()
        started.wait()
        assert bulkhead.in_use == 2
        with pytest.raises(BulkheadFull) as info:
            p.execute(lambda: "never")
        assert info.value.policy == "bulkhead"
        assert [e.reason for e in rec.of(CallRejected)] == ["bulkhead_full"]
        release.set()
        for t in threads:
            t.join()
        assert bulkhead.in_use == 0

    async def test_async_queue_is_fifo(self, clock: FakeClock) -> None:
        """Queued tasks get slots in arrival order; each reports BulkheadQueued."""
        bulkhead, p, rec = make(clock, max_concurrent=1, max_queued=3)
        gate = asyncio.Event()
        order: list[int] = []

        async def first() -> None:
            await gate.wait()

        async def record(i: int) -> None:
            order.append(i)

        holder = asyncio.create_task(p.execute_async(first))
        await asyncio.sleep(0)
        waiters = [asyncio.create_task(p.execute_async(record, i)) for i in range(3)]
        await asyncio.sleep(0)
        assert bulkhead.queued == 3
        with pytest.raises(BulkheadFull):
            await p.execute_async(record, 99)
        gate.set()
        await asyncio.gather(holder, *waiters)
        assert order == [0, 1, 2]
        assert len(rec.of(BulkheadQueued)) == 3
        assert bulkhead.in_use == 0
        assert bulkhead.queued == 0

    def test_sync_queue_waits_for_a_slot(self, clock: FakeClock) -> None:
        """A thread waits in the queue and runs when the slot frees."""
        bulkhead, p, rec = make(clock, max_concurrent=1, max_queued=1)
        inside = threading.Event()
        release = threading.Event()

        def hold() -> str:
            inside.set()
            release.wait()
            return "held"

        results: list[str] = []
        holder = threading.Thread(target=lambda: results.append(p.execute(hold)))
        holder.start()
        inside.wait()
        waiter = threading.Thread(target=lambda: results.append(p.execute(lambda: "queued")))
        waiter.start()
        while bulkhead.queued == 0:
            threading.Event().wait(0.001)
        release.set()
        holder.join()
        waiter.join()
        assert sorted(results) == ["held", "queued"]
        assert len(rec.of(BulkheadQueued)) == 1
        assert bulkhead.in_use == 0


class TestRelease:
    def test_slot_released_on_error(self, clock: FakeClock) -> None:
        """A failing call gives its slot back."""
        bulkhead, p, _ = make(clock, max_concurrent=1)

        def boom() -> None:
            raise ValueError("boom")

        for _ in range(3):
            with pytest.raises(ValueError):
                p.execute(boom)
        assert bulkhead.in_use == 0

    async def test_slot_released_on_cancellation_while_running(self, clock: FakeClock) -> None:
        """Cancelling a running call gives its slot back."""
        bulkhead, p, _ = make(clock, max_concurrent=1)
        task = asyncio.create_task(p.execute_async(asyncio.sleep, 3600))
        await asyncio.sleep(0)
        assert bulkhead.in_use == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert bulkhead.in_use == 0

    async def test_cancelled_waiter_leaves_the_queue(self, clock: FakeClock) -> None:
        """Cancelling a queued call removes it; the next waiter still gets the slot."""
        bulkhead, p, _ = make(clock, max_concurrent=1, max_queued=2)
        gate = asyncio.Event()

        async def hold() -> str:
            await gate.wait()
            return "held"

        async def quick() -> str:
            return "quick"

        holder = asyncio.create_task(p.execute_async(hold))
        await asyncio.sleep(0)
        cancelled = asyncio.create_task(p.execute_async(quick))
        second = asyncio.create_task(p.execute_async(quick))
        await asyncio.sleep(0)
        assert bulkhead.queued == 2
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert bulkhead.queued == 1
        gate.set()
        assert await holder == "held"
        assert await second == "quick"
        assert (bulkhead.in_use, bulkhead.queued) == (0, 0)

    async def test_queue_timeout_rejects_and_restores_counts(self, clock: FakeClock) -> None:
        """A task whose queue_timeout runs out on the clock is rejected; counters come back."""
        bulkhead, p, rec = make(clock, max_concurrent=1, max_queued=1, queue_timeout=5)
        gate = asyncio.Event()

        async def hold() -> None:
            await gate.wait()

        holder = asyncio.create_task(p.execute_async(hold))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(p.execute_async(hold))
        for _ in range(10):
            await asyncio.sleep(0)
        assert bulkhead.queued == 1
        clock.advance(4)
        for _ in range(10):
            await asyncio.sleep(0)
        assert not waiter.done()  # 4 of 5 s: still queued
        clock.advance(1)
        with pytest.raises(BulkheadFull, match="queue wait ran out"):
            await waiter
        assert clock.monotonic() == 1005.0
        assert clock.sleeps == []
        assert bulkhead.queued == 0
        assert [e.reason for e in rec.of(CallRejected)] == ["bulkhead_full"]
        gate.set()
        await holder
        assert bulkhead.in_use == 0

    async def test_slot_freed_within_queue_timeout_is_taken(self, clock: FakeClock) -> None:
        """A task queued with queue_timeout=5 gets the slot freed at +2 s and reports its wait."""
        bulkhead, p, rec = make(clock, max_concurrent=1, max_queued=1, queue_timeout=5)

        async def hold() -> str:
            await clock.sleep_async(2)
            return "held"

        async def queued() -> float:
            return clock.monotonic()

        holder = asyncio.create_task(p.execute_async(hold))
        await asyncio.sleep(0)
        assert await p.execute_async(queued) == 1002.0
        assert await holder == "held"
        assert [e.wait for e in rec.of(BulkheadQueued)] == [2.0]
        for _ in range(10):  # a live queue timer would move the clock to 1005 after 3 idle turns
            await asyncio.sleep(0)
        assert clock.monotonic() == 1002.0
        assert (bulkhead.in_use, bulkhead.queued) == (0, 0)

    def test_sync_queue_timeout(self, clock: FakeClock) -> None:
        """A thread whose queue_timeout runs out on the clock (moved by another thread) is
        rejected."""
        bulkhead, p, rec = make(clock, max_concurrent=1, max_queued=1, queue_timeout=60)
        inside = threading.Event()
        release = threading.Event()

        def hold() -> None:
            inside.set()
            release.wait()

        ran: list[str] = []
        rejected_at: list[float] = []

        def queue_up() -> None:
            try:
                ran.append(p.execute(lambda: "ran"))
            except BulkheadFull:
                rejected_at.append(clock.monotonic())

        holder = threading.Thread(target=p.execute, args=(hold,), daemon=True)
        holder.start()
        inside.wait()
        waiter = threading.Thread(target=queue_up, daemon=True)
        waiter.start()
        try:
            while bulkhead.queued == 0:
                threading.Event().wait(0.001)
            assert clock.monotonic() == 1000.0  # waiting does not move the clock
            clock.advance(60)
            waiter.join(5)  # a wait in real time would still be on (60 s)
            assert not waiter.is_alive()
        finally:
            release.set()
        holder.join()
        assert (ran, rejected_at) == ([], [1060.0])
        assert [e.reason for e in rec.of(CallRejected)] == ["bulkhead_full"]
        assert (bulkhead.in_use, bulkhead.queued) == (0, 0)

    async def test_deadline_bounds_the_queue_wait(self, clock: FakeClock) -> None:
        """An execution deadline that already passed stops the wait at once."""
        _, p, _ = make(clock, max_concurrent=1, max_queued=1)
        gate = asyncio.Event()

        async def hold() -> None:
            await gate.wait()

        holder = asyncio.create_task(p.execute_async(hold))
        await asyncio.sleep(0)
        ctx = Context()
        ctx.deadline = clock.monotonic()
        with pytest.raises(BulkheadFull):
            await p.execute_async(hold, context=ctx)
        gate.set()
        await holder


class TestMixed:
    def test_threads_and_a_loop_share_one_limit(self, clock: FakeClock) -> None:
        """Threads and tasks using one bulkhead never exceed max_concurrent together."""
        bulkhead, p, _ = make(clock, max_concurrent=3, max_queued=1000)
        lock = threading.Lock()
        running = 0
        peak = 0

        def enter() -> None:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)

        def leave() -> None:
            nonlocal running
            with lock:
                running -= 1

        def sync_work() -> None:
            enter()
            threading.Event().wait(0.001)
            leave()

        async def async_work() -> None:
            enter()
            await asyncio.sleep(0.001)
            leave()

        async def tasks() -> None:
            await asyncio.gather(*(p.execute_async(async_work) for _ in range(30)))

        threads = [threading.Thread(target=p.execute, args=(sync_work,)) for _ in range(20)]
        for t in threads:
            t.start()
        asyncio.run(tasks())
        for t in threads:
            t.join()
        assert 1 <= peak <= 3
        assert (bulkhead.in_use, bulkhead.queued) == (0, 0)


class TestOptions:
    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"max_concurrent": 0}, "max_concurrent"),
            ({"max_queued": -1}, "max_queued"),
            ({"queue_timeout": -1}, "queue_timeout"),
        ],
    )
    def test_invalid_options(self, options: dict[str, Any], message: str) -> None:
        """Invalid options raise ValueError naming the option."""
        with pytest.raises(ValueError, match=message):
            Bulkhead(**options)

    def test_from_options_and_separate_state(self) -> None:
        """from_options builds a bulkhead with its own counters."""
        a = Bulkhead.from_options(BulkheadOptions(max_concurrent=2), name="a")
        b = Bulkhead(max_concurrent=2)
        assert a.name == "a"
        assert a.kind == "bulkhead"
        seen = Pipeline([a], telemetry=False).execute(lambda: (a.in_use, b.in_use))
        assert seen == (1, 0)
        assert a.in_use == 0
