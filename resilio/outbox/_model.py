"""The outbox's values: items, queued receipts, statistics, and the backend protocol."""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from attrs import field, frozen

__all__ = [
    "Backend",
    "ItemState",
    "NewItem",
    "OutboxItem",
    "OutboxStats",
    "Queued",
    "dump_payload",
    "new_idempotency_key",
]


class ItemState(enum.Enum):
    """Where an outbox item is in its life."""

    PENDING = "pending"
    """Waiting for its next run time."""

    LEASED = "leased"
    """Taken by a drainer until its lease expires."""

    DONE = "done"
    """Delivered."""

    DEAD = "dead"
    """Given up on: a permanent failure, too many attempts, or too old. Can be requeued."""


@frozen(kw_only=True)
class Queued:
    """The receipt for work put in the outbox instead of being done now.

    Attributes:
        item_id: The item's id in its outbox.
        operation: The operation that will replay the work.
        idempotency_key: The key every replay carries (assigned if the caller gave none).
        reason: Why the work was queued: the failure's reason, or its kind.
        duplicate: ``True`` when an item with the same idempotency key was already pending or
            leased: nothing new was stored, and the receipt is that item's.
    """

    item_id: str
    operation: str
    idempotency_key: str
    reason: str
    duplicate: bool = False


@frozen(kw_only=True)
class OutboxItem:
    """One unit of queued work, as stored.

    Attributes:
        item_id: The item's id in its outbox.
        operation: Name of the operation whose handler replays it.
        payload: The JSON payload handed to the handler.
        idempotency_key: The key every replay carries.
        attempts: Replays started and not given back: one that ended, or was cut short by a
            crash, counts; one interrupted at shutdown (given back), or of an item the drainer
            cannot run, does not.
        next_run_at: Wall-clock time (epoch seconds) before which it is not replayed.
        created_at: Wall-clock time it was enqueued.
        state: Where it is in its life.
        error_kind: Kind of the last failure (``"transient"``, ...), if any.
        error_reason: Short reason of the last failure, if any (never raw error text).
        lease_token: While leased, the token that proves the lease; ``None`` otherwise.
    """

    item_id: str
    operation: str
    payload: Any = field(repr=False)
    idempotency_key: str
    attempts: int
    next_run_at: float
    created_at: float
    state: ItemState
    error_kind: str | None = None
    error_reason: str | None = None
    lease_token: str | None = field(default=None, repr=False)


@frozen(kw_only=True)
class OutboxStats:
    """How many items an outbox holds in each state.

    Attributes:
        pending: Items waiting (due now or later).
        leased: Items a drainer holds.
        dead: Dead-lettered items.
        done: Delivered items still kept (SQLite) or delivered so far (Redis counter).
        oldest_pending_at: Creation time of the oldest pending item, if any.
    """

    pending: int
    leased: int
    dead: int
    done: int
    oldest_pending_at: float | None = None

    @property
    def depth(self) -> int:
        """Items not yet delivered nor dead (pending + leased)."""
        return self.pending + self.leased


@frozen(kw_only=True)
class NewItem:
    """An item about to be enqueued, payload already serialised.

    Attributes:
        item_id: The id to store it under.
        operation: The operation name.
        payload_json: The payload as JSON text.
        idempotency_key: The key replays carry.
        created_at: Enqueue time (epoch seconds).
        next_run_at: First time it may be replayed.
        error_kind: Kind of the failure that queued it, if any.
        error_reason: Reason of the failure that queued it, if any.
    """

    item_id: str
    operation: str
    payload_json: str = field(repr=False)
    idempotency_key: str
    created_at: float
    next_run_at: float
    error_kind: str | None = None
    error_reason: str | None = None


@runtime_checkable
class Backend(Protocol):
    """Where an outbox keeps its items. Every method is atomic on its own.

    Mutations of a leased item take the ``lease_token`` returned by :meth:`lease`; they do
    nothing (and return ``False``) if the lease was lost to another drainer meanwhile.
    """

    def add(self, items: Sequence[NewItem]) -> Sequence[OutboxItem | None] | None:
        """Store new pending items durably, atomically, one live item per idempotency key.

        Returns:
            Per item, ``None`` if it was stored, or the pending or leased item that already
            holds its idempotency key (nothing is stored for it). A backend that returns
            ``None`` instead of a list stored every item.
        """
        ...

    def lease(self, limit: int, now: float, lease_seconds: float) -> list[OutboxItem]:
        """Take up to ``limit`` due items (or items whose lease expired); count an attempt each."""
        ...

    def renew(self, items: Iterable[OutboxItem], now: float, lease_seconds: float) -> None:
        """Extend the leases of items still held."""
        ...

    def complete(self, item: OutboxItem, now: float) -> bool:
        """Mark a leased item delivered."""
        ...

    def reschedule(
        self, item: OutboxItem, now: float, next_run_at: float, kind: str, reason: str | None
    ) -> bool:
        """Return a leased item to pending, to run again at ``next_run_at``."""
        ...

    def bury(self, item: OutboxItem, now: float, kind: str, reason: str | None) -> bool:
        """Move a leased item to the dead-letter state."""
        ...

    def release(self, item: OutboxItem, now: float, next_run_at: float | None = None) -> bool:
        """Give a leased item back unrun: pending, its attempt not counted.

        With ``next_run_at`` it is not due before then (an item this drainer cannot run);
        without, it is due when it was before it was leased.
        """
        ...

    def stats(self) -> OutboxStats:
        """Count the items in each state."""
        ...

    def items(self, state: ItemState, limit: int) -> list[OutboxItem]:
        """Return up to ``limit`` items in one state, oldest first."""
        ...

    def requeue(self, item_ids: Sequence[str] | None, now: float) -> int:
        """Make dead items pending again with zero attempts (all dead items if ``None``)."""
        ...

    def purge(self, state: ItemState, older_than: float | None, now: float) -> int:
        """Delete done or dead items (those that changed state before ``now - older_than``)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def dump_payload(payload: Any, operation: str) -> str:
    """Serialise a payload to compact JSON.

    Raises:
        TypeError: If the payload is not JSON-serialisable (the message names the operation and
            the offending type, never the payload's content).
    """
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"outbox payload for operation {operation!r} is not JSON-serialisable "
            f"({type(exc).__name__})"
        ) from None


def new_idempotency_key() -> str:
    """Return a fresh random idempotency key for work enqueued without one."""
    return f"outbox-{uuid.uuid4().hex}"


def new_item_id() -> str:
    """Return a fresh, roughly time-ordered item id."""
    return uuid.uuid4().hex
