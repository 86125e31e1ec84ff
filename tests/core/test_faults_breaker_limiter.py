"""Faults users hit with breakers and limiters elsewhere (FAULTS.md), pinned as tests."""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from resilio._pipeline import Pipeline
from resilio.errors import RateLimited
from resilio.policies.circuit_breaker import CircuitBreaker, CircuitState
from resilio.policies.rate_limiter import RateLimiter
from resilio.stores import MemoryBreakerStore


class VirtualClock:
    """Virtual time for asyncio: sleepers wake in time order when the loop is otherwise idle."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0
        self.sleep_calls = 0
        self.woken_per_instant: list[int] = []
        self.round_seconds: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        raise AssertionError("a task slept synchronously on the event loop")

    async def sleep_async(self, seconds: float) -> None:
        self.sleep_calls += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.now + max(seconds, 0.0), self._seq, future))
        self._seq += 1
        await future

    async def run(self, coros: list[Awaitable[Any]]) -> list[Any]:
        """Run the coroutines to completion in virtual time; return results or exceptions."""
        tasks = [asyncio.ensure_future(c) for c in coros]
        while True:
            started = time.perf_counter()
            for _ in range(4):
                await asyncio.sleep(0)
            self.round_seconds.append(time.perf_counter() - started)
            if all(t.done() for t in tasks):
                break
            assert self._heap, "tasks are blocked with no sleeper to wake"
            due = self._heap[0][0]
            self.now = due
            woken = 0
            while self._heap and self._heap[0][0] <= due:
                heapq.heappop(self._heap)[2].set_result(None)
                woken += 1
            self.woken_per_instant.append(woken)
        return [t.exception() or t.result() for t in tasks]


def limiter_pipeline(clock: Any, **options: Any) -> Pipeline:
    return Pipeline([RateLimiter(**options)], clock=clock, telemetry=False)


class TestBreakerFaults:
    def test_no_lock_around_the_users_call(self) -> None:
        """Ten threads making a 100 ms call through one closed breaker take about 100 ms."""
        breaker = CircuitBreaker(failure_threshold=3)
        p = Pipeline([breaker], telemetry=False)
        barrier = threading.Barrier(10)

        def call() -> None:
            barrier.wait()
            p.execute(time.sleep, 0.1)

        threads = [threading.Thread(target=call) for _ in range(10)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        assert elapsed < 0.5, f"calls were serialised: {elapsed:.2f} s"

    @pytest.mark.parametrize(
        "options",
        [
            {
                "failure_threshold": None,
                "failure_rate": 1.0,
                "minimum_calls": 20_000,
                "window_size": 20_000,
            },
            {"failure_threshold": 1_000_000},
        ],
    )
    def test_counters_exact_after_10000_concurrent_calls(self, options: dict[str, Any]) -> None:
        """10,000 concurrent mixed successes and failures leave exact counters."""
        breaker = CircuitBreaker(**options)
        p = Pipeline([breaker], telemetry=False)

        def fail() -> None:
            raise ConnectionError("down")

        def worker(offset: int) -> None:
            for i in range(1250):
                if (offset + i) % 2:
                    with pytest.raises(ConnectionError):
                        p.execute(fail)
                else:
                    p.execute(int)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        snap = breaker.snapshot()
        assert snap.state is CircuitState.CLOSED
        assert snap.failures == 5000
        if breaker.options.failure_rate is not None:
            assert (snap.window_calls, snap.window_failures) == (10_000, 5000)

    async def test_async_counters_exact(self) -> None:
        """Thousands of concurrent tasks leave an exact count-window tally."""
        breaker = CircuitBreaker(
            failure_threshold=None, failure_rate=1.0, minimum_calls=10_001, window_size=10_000
        )
        p = Pipeline([breaker], telemetry=False)

        async def call(i: int) -> None:
            await asyncio.sleep(0)
            if i % 4 == 0:
                raise ConnectionError("down")

        results = await asyncio.gather(
            *(p.execute_async(call, i) for i in range(4000)), return_exceptions=True
        )
        assert sum(isinstance(r, ConnectionError) for r in results) == 1000
        snap = breaker.snapshot()
        assert (snap.window_calls, snap.window_failures) == (4000, 1000)

    async def test_slow_async_store_does_not_block_the_loop(self) -> None:
        """A shared store taking 200 ms per call never stalls a 10 ms ticker on the loop."""
        inner = MemoryBreakerStore()

        class SlowSyncStore:
            def load(self, name: str) -> Any:
                time.sleep(0.2)
                return inner.load(name)

            def record(self, name: str, **kw: Any) -> Any:
                time.sleep(0.2)
                return inner.record(name, **kw)

            def transition(self, name: str, **kw: Any) -> Any:
                time.sleep(0.2)
                return inner.transition(name, **kw)

        p = Pipeline([CircuitBreaker(failure_threshold=1, store=SlowSyncStore())], telemetry=False)
        lags: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                lags.append(now - last - 0.01)
                last = now

        async def fail() -> None:
            raise ConnectionError("down")

        tick = asyncio.create_task(ticker())
        with pytest.raises(ConnectionError):
            await p.execute_async(fail)
        stop.set()
        await tick
        assert inner.load("circuit_breaker").state == "open"
        assert max(lags) < 0.02, f"loop lagged {max(lags) * 1000:.0f} ms"


class TestLimiterFaults:
    def test_separate_limiters_are_separate(self) -> None:
        """Two 1/s limiters with different names each grant their first permit."""
        a = RateLimiter(rate=1, name="a")
        b = RateLimiter(rate=1, name="b")
        pa, pb = Pipeline([a], telemetry=False), Pipeline([b], telemetry=False)
        assert pa.execute(lambda: "a") == "a"
        assert pb.execute(lambda: "b") == "b"
        assert a._bucket is not b._bucket
        assert RateLimiter(rate=1)._bucket is None

    async def test_two_per_ten_seconds_schedule(self) -> None:
        """2 per 10 s, burst 2: five tasks arriving together start at t = 0, 0, 5, 10, 15."""
        clock = VirtualClock()
        p = limiter_pipeline(clock, rate=2, per=10, burst=2, max_wait=3600)

        async def started() -> float:
            return clock.monotonic()

        times = await clock.run([p.execute_async(started) for _ in range(5)])
        assert times == pytest.approx([0, 0, 5, 10, 15])
        assert clock.sleep_calls == 3

    async def test_many_waiters_each_wake_once(self) -> None:
        """10,000 tasks on a 10/s limiter: each waiter sleeps once and each permit wakes one."""
        clock = VirtualClock()
        p = limiter_pipeline(clock, rate=10, per=1, max_wait=10_000)

        async def started() -> float:
            return clock.monotonic()

        times = await clock.run([p.execute_async(started) for _ in range(10_000)])
        assert clock.sleep_calls == 10_000 - 10
        assert max(clock.woken_per_instant) == 1
        assert times == sorted(times)
        assert times[-1] == pytest.approx(999.0)
        lags = sorted(clock.round_seconds)
        assert lags[int(len(lags) * 0.99)] < 0.005

    @pytest.mark.parametrize(("max_wait", "succeed"), [(86_400.0, 10), (1.0, 4)])
    async def test_bounded_waits_are_bounded(self, max_wait: float, succeed: int) -> None:
        """3 per 3 s, 10 acquirers: a day's limit lets all through; 1 s bounds every wait."""
        clock = VirtualClock()
        p = limiter_pipeline(clock, rate=3, per=3, max_wait=max_wait)
        finished: list[float] = []

        def timed(fn: Callable[[], Awaitable[Any]]) -> Awaitable[Any]:
            async def run() -> Any:
                try:
                    return await p.execute_async(fn)
                finally:
                    finished.append(clock.monotonic())

            return run()

        async def ok() -> str:
            return "ok"

        results = await clock.run([timed(ok) for _ in range(10)])
        assert sum(r == "ok" for r in results) == succeed
        assert all(r == "ok" or isinstance(r, RateLimited) for r in results)
        assert max(finished) <= min(max_wait, 86_400.0) + 1e-9
        if max_wait == 1.0:
            assert max(finished) <= 1.0
