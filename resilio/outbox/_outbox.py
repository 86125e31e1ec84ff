"""The outbox: durable storage for work that failed now and must be done later."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from resilio._clock import SYSTEM_CLOCK, Clock
from resilio.outbox._model import (
    Backend,
    ItemState,
    NewItem,
    OutboxItem,
    OutboxStats,
    Queued,
    dump_payload,
    new_idempotency_key,
    new_item_id,
)
from resilio.telemetry._log import log
from resilio.telemetry.metrics import observe_outbox, unobserve_outbox

if TYPE_CHECKING:
    from resilio.classify import Classification

__all__ = ["Outbox"]


class Outbox:
    """A durable queue of operations to replay later (the fallback's ``enqueue=`` target).

    Items hold an operation name, a JSON payload and an idempotency key; a
    :class:`~resilio.Drainer` replays them through the operation's handler and pipeline.
    Enqueueing is idempotent on the key: while an item with the same key is pending or leased,
    :meth:`enqueue` stores nothing and returns that item's receipt (``duplicate=True``).

    The operation name is not checked against any registry when enqueueing: the outbox does
    not know the registry that will drain it. An item whose operation the drainer's registry
    does not know is not dead-lettered: the drainer gives it back pending, its attempts
    unchanged, not due again for the drainer's lease, and counts it as ``skipped``.

    Args:
        store: A backend (:class:`~resilio.outbox.sqlite.SQLiteBackend`,
            :class:`~resilio.outbox.redis.RedisBackend`), or a path to a SQLite file.
            Default: the SQLite file ``resilio-outbox.sqlite3`` **in the current working
            directory**, created (with the table) on first use; its path is logged at debug level
            (``resilio.outbox.opened``). Give a path in production, so the outbox does not
            depend on where the process was started.
        name: The outbox's name in metrics and logs. Its depth (pending + leased items) is
            reported as the ``resilio.outbox.depth`` gauge and in health reports from
            construction until :meth:`close`; one name is one gauge, so give outboxes that
            live at the same time different names.
        clock: Source of wall-clock time (tests pass a fake clock).

    Raises:
        TypeError: If ``name`` is not a non-empty string, or ``store`` is not a backend.
    """

    def __init__(
        self,
        store: Backend | str | os.PathLike[str] | None = None,
        *,
        name: str = "outbox",
        clock: Clock | None = None,
    ) -> None:
        _check_name(name)
        if store is None or isinstance(store, str | os.PathLike):
            from resilio.outbox.sqlite import DEFAULT_PATH, SQLiteBackend

            store = SQLiteBackend(store if store is not None else DEFAULT_PATH)
            _log_opened(name, store)
        if not isinstance(store, Backend):
            raise TypeError(f"outbox store must be an outbox backend, got {type(store).__name__}")
        self.backend: Backend = store
        self.name = name
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        observe_outbox(name, self._depth)

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def sqlite(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        synchronous: str = "normal",
        name: str = "outbox",
        clock: Clock | None = None,
        create: bool = True,
    ) -> Outbox:
        """Make an outbox in a SQLite file (WAL journal).

        Args:
            path: The file; default ``resilio-outbox.sqlite3`` in the current working directory.
            synchronous: ``"normal"`` survives process crashes, ``"full"`` also power loss.
            name: The outbox's name in metrics and logs.
            clock: Source of wall-clock time.
            create: Create the file if missing (default). With ``False`` the file must exist
                and be an outbox; it is opened without ever creating anything.

        Returns:
            The outbox.

        Raises:
            FileNotFoundError: With ``create=False``, if the file does not exist.
            ValueError: With ``create=False``, if the file is not an outbox.
            TypeError: If ``name`` is not a non-empty string.
        """
        _check_name(name)
        from resilio.outbox.sqlite import DEFAULT_PATH, SQLiteBackend

        backend = SQLiteBackend(
            path if path is not None else DEFAULT_PATH, synchronous=synchronous, create=create
        )
        _log_opened(name, backend)
        return cls(backend, name=name, clock=clock)

    @classmethod
    def redis(cls, client: Any, *, name: str = "outbox", clock: Clock | None = None) -> Outbox:
        """Make an outbox on Redis Streams, shared by every process that uses the same name.

        Args:
            client: A ``redis://`` URL or a ``redis.Redis`` client.
            name: The outbox's name; its keys are ``resilio:outbox:{name}:*``.
            clock: Source of wall-clock time.

        Returns:
            The outbox.

        Raises:
            TypeError: If ``name`` is not a non-empty string.
        """
        _check_name(name)
        from resilio.outbox.redis import RedisBackend

        return cls(RedisBackend(client, name=name), name=name, clock=clock)

    @classmethod
    def from_store(
        cls,
        store: Any,
        *,
        name: str = "outbox",
        synchronous: str = "normal",
        clock: Clock | None = None,
    ) -> Outbox:
        """Make an outbox where a policy state store keeps its data.

        A :class:`~resilio.stores.sqlite.SQLiteStore` gives an outbox in the same SQLite file
        (its own table, next to the store's). A :class:`~resilio.stores.redis.RedisStore` gives
        an outbox on the same server and database: from the store's URL it opens its own
        connection with the outbox's socket timeout (5 s; the store's is short on purpose),
        from a store made with a ``client`` it uses that client. The outbox's keys are
        ``resilio:outbox:{name}:*`` whatever the store's ``prefix``.

        Args:
            store: The store.
            name: The outbox's name in metrics and logs (and its Redis keys).
            synchronous: For a SQLite store, ``"normal"`` or ``"full"``.
            clock: Source of wall-clock time.

        Returns:
            The outbox.

        Raises:
            TypeError: If ``store`` is neither a SQLite nor a Redis store.
        """
        from resilio.stores.redis import RedisStore
        from resilio.stores.sqlite import SQLiteStore

        if isinstance(store, SQLiteStore):
            return cls.sqlite(store.path, synchronous=synchronous, name=name, clock=clock)
        if isinstance(store, RedisStore):
            return cls.redis(store.url or store.client, name=name, clock=clock)
        raise TypeError(f"an outbox needs a sqlite or redis store, got {type(store).__name__}")

    @classmethod
    def from_mapping(
        cls,
        spec: Mapping[str, Any],
        *,
        clock: Clock | None = None,
        stores: Mapping[str, Any] | None = None,
    ) -> Outbox:
        """Make an outbox from a configuration mapping.

        ``{"kind": "sqlite", "path": "outbox.db", "synchronous": "full"}``,
        ``{"kind": "redis", "url": "redis://host:6379/0", "name": "emails"}``, or
        ``{"store": "shared", "name": "emails"}`` for the store named ``shared`` in ``stores``
        (see :meth:`from_store`).

        Args:
            spec: The mapping.
            clock: Source of wall-clock time.
            stores: Stores by name, for a mapping with ``store``.

        Raises:
            ValueError: If the kind is unknown, a key is not recognised, or ``store`` names no
                store of ``stores``.
        """
        spec = dict(spec)
        if "store" in spec:
            store_name = spec.pop("store")
            unknown = set(spec) - {"name", "synchronous"}
            if unknown:
                raise ValueError(f"outbox (store): unknown keys {sorted(unknown)}")
            if stores is None or store_name not in stores:
                raise ValueError(f"outbox: unknown store {store_name!r}")
            return cls.from_store(
                stores[store_name],
                name=spec.get("name", "outbox"),
                synchronous=spec.get("synchronous", "normal"),
                clock=clock,
            )
        kind = spec.pop("kind", "sqlite")
        name = spec.pop("name", "outbox")
        if kind == "sqlite":
            unknown = set(spec) - {"path", "synchronous"}
            if unknown:
                raise ValueError(f"outbox (sqlite): unknown keys {sorted(unknown)}")
            return cls.sqlite(
                spec.get("path"),
                synchronous=spec.get("synchronous", "normal"),
                name=name,
                clock=clock,
            )
        if kind == "redis":
            unknown = set(spec) - {"url"}
            if unknown or "url" not in spec:
                raise ValueError("outbox (redis): needs exactly a 'url' (and optional 'name')")
            return cls.redis(spec["url"], name=name, clock=clock)
        raise ValueError(f"outbox kind must be 'sqlite' or 'redis', got {kind!r}")

    # -- enqueueing --------------------------------------------------------------------------

    def _new(
        self,
        operation: str,
        payload: Any,
        idempotency_key: str | None,
        classification: Classification | None,
        now: float,
    ) -> tuple[NewItem, Queued]:
        if not isinstance(operation, str) or not operation:
            raise TypeError("outbox operation must be a non-empty string")
        key = idempotency_key if idempotency_key is not None else new_idempotency_key()
        delay = 0.0
        kind = reason = None
        if classification is not None:
            kind = classification.kind.value
            reason = classification.reason
            delay = classification.retry_after or 0.0
        item = NewItem(
            item_id=new_item_id(),
            operation=operation,
            payload_json=dump_payload(payload, operation),
            idempotency_key=key,
            created_at=now,
            next_run_at=now + delay,
            error_kind=kind,
            error_reason=reason,
        )
        queued = Queued(
            item_id=item.item_id,
            operation=operation,
            idempotency_key=key,
            reason=reason or kind or "enqueued",
        )
        return item, queued

    def enqueue(
        self,
        *,
        operation: str,
        payload: Any,
        idempotency_key: str | None = None,
        classification: Classification | None = None,
    ) -> Queued:
        """Store one item durably; it is replayable as soon as this returns.

        Args:
            operation: Name of the operation whose handler replays the work.
            payload: JSON-serialisable description of the work.
            idempotency_key: Key carried by every replay; when omitted (or ``None``) a fresh
                one is generated (``Queued.idempotency_key``), so the item is never a duplicate.
            classification: The failure that made the caller queue the work; its
                ``retry_after`` delays the first replay.

        Returns:
            The receipt; if an item with the same idempotency key is pending or leased, that
            item's receipt (``duplicate=True``) and nothing new is stored.

        Raises:
            TypeError: If the payload is not JSON-serialisable.
        """
        item, queued = self._new(
            operation, payload, idempotency_key, classification, self.clock.time()
        )
        return _receipts([queued], self.backend.add([item]))[0]

    def enqueue_many(self, items: Iterable[Mapping[str, Any]]) -> list[Queued]:
        """Store many items in one write (one transaction or one pipeline round trip).

        Args:
            items: Mappings with the keyword arguments of :meth:`enqueue`
                (``operation``, ``payload``, optional ``idempotency_key`` and ``classification``).

        Returns:
            One receipt per item, in order (items whose key is already pending or leased, or
            repeated within ``items``, get the existing item's receipt, ``duplicate=True``).
        """
        now = self.clock.time()
        new: list[NewItem] = []
        receipts: list[Queued] = []
        for spec in items:
            item, queued = self._new(
                spec["operation"],
                spec.get("payload"),
                spec.get("idempotency_key"),
                spec.get("classification"),
                now,
            )
            new.append(item)
            receipts.append(queued)
        if not new:
            return receipts
        return _receipts(receipts, self.backend.add(new))

    async def enqueue_async(
        self,
        *,
        operation: str,
        payload: Any,
        idempotency_key: str | None = None,
        classification: Classification | None = None,
    ) -> Queued:
        """Like :meth:`enqueue`, writing from a worker thread so the event loop never blocks."""
        item, queued = self._new(
            operation, payload, idempotency_key, classification, self.clock.time()
        )
        stored = await asyncio.to_thread(self.backend.add, [item])
        return _receipts([queued], stored)[0]

    # -- inspection and maintenance ----------------------------------------------------------

    def stats(self) -> OutboxStats:
        """Count the items in each state."""
        return self.backend.stats()

    def items(
        self, state: ItemState | str = ItemState.PENDING, limit: int = 100
    ) -> list[OutboxItem]:
        """Return up to ``limit`` items in one state, oldest first."""
        return self.backend.items(ItemState(state), limit)

    def requeue(self, item_ids: Sequence[str] | None = None) -> int:
        """Give dead items another chance (all of them if ``item_ids`` is ``None``).

        Returns:
            How many items became pending.
        """
        return self.backend.requeue(item_ids, self.clock.time())

    def purge(
        self, state: ItemState | str = ItemState.DONE, older_than: float | None = None
    ) -> int:
        """Delete done or dead items, optionally only those older than ``older_than`` seconds.

        Returns:
            How many items were deleted.
        """
        return self.backend.purge(ItemState(state), older_than, self.clock.time())

    def _depth(self) -> int:
        return self.backend.stats().depth

    def close(self) -> None:
        """Stop reporting the outbox's depth and release the backend's connections."""
        unobserve_outbox(self.name)
        self.backend.close()

    def __repr__(self) -> str:
        return f"Outbox(name={self.name!r}, backend={self.backend!r})"


def _check_name(name: object) -> None:
    # The name labels a metric and a health entry (and Redis keys): None or "" would break them.
    if not isinstance(name, str) or not name:
        raise TypeError(f"outbox name must be a non-empty string, got {name!r}")


def _log_opened(name: str, backend: Any) -> None:
    path = getattr(backend, "path", None)
    if path is not None:
        log("debug", "resilio.outbox.opened", outbox=name, path=os.path.abspath(path))


def _receipts(receipts: list[Queued], stored: Sequence[OutboxItem | None] | None) -> list[Queued]:
    if stored is None:
        return receipts
    out = []
    for queued, existing in zip(receipts, stored, strict=True):
        if existing is None:
            out.append(queued)
            continue
        out.append(
            Queued(
                item_id=existing.item_id,
                operation=existing.operation,
                idempotency_key=existing.idempotency_key,
                reason=existing.error_reason or existing.error_kind or "enqueued",
                duplicate=True,
            )
        )
    return out
