"""The outbox: durable queue of work to replay later, and the drainer that replays it.

A :class:`~resilio.Fallback` with ``enqueue=outbox`` stores failed work here; a
:class:`Drainer` replays each item through its operation's handler and pipeline, with backoff,
leases, a dead-letter state and graceful shutdown. Backends: SQLite (default, one file) and
Redis Streams (shared across machines).
"""

from __future__ import annotations

from resilio.outbox._model import ItemState, OutboxItem, OutboxStats, Queued
from resilio.outbox._outbox import Outbox
from resilio.outbox.drainer import Drainer, DrainReport

__all__ = [
    "DrainReport",
    "Drainer",
    "ItemState",
    "Outbox",
    "OutboxItem",
    "OutboxStats",
    "Queued",
]
