"""Stores that share policy state: protocols and the in-memory implementations.

Backends for several processes (SQLite, Redis) implement the same protocols.
:func:`register_store_kinds` adds their kinds (``sqlite``, ``redis``) to a plugin catalog, so a
configuration's ``stores:`` section can declare them.
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
from resilio.stores.factory import register_store_kinds
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
    "register_store_kinds",
]
