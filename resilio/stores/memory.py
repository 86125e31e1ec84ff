"""In-process stores: the reference implementations of the store protocols.

Policies do not need them (without a ``store`` they keep their state in plain local objects
and make no store calls at all); they are useful to share state between several policy objects
of one process and to test the shared-state code paths. Each implements the synchronous and
the asynchronous form of its protocol. Their clock is the given :class:`~resilio.Clock`'s
monotonic time (default: the system clock).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from resilio._clock import SYSTEM_CLOCK
from resilio.policies._token_bucket import TokenBucket
from resilio.stores._protocols import (
    WINDOW_BUCKETS,
    Completed,
    InFlight,
    RateLimitGrant,
    Reservation,
    Reserved,
    SharedBreakerState,
    SharedState,
)

if TYPE_CHECKING:
    from resilio._clock import Clock

__all__ = ["MemoryBreakerStore", "MemoryIdempotencyStore", "MemoryRateLimitStore"]


class _BreakerRecord:
    __slots__ = ("buckets", "consecutive", "opened_at", "openings", "state", "until", "version")

    def __init__(self) -> None:
        self.state: SharedState = "closed"
        self.version = 0
        self.opened_at: float | None = None
        self.until: float | None = None
        self.openings = 0
        self.consecutive = 0
        # bucket index -> [calls, failures, slow]
        self.buckets: dict[int, list[int]] = {}

    def snapshot(self, now: float) -> SharedBreakerState:
        calls = failures = slow = 0
        for c, f, s in self.buckets.values():
            calls += c
            failures += f
            slow += s
        return SharedBreakerState(
            state=self.state,
            version=self.version,
            now=now,
            opened_at=self.opened_at,
            until=self.until,
            openings=self.openings,
            consecutive_failures=self.consecutive,
            window_calls=calls,
            window_failures=failures,
            window_slow=slow,
        )


class MemoryBreakerStore:
    """A :class:`~resilio.stores.BreakerStore` kept in this process's memory.

    Args:
        clock: The store's clock (default: the system clock).
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._lock = threading.Lock()
        self._records: dict[str, _BreakerRecord] = {}

    def _get(self, name: str) -> _BreakerRecord:
        record = self._records.get(name)
        if record is None:
            record = self._records[name] = _BreakerRecord()
        return record

    def load(self, name: str) -> SharedBreakerState:
        """Return the shared state of ``name`` (see :meth:`BreakerStore.load`)."""
        with self._lock:
            return self._get(name).snapshot(self._clock.monotonic())

    def record(
        self,
        name: str,
        *,
        successes: int,
        failures: int,
        slow: int,
        trailing_failures: int,
        window: float,
    ) -> SharedBreakerState:
        """Add a batch of outcomes (see :meth:`BreakerStore.record`)."""
        with self._lock:
            now = self._clock.monotonic()
            rec = self._get(name)
            if rec.state != "closed":
                return rec.snapshot(now)
            if successes > 0:
                rec.consecutive = trailing_failures
            else:
                rec.consecutive += failures
            if window > 0:
                width = window / WINDOW_BUCKETS
                current = math.floor(now / width)
                oldest = current - WINDOW_BUCKETS + 1
                for index in [i for i in rec.buckets if i < oldest]:
                    del rec.buckets[index]
                bucket = rec.buckets.setdefault(current, [0, 0, 0])
                bucket[0] += successes + failures
                bucket[1] += failures
                bucket[2] += slow
            else:
                rec.buckets.clear()
            return rec.snapshot(now)

    def transition(
        self,
        name: str,
        *,
        expected_version: int | None,
        state: SharedState,
        break_duration: float,
    ) -> SharedBreakerState:
        """Compare-and-set the state (see :meth:`BreakerStore.transition`)."""
        with self._lock:
            now = self._clock.monotonic()
            rec = self._get(name)
            if expected_version is not None and expected_version != rec.version:
                return rec.snapshot(now)
            rec.version += 1
            rec.state = state
            if state == "open":
                rec.opened_at = now
                rec.until = now + break_duration
                rec.openings += 1
                rec.consecutive = 0
                rec.buckets.clear()
            elif state == "half_open":
                rec.until = now + break_duration
            elif state == "closed":
                rec.opened_at = rec.until = None
                rec.openings = 0
                rec.consecutive = 0
                rec.buckets.clear()
            else:
                rec.opened_at = now
                rec.until = None
            return rec.snapshot(now)

    async def load_async(self, name: str) -> SharedBreakerState:
        """See :meth:`load`."""
        return self.load(name)

    async def record_async(
        self,
        name: str,
        *,
        successes: int,
        failures: int,
        slow: int,
        trailing_failures: int,
        window: float,
    ) -> SharedBreakerState:
        """See :meth:`record`."""
        return self.record(
            name,
            successes=successes,
            failures=failures,
            slow=slow,
            trailing_failures=trailing_failures,
            window=window,
        )

    async def transition_async(
        self,
        name: str,
        *,
        expected_version: int | None,
        state: SharedState,
        break_duration: float,
    ) -> SharedBreakerState:
        """See :meth:`transition`."""
        return self.transition(
            name, expected_version=expected_version, state=state, break_duration=break_duration
        )


class MemoryRateLimitStore:
    """A :class:`~resilio.stores.RateLimitStore` kept in this process's memory.

    Args:
        clock: The store's clock (default: the system clock).
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[tuple[float, float, float], TokenBucket]] = {}

    def acquire(
        self,
        name: str,
        *,
        rate: float,
        per: float,
        burst: float,
        tokens: float = 1.0,
        max_wait: float,
    ) -> RateLimitGrant:
        """Reserve tokens (see :meth:`RateLimitStore.acquire`)."""
        with self._lock:
            now = self._clock.monotonic()
            shape = (rate, per, burst)
            entry = self._buckets.get(name)
            if entry is None or entry[0] != shape:
                entry = self._buckets[name] = (shape, TokenBucket(rate, per, burst, now))
            granted, wait = entry[1].reserve(now, tokens, max_wait)
            return RateLimitGrant(granted, wait)

    async def acquire_async(
        self,
        name: str,
        *,
        rate: float,
        per: float,
        burst: float,
        tokens: float = 1.0,
        max_wait: float,
    ) -> RateLimitGrant:
        """See :meth:`acquire`."""
        return self.acquire(name, rate=rate, per=per, burst=burst, tokens=tokens, max_wait=max_wait)


class _IdemRecord:
    __slots__ = ("done", "expires", "result", "token")

    def __init__(self, token: str, expires: float) -> None:
        self.token = token
        self.expires = expires
        self.done = False
        self.result: Any = None


class MemoryIdempotencyStore:
    """An :class:`~resilio.stores.IdempotencyStore` kept in memory, bounded by ``max_entries``.

    When full, the least recently used record is dropped (even an in-flight one: keep
    ``max_entries`` well above the number of concurrent calls). Results may be any object.

    Args:
        max_entries: The most records kept at once.
        clock: The store's clock (default: the system clock).

    Raises:
        ValueError: If ``max_entries`` is not positive.
    """

    def __init__(self, max_entries: int = 10_000, clock: Clock | None = None) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._lock = threading.Lock()
        self._records: OrderedDict[str, _IdemRecord] = OrderedDict()
        self._tokens = itertools.count(1)

    def __len__(self) -> int:
        return len(self._records)

    def reserve(self, key: str, *, lease: float) -> Reservation:
        """Claim ``key`` (see :meth:`IdempotencyStore.reserve`)."""
        with self._lock:
            now = self._clock.monotonic()
            rec = self._records.get(key)
            if rec is not None and rec.expires > now:
                self._records.move_to_end(key)
                if rec.done:
                    return Completed(rec.result)
                return InFlight(rec.expires - now)
            token = str(next(self._tokens))
            self._records[key] = _IdemRecord(token, now + lease)
            self._records.move_to_end(key)
            while len(self._records) > self.max_entries:
                self._records.popitem(last=False)
            return Reserved(token)

    def complete(self, key: str, *, token: str, result: Any, ttl: float) -> bool:
        """Store the owner's result (see :meth:`IdempotencyStore.complete`)."""
        with self._lock:
            rec = self._records.get(key)
            if rec is None or rec.done or rec.token != token:
                return False
            rec.done = True
            rec.result = result
            rec.expires = self._clock.monotonic() + ttl
            return True

    def release(self, key: str, *, token: str) -> bool:
        """Drop the owner's in-flight record (see :meth:`IdempotencyStore.release`)."""
        with self._lock:
            rec = self._records.get(key)
            if rec is None or rec.done or rec.token != token:
                return False
            del self._records[key]
            return True

    async def reserve_async(self, key: str, *, lease: float) -> Reservation:
        """See :meth:`reserve`."""
        return self.reserve(key, lease=lease)

    async def complete_async(self, key: str, *, token: str, result: Any, ttl: float) -> bool:
        """See :meth:`complete`."""
        return self.complete(key, token=token, result=result, ttl=ttl)

    async def release_async(self, key: str, *, token: str) -> bool:
        """See :meth:`release`."""
        return self.release(key, token=token)
