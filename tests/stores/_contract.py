"""The store protocols' contract, run against every shared store (SQLite, Redis).

Each test module defines fixtures ``store`` and ``advance`` (moves the store's clock forward:
a fake clock for SQLite, a short real sleep for Redis, whose clock is the server's).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from resilio.stores import (
    AsyncBreakerStore,
    AsyncIdempotencyStore,
    AsyncRateLimitStore,
    BreakerStore,
    Completed,
    IdempotencyStore,
    InFlight,
    RateLimitStore,
    Reserved,
)

Advance = Callable[[float], None]


def test_implements_every_protocol(store: Any) -> None:
    """The store implements the three protocols in both forms."""
    for proto in (
        BreakerStore,
        RateLimitStore,
        IdempotencyStore,
        AsyncBreakerStore,
        AsyncRateLimitStore,
        AsyncIdempotencyStore,
    ):
        assert isinstance(store, proto)


class TestBreakerContract:
    def test_new_name_is_closed(self, store: Any) -> None:
        """A name never seen reads as closed, version 0, zero counts."""
        s = store.load("fresh")
        assert (s.state, s.version, s.consecutive_failures, s.opened_at, s.until) == (
            "closed",
            0,
            0,
            None,
            None,
        )
        assert s.now > 0

    def test_record_counts_consecutive_failures_across_callers(self, store: Any) -> None:
        """Failures recorded by several callers add up; a success resets to trailing failures."""
        for _ in range(4):
            store.record("b", successes=0, failures=1, slow=0, trailing_failures=0, window=0)
        assert store.load("b").consecutive_failures == 4
        s = store.record("b", successes=2, failures=1, slow=0, trailing_failures=1, window=0)
        assert s.consecutive_failures == 1
        assert s.version == 0

    def test_window_sums(self, store: Any) -> None:
        """Within the window, calls, failures and slow calls are summed."""
        store.record("w", successes=3, failures=2, slow=1, trailing_failures=0, window=60)
        s = store.record("w", successes=1, failures=1, slow=0, trailing_failures=1, window=60)
        assert (s.window_calls, s.window_failures, s.window_slow) == (7, 3, 1)

    def test_window_drops_old_buckets(self, store: Any, advance: Advance) -> None:
        """Buckets older than the window are dropped."""
        store.record("w", successes=3, failures=2, slow=1, trailing_failures=0, window=0.5)
        advance(0.6)
        s = store.record("w", successes=1, failures=0, slow=0, trailing_failures=0, window=0.5)
        assert (s.window_calls, s.window_failures, s.window_slow) == (1, 0, 0)

    def test_transition_compare_and_set(self, store: Any) -> None:
        """Only the caller with the current version wins; the loser gets the winner's state."""
        won = store.transition("t", expected_version=0, state="open", break_duration=30)
        assert (won.state, won.version, won.openings) == ("open", 1, 1)
        assert won.until == pytest.approx(won.opened_at + 30)
        lost = store.transition("t", expected_version=0, state="closed", break_duration=0)
        assert (lost.state, lost.version, lost.until) == ("open", 1, won.until)

    def test_open_drops_late_records(self, store: Any) -> None:
        """While open, recorded outcomes are dropped and counts stay reset."""
        store.record("o", successes=0, failures=3, slow=0, trailing_failures=0, window=10)
        store.transition("o", expected_version=0, state="open", break_duration=30)
        s = store.record("o", successes=0, failures=5, slow=0, trailing_failures=0, window=10)
        assert (s.state, s.consecutive_failures, s.window_calls) == ("open", 0, 0)

    def test_half_open_closed_isolated(self, store: Any) -> None:
        """half_open keeps openings and sets a trial lease; closed resets; isolated has no end."""
        o = store.transition("h", expected_version=0, state="open", break_duration=30)
        h = store.transition("h", expected_version=1, state="half_open", break_duration=5)
        assert (h.state, h.openings, h.opened_at) == ("half_open", 1, o.opened_at)
        assert h.until == pytest.approx(h.now + 5, abs=0.05)
        c = store.transition("h", expected_version=2, state="closed", break_duration=0)
        assert (c.state, c.openings, c.opened_at, c.until) == ("closed", 0, None, None)
        i = store.transition("h", expected_version=None, state="isolated", break_duration=0)
        assert (i.state, i.until, i.version) == ("isolated", None, 4)

    def test_concurrent_opens_have_one_winner(self, store: Any) -> None:
        """Ten threads racing to open with version 0: exactly one transition happens."""
        results: list[Any] = []
        barrier = threading.Barrier(10)

        def race() -> None:
            barrier.wait()
            results.append(
                store.transition("race", expected_version=0, state="open", break_duration=30)
            )

        threads = [threading.Thread(target=race) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert {r.version for r in results} == {1}
        assert store.load("race").openings == 1

    async def test_async_forms(self, store: Any) -> None:
        """The async methods read and write the same state as the sync ones."""
        await store.record_async(
            "a", successes=0, failures=2, slow=0, trailing_failures=0, window=0
        )
        assert (await store.load_async("a")).consecutive_failures == 2
        s = await store.transition_async("a", expected_version=0, state="open", break_duration=1)
        assert store.load("a").state == s.state == "open"


class TestRateLimitContract:
    def test_burst_then_wait(self, store: Any) -> None:
        """A full bucket grants the burst at once, then reservations wait in arrival order."""
        grants = [store.acquire("r", rate=2, per=1, burst=3, max_wait=10) for _ in range(5)]
        assert [g.granted for g in grants] == [True] * 5
        assert [round(g.wait, 1) for g in grants] == [0.0, 0.0, 0.0, 0.5, 1.0]

    def test_refusal_consumes_nothing(self, store: Any) -> None:
        """A refusal over max_wait consumes nothing and says when tokens would be available."""
        assert store.acquire("r", rate=1, per=10, burst=1, max_wait=0).granted
        refused = store.acquire("r", rate=1, per=10, burst=1, max_wait=1)
        assert not refused.granted
        assert refused.wait == pytest.approx(10, abs=0.1)
        again = store.acquire("r", rate=1, per=10, burst=1, max_wait=1)
        assert again.wait == pytest.approx(10, abs=0.1)

    def test_refill(self, store: Any, advance: Advance) -> None:
        """Tokens come back at the configured rate."""
        assert store.acquire("f", rate=10, per=1, burst=1, max_wait=0).granted
        assert not store.acquire("f", rate=10, per=1, burst=1, max_wait=0).granted
        advance(0.15)
        assert store.acquire("f", rate=10, per=1, burst=1, max_wait=0).granted

    def test_names_are_separate(self, store: Any) -> None:
        """Two limiters with different names do not share tokens."""
        assert store.acquire("x", rate=1, per=1, burst=1, max_wait=0).granted
        assert store.acquire("y", rate=1, per=1, burst=1, max_wait=0).granted

    async def test_async_acquire(self, store: Any) -> None:
        """acquire_async draws from the same bucket as acquire."""
        assert (await store.acquire_async("z", rate=1, per=60, burst=1, max_wait=0)).granted
        assert not store.acquire("z", rate=1, per=60, burst=1, max_wait=0).granted


class TestIdempotencyContract:
    def test_reserve_complete_replay(self, store: Any) -> None:
        """The first reserve owns the key; after complete, reserve returns the JSON result."""
        r = store.reserve("k", lease=30)
        assert isinstance(r, Reserved)
        assert isinstance(store.reserve("k", lease=30), InFlight)
        assert store.complete("k", token=r.token, result={"id": 7, "ok": [1]}, ttl=60)
        assert store.reserve("k", lease=30) == Completed({"id": 7, "ok": [1]})

    def test_in_flight_retry_after(self, store: Any) -> None:
        """InFlight says how long the owner's lease has left."""
        store.reserve("k", lease=30)
        busy = store.reserve("k", lease=30)
        assert isinstance(busy, InFlight)
        assert 29 <= busy.retry_after <= 30

    def test_release_frees_the_key(self, store: Any) -> None:
        """release by the owner frees the key; a stranger's token does nothing."""
        r = store.reserve("k", lease=30)
        assert not store.release("k", token="stranger")
        assert store.release("k", token=r.token)
        assert isinstance(store.reserve("k", lease=30), Reserved)

    def test_expired_lease_is_taken_over(self, store: Any, advance: Advance) -> None:
        """After the owner's lease ends, another caller reserves; the old token can't complete."""
        old = store.reserve("k", lease=0.1)
        advance(0.2)
        new = store.reserve("k", lease=30)
        assert isinstance(new, Reserved)
        assert new.token != old.token
        assert not store.complete("k", token=old.token, result=1, ttl=60)
        assert store.complete("k", token=new.token, result=2, ttl=60)

    def test_completed_record_expires(self, store: Any, advance: Advance) -> None:
        """A completed record is kept for ttl seconds only."""
        r = store.reserve("k", lease=30)
        store.complete("k", token=r.token, result=1, ttl=0.1)
        advance(0.2)
        assert isinstance(store.reserve("k", lease=30), Reserved)

    def test_result_must_be_json(self, store: Any) -> None:
        """A result that is not JSON-serialisable is refused with TypeError."""
        r = store.reserve("k", lease=30)
        with pytest.raises(TypeError, match="JSON"):
            store.complete("k", token=r.token, result=object(), ttl=60)

    def test_concurrent_reserve_has_one_owner(self, store: Any) -> None:
        """Twenty threads reserving one key: exactly one owns it."""
        results: list[Any] = []
        barrier = threading.Barrier(20)

        def go() -> None:
            barrier.wait()
            results.append(store.reserve("same", lease=30))

        threads = [threading.Thread(target=go) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(isinstance(r, Reserved) for r in results) == 1

    async def test_async_forms(self, store: Any) -> None:
        """The async idempotency methods follow the same contract."""
        r = await store.reserve_async("ak", lease=30)
        assert isinstance(r, Reserved)
        assert await store.complete_async("ak", token=r.token, result="x", ttl=60)
        assert await store.reserve_async("ak", lease=30) == Completed("x")
        r2 = await store.reserve_async("ak2", lease=30)
        assert await store.release_async("ak2", token=r2.token)
        await asyncio.sleep(0)
