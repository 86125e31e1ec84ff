"""Tests of the rate limiter and its token bucket arithmetic."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from resilio._context import Context
from resilio._pipeline import Pipeline
from resilio.errors import RateLimited
from resilio.events import CallRejected, RateLimitWaited
from resilio.policies._token_bucket import TokenBucket
from resilio.policies.rate_limiter import RateLimiter, RateLimiterOptions
from resilio.stores import MemoryRateLimitStore
from resilio.testing import EventRecorder, FakeClock


def make(clock: FakeClock, **options: Any) -> tuple[RateLimiter, Pipeline, EventRecorder]:
    limiter = RateLimiter(**options)
    recorder = EventRecorder()
    pipeline = Pipeline([limiter], clock=clock, listeners=[recorder], telemetry=False)
    return limiter, pipeline, recorder


class TestTokenBucket:
    def test_refill_is_capped_at_burst(self) -> None:
        """A long quiet spell refills the bucket to burst, never beyond."""
        bucket = TokenBucket(rate=1, per=1, burst=3, now=0)
        for _ in range(3):
            assert bucket.reserve(0, 1, 0) == (True, 0.0)
        assert bucket.available(1000) == 3

    def test_waiter_waits_only_for_the_missing_part(self) -> None:
        """Half a token already refilled halves the wait."""
        bucket = TokenBucket(rate=1, per=2, burst=1, now=0)
        bucket.reserve(0, 1, 0)
        assert bucket.reserve(1, 1, 10) == (True, 1.0)

    def test_refusal_consumes_nothing(self) -> None:
        """A reservation refused for max_wait leaves the bucket unchanged."""
        bucket = TokenBucket(rate=1, per=1, burst=1, now=0)
        bucket.reserve(0, 1, 0)
        assert bucket.reserve(0, 1, 0.5) == (False, 1.0)
        assert bucket.available(0) == 0
        assert bucket.reserve(1, 1, 0) == (True, 0.0)

    def test_arrivals_together_are_served_in_order(self) -> None:
        """2 per 10 s, burst 2: five callers at t=0 wait 0, 0, 5, 10, 15 s."""
        bucket = TokenBucket(rate=2, per=10, burst=2, now=0)
        waits = [bucket.reserve(0, 1, 100)[1] for _ in range(5)]
        assert waits == pytest.approx([0, 0, 5, 10, 15])

    def test_refund_returns_a_reservation(self) -> None:
        """A refunded reservation lets the next caller go earlier."""
        bucket = TokenBucket(rate=1, per=1, burst=1, now=0)
        bucket.reserve(0, 1, 10)
        bucket.reserve(0, 1, 10)
        bucket.refund(0, 1)
        assert bucket.reserve(0, 1, 10) == (True, 1.0)


class TestLimiter:
    def test_burst_then_reject_without_consuming(self, clock: FakeClock) -> None:
        """With max_wait 0 the call past the burst is rejected, consuming no token."""
        _, p, rec = make(clock, rate=2, per=10)
        assert p.execute(lambda: 1) == 1
        assert p.execute(lambda: 2) == 2
        with pytest.raises(RateLimited) as info:
            p.execute(lambda: 3)
        assert info.value.retry_after == pytest.approx(5)
        assert info.value.policy == "rate_limiter"
        rejected = rec.of(CallRejected)
        assert [e.reason for e in rejected] == ["rate_limited"]
        with pytest.raises(RateLimited):
            p.execute(lambda: 3)
        clock.advance(5)
        assert p.execute(lambda: 4) == 4
        assert clock.sleeps == []

    def test_sync_callers_follow_the_schedule(self, clock: FakeClock) -> None:
        """2 per 10 s with a long max_wait: calls run at t=0, 0, 5, 10, 15."""
        _, p, rec = make(clock, rate=2, per=10, max_wait=3600)
        start = clock.monotonic()
        times = [p.execute(lambda: clock.monotonic() - start) for _ in range(5)]
        assert times == pytest.approx([0, 0, 5, 10, 15])
        assert clock.sleeps == pytest.approx([5, 5, 5])
        assert [e.wait for e in rec.of(RateLimitWaited)] == pytest.approx([5, 5, 5])

    async def test_async_callers_follow_the_schedule(self, clock: FakeClock) -> None:
        """The async path sleeps on the clock for exactly the computed wait."""
        _, p, _ = make(clock, rate=2, per=10, max_wait=3600)

        async def now() -> float:
            return clock.monotonic()

        times = [await p.execute_async(now) for _ in range(5)]
        assert [t - 1000 for t in times] == pytest.approx([0, 0, 5, 10, 15])

    @pytest.mark.parametrize(("rate", "burst"), [(0.5, 1.0), (1, 1.0), (100, 100.0)])
    def test_default_burst_is_one_period_at_least_one(self, rate: float, burst: float) -> None:
        """burst defaults to max(1, rate)."""
        assert RateLimiterOptions(rate=rate).capacity == burst

    def test_explicit_burst(self, clock: FakeClock) -> None:
        """An explicit burst lets that many calls through at once."""
        _, p, _ = make(clock, rate=1, per=1, burst=3)
        for _ in range(3):
            p.execute(lambda: None)
        with pytest.raises(RateLimited):
            p.execute(lambda: None)

    def test_deadline_caps_the_wait(self, clock: FakeClock) -> None:
        """A wait longer than the execution's remaining deadline is rejected at once."""
        _, p, _ = make(clock, rate=1, per=10, max_wait=3600)
        p.execute(lambda: None)
        ctx = Context()
        ctx.deadline = clock.monotonic() + 5
        with pytest.raises(RateLimited):
            p.execute(lambda: None, context=ctx)
        assert clock.sleeps == []

    async def test_cancelled_waiter_gives_its_token_back(self) -> None:
        """A waiter cancelled during its sleep refunds its reservation."""
        started = asyncio.Event()

        class HangingClock(FakeClock):
            async def sleep_async(self, seconds: float) -> None:
                started.set()
                await asyncio.Event().wait()

        clock = HangingClock()
        limiter, p, _ = make(clock, rate=1, per=10, max_wait=3600)
        await p.execute_async(asyncio.sleep, 0)
        task = asyncio.create_task(p.execute_async(asyncio.sleep, 0))
        await started.wait()
        assert limiter.available(clock.monotonic()) == -1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert limiter.available(clock.monotonic()) == 0

    def test_separate_limiters_are_separate(self, clock: FakeClock) -> None:
        """Two limiters never share a bucket."""
        _, a, _ = make(clock, rate=1, name="a")
        _, b, _ = make(clock, rate=1, name="b")
        a.execute(lambda: None)
        b.execute(lambda: None)
        with pytest.raises(RateLimited):
            a.execute(lambda: None)


class TestStore:
    def test_limiters_with_one_name_share_the_store_bucket(self, clock: FakeClock) -> None:
        """Two limiters with the same name and store draw from one bucket."""
        store = MemoryRateLimitStore(clock)
        _, a, _ = make(clock, rate=2, per=10, store=store, name="api")
        _, b, _ = make(clock, rate=2, per=10, store=store, name="api")
        a.execute(lambda: None)
        b.execute(lambda: None)
        with pytest.raises(RateLimited) as info:
            a.execute(lambda: None)
        assert info.value.retry_after == pytest.approx(5)

    async def test_async_store_path(self, clock: FakeClock) -> None:
        """The async path uses the store's acquire_async and sleeps the granted wait."""
        store = MemoryRateLimitStore(clock)
        _, p, _ = make(clock, rate=1, per=4, store=store, max_wait=10)
        await p.execute_async(asyncio.sleep, 0)
        await p.execute_async(asyncio.sleep, 0)
        assert clock.sleeps == [4.0]

    def test_store_failure_falls_back_to_local_bucket(self, clock: FakeClock) -> None:
        """If the store raises, the limiter uses its local bucket."""

        class Broken:
            def acquire(self, name: str, **kw: Any) -> Any:
                raise OSError("down")

        _, p, _ = make(clock, rate=1, store=Broken())
        p.execute(lambda: None)
        with pytest.raises(RateLimited):
            p.execute(lambda: None)


class TestOptions:
    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"rate": 0}, "rate"),
            ({"rate": 1, "per": 0}, "per"),
            ({"rate": 1, "burst": 0.5}, "burst"),
            ({"rate": 1, "max_wait": -1}, "max_wait"),
            ({"rate": 1, "store": object()}, "RateLimitStore"),
        ],
    )
    def test_invalid_options(self, options: dict[str, Any], message: str) -> None:
        """Invalid options raise naming the option."""
        with pytest.raises((ValueError, TypeError), match=message):
            RateLimiter(**options)

    def test_from_options(self, clock: FakeClock) -> None:
        """from_options builds a limiter with its own bucket."""
        limiter = RateLimiter.from_options(RateLimiterOptions(rate=1), name="x")
        assert limiter.name == "x"
        assert limiter.kind == "rate_limiter"
        p = Pipeline([limiter], clock=clock, telemetry=False)
        p.execute(lambda: None)
        with pytest.raises(RateLimited):
            p.execute(lambda: None)
