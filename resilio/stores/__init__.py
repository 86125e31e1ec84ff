"""Stores that share policy state: protocols and the in-memory implementations.

Backends for several processes (SQLite, Redis) implement the same protocols.
"""

from __future__ import annotations

from resilio.stores._protocols import (
    WINDOW_BUCKETS,
    AsyncBreakerStore,
    AsyncIdempotencyStore,
    AsyncRateLimitStore,
    BreakerStore,
    Completed,
    IdempotencyStore,
    InFlight,
    RateLimitGrant,
    RateLimitStore,
    Reservation,
    Reserved,
    SharedBreakerState,
    SharedState,
)
from resilio.stores.memory import MemoryBreakerStore, MemoryIdempotencyStore, MemoryRateLimitStore

__all__ = [
    "AsyncBreakerStore",
    "AsyncIdempotencyStore",
    "AsyncRateLimitStore",
    "BreakerStore",
    "Completed",
    "IdempotencyStore",
    "InFlight",
    "MemoryBreakerStore",
    "MemoryIdempotencyStore",
    "MemoryRateLimitStore",
    "RateLimitGrant",
    "RateLimitStore",
    "Reservation",
    "Reserved",
    "SharedBreakerState",
    "SharedState",
    "WINDOW_BUCKETS",
]
