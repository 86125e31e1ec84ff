"""The SQLite outbox backend: one file, WAL journal, safe for many threads and processes.

Every state change is one transaction started with ``BEGIN IMMEDIATE``, so two drainers (threads
or processes on the same file) never lease the same item at once. Each thread gets its own
connection.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from resilio.outbox._model import ItemState, NewItem, OutboxItem, OutboxStats
from resilio.stores._sqlite_files import check_creatable, open_wal
from resilio.telemetry._log import log

__all__ = ["DEFAULT_PATH", "SQLiteBackend"]

DEFAULT_PATH = "resilio-outbox.sqlite3"
"""The file used by ``Outbox()`` when no path is given (relative to the current directory)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox_items (
    item_id TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    payload TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_run_at REAL NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    state TEXT NOT NULL,
    due_at REAL,
    lease_token TEXT,
    error_kind TEXT,
    error_reason TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox_items (due_at)
    WHERE state IN ('pending', 'leased');
CREATE INDEX IF NOT EXISTS outbox_state ON outbox_items (state, updated_at);
"""

# One live (pending or leased) item per idempotency key. Created apart from the table: a file
# written by an older version may hold live duplicates, and then the unique index cannot be built.
# Such a file gets a plain index instead, and enqueue looks the key up before inserting (inside
# the write transaction, so the result is the same); the unique index is built at the first open
# after those duplicates are gone.
_LIVE_KEY_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS outbox_live_key ON outbox_items (idempotency_key) "
    "WHERE state IN ('pending', 'leased')"
)
_LIVE_KEY_PLAIN_INDEX = (
    "CREATE INDEX IF NOT EXISTS outbox_live_key_plain ON outbox_items (idempotency_key) "
    "WHERE state IN ('pending', 'leased')"
)

_COLUMNS = (
    "item_id, operation, payload, idempotency_key, attempts, next_run_at, created_at, state, "
    "error_kind, error_reason, lease_token"
)

# The WHERE term on state must read exactly as in the indexes' WHERE, so SQLite uses them.
_LIVE_BY_KEY = (
    "SELECT " + _COLUMNS + " FROM outbox_items WHERE idempotency_key = ? "  # noqa: S608
    "AND state IN ('pending', 'leased') LIMIT 1"
)

_INSERT = (
    "INSERT INTO outbox_items (item_id, operation, payload, idempotency_key, next_run_at, "
    "created_at, updated_at, state, due_at, error_kind, error_reason) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)"
)
# With the unique index: a row whose key is live is skipped, in the same statement.
_INSERT_NEW_KEY = (
    _INSERT + " ON CONFLICT (idempotency_key) WHERE state IN ('pending', 'leased') DO NOTHING"
)

_MAX_VARIABLES = 500  # keys per IN (...) lookup, well under SQLite's limit

_SYNCHRONOUS = {"off", "normal", "full", "extra"}


def _row_to_item(row: Sequence[Any]) -> OutboxItem:
    return OutboxItem(
        item_id=row[0],
        operation=row[1],
        payload=json.loads(row[2]),
        idempotency_key=row[3],
        attempts=row[4],
        next_run_at=row[5],
        created_at=row[6],
        state=ItemState(row[7]),
        error_kind=row[8],
        error_reason=row[9],
        lease_token=row[10],
    )


class SQLiteBackend:
    """Outbox items in a SQLite file.

    At most one pending or leased item holds an idempotency key (a partial unique index):
    :meth:`add` stores nothing for a key that is held and returns the holder instead.

    Args:
        path: The database file.
        synchronous: SQLite's ``synchronous`` pragma. ``"normal"`` (default) survives crashes of
            the process; ``"full"`` also survives power loss, at the cost of an fsync per commit.
        busy_timeout: Seconds to wait for another writer's lock before failing.
        create: Create the file (and its directory) if missing, on first use (default); the
            constructor itself touches nothing on disk, so validating a configuration has no
            side effects. With ``False`` the file must already be an outbox: it is checked
            read-only first and never created (what the ``resilio outbox`` commands use).
            Either way an outbox written by an older version gets the idempotency-key index.

    Raises:
        ValueError: If ``synchronous`` is not one of off, normal, full, extra; if the path is
            a directory or cannot be created (under a file, or in a directory that is not
            writable); or, with ``create=False``, if the file is not an outbox.
        FileNotFoundError: With ``create=False``, if the file does not exist.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        synchronous: str = "normal",
        busy_timeout: float = 10.0,
        create: bool = True,
    ) -> None:
        if synchronous.lower() not in _SYNCHRONOUS:
            raise ValueError(
                f"synchronous must be one of {sorted(_SYNCHRONOUS)}, got {synchronous!r}"
            )
        self.path = os.fspath(path)
        self._synchronous = synchronous.upper()
        self._busy_ms = int(busy_timeout * 1000)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._uri: str | None = None
        self._unique_keys = True
        self._ready = False  # the file, schema and index are made on first use
        if create:
            check_creatable(self.path)
        else:
            self._uri = _check_outbox(self.path) + "?mode=rw"

    def _setup(self, conn: sqlite3.Connection) -> None:
        """Make the schema and the live-key index (first connection only)."""
        conn.executescript(_SCHEMA)
        self._unique_keys = self._index_live_keys(conn)
        self._ready = True

    def _index_live_keys(self, conn: sqlite3.Connection) -> bool:
        """Build the unique live-key index; ``False`` if live duplicates (old files) block it."""
        try:
            conn.execute(_LIVE_KEY_INDEX)
        except sqlite3.IntegrityError:
            conn.execute(_LIVE_KEY_PLAIN_INDEX)
            log("warning", "resilio.outbox.live_key_duplicates", path=self.path)
            return False
        conn.execute("DROP INDEX IF EXISTS outbox_live_key_plain")
        return True

    # -- connections -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if not self._ready and self._uri is None:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            conn = open_wal(
                self.path, busy_ms=self._busy_ms, synchronous=self._synchronous, uri=self._uri
            )
            with self._lock:
                if not self._ready:
                    self._setup(conn)
                self._all.append(conn)
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        conn = conn if conn is not None else self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this backend opened."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    # -- writes ------------------------------------------------------------------------------

    def add(self, items: Sequence[NewItem]) -> list[OutboxItem | None]:
        """Insert new pending items in one transaction, one live item per idempotency key.

        Returns:
            Per item, ``None`` if it was stored, or the pending or leased item that already
            holds its idempotency key (an earlier item of ``items`` included): then nothing
            was stored for it.
        """
        rows = [
            (
                i.item_id,
                i.operation,
                i.payload_json,
                i.idempotency_key,
                i.next_run_at,
                i.created_at,
                i.created_at,
                i.next_run_at,
                i.error_kind,
                i.error_reason,
            )
            for i in items
        ]
        with self._write() as conn:
            if not self._unique_keys:
                return self._add_checking(conn, items, rows)
            if len(rows) == 1:
                stored = conn.execute(_INSERT_NEW_KEY, rows[0]).rowcount
            else:
                stored = conn.executemany(_INSERT_NEW_KEY, rows).rowcount
            if stored == len(rows):  # no key was held: the common case costs no lookup
                return [None] * len(rows)
            return self._holders(conn, items)

    @staticmethod
    def _holders(conn: sqlite3.Connection, items: Sequence[NewItem]) -> list[OutboxItem | None]:
        keys = list(dict.fromkeys(i.idempotency_key for i in items))
        live: dict[str, Sequence[Any]] = {}
        for lo in range(0, len(keys), _MAX_VARIABLES):
            chunk = keys[lo : lo + _MAX_VARIABLES]
            sql = (
                "SELECT " + _COLUMNS + " FROM outbox_items WHERE "  # noqa: S608
                "state IN ('pending', 'leased') AND idempotency_key IN "
                "(" + ", ".join("?" * len(chunk)) + ")"
            )
            live.update((row[3], row) for row in conn.execute(sql, chunk))
        out: list[OutboxItem | None] = []
        for i in items:
            row = live[i.idempotency_key]
            out.append(None if row[0] == i.item_id else _row_to_item(row))
        return out

    @staticmethod
    def _add_checking(
        conn: sqlite3.Connection, items: Sequence[NewItem], rows: list[tuple[Any, ...]]
    ) -> list[OutboxItem | None]:
        """Insert item by item, looking each key up first (files without the unique index)."""
        out: list[OutboxItem | None] = []
        for item, row in zip(items, rows, strict=True):
            held = conn.execute(_LIVE_BY_KEY, (item.idempotency_key,)).fetchone()
            if held is None:
                conn.execute(_INSERT, row)
            out.append(None if held is None else _row_to_item(held))
        return out

    def lease(self, limit: int, now: float, lease_seconds: float) -> list[OutboxItem]:
        """Lease due items (and items whose lease expired), counting an attempt each."""
        token = uuid.uuid4().hex
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE outbox_items SET state = 'leased', lease_token = ?, due_at = ?, "  # noqa: S608
                "attempts = attempts + 1, updated_at = ? WHERE item_id IN ("
                "SELECT item_id FROM outbox_items WHERE state IN ('pending', 'leased') "
                "AND due_at <= ? ORDER BY due_at LIMIT ?) RETURNING " + _COLUMNS,
                (token, now + lease_seconds, now, now, limit),
            ).fetchall()
        items = [_row_to_item(r) for r in rows]
        items.sort(key=lambda i: i.next_run_at)
        return items

    def renew(self, items: Iterable[OutboxItem], now: float, lease_seconds: float) -> None:
        """Push back the lease expiry of items this lease still holds."""
        rows = [(now + lease_seconds, i.item_id, i.lease_token) for i in items]
        with self._write() as conn:
            conn.executemany(
                "UPDATE outbox_items SET due_at = ? WHERE item_id = ? AND lease_token = ? "
                "AND state = 'leased'",
                rows,
            )

    def _finish(self, item: OutboxItem, sql: str, params: tuple[Any, ...]) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                sql + " WHERE item_id = ? AND lease_token = ? AND state = 'leased'",
                (*params, item.item_id, item.lease_token),
            )
            return cur.rowcount == 1

    def complete(self, item: OutboxItem, now: float) -> bool:
        """Mark an item delivered if this lease still holds it."""
        return self._finish(
            item,
            "UPDATE outbox_items SET state = 'done', lease_token = NULL, due_at = NULL, "
            "updated_at = ?",
            (now,),
        )

    def reschedule(
        self, item: OutboxItem, now: float, next_run_at: float, kind: str, reason: str | None
    ) -> bool:
        """Make an item pending again from ``next_run_at``, recording the failure."""
        return self._finish(
            item,
            "UPDATE outbox_items SET state = 'pending', lease_token = NULL, next_run_at = ?, "
            "due_at = ?, error_kind = ?, error_reason = ?, updated_at = ?",
            (next_run_at, next_run_at, kind, reason, now),
        )

    def bury(self, item: OutboxItem, now: float, kind: str, reason: str | None) -> bool:
        """Dead-letter an item, recording the failure."""
        return self._finish(
            item,
            "UPDATE outbox_items SET state = 'dead', lease_token = NULL, due_at = NULL, "
            "error_kind = ?, error_reason = ?, updated_at = ?",
            (kind, reason, now),
        )

    def release(self, item: OutboxItem, now: float, next_run_at: float | None = None) -> bool:
        """Return an item unrun: pending, its attempt uncounted.

        It is due at ``next_run_at`` if given, else when it was due before its lease.
        """
        return self._finish(
            item,
            "UPDATE outbox_items SET state = 'pending', lease_token = NULL, "
            "next_run_at = COALESCE(?, next_run_at), due_at = COALESCE(?, next_run_at), "
            "attempts = MAX(attempts - 1, 0), updated_at = ?",
            (next_run_at, next_run_at, now),
        )

    def requeue(self, item_ids: Sequence[str] | None, now: float) -> int:
        """Make dead items pending and due now, with zero attempts.

        A dead item whose idempotency key is held by a pending or leased item stays dead: that
        work is already queued.
        """
        with self._write() as conn:
            if item_ids is None:
                rows = conn.execute(
                    "SELECT item_id, idempotency_key FROM outbox_items WHERE state = 'dead' "
                    "ORDER BY updated_at"
                ).fetchall()
            else:
                rows = []
                for item_id in item_ids:
                    rows += conn.execute(
                        "SELECT item_id, idempotency_key FROM outbox_items "
                        "WHERE state = 'dead' AND item_id = ?",
                        (item_id,),
                    ).fetchall()
            total = 0
            for item_id, key in rows:
                if conn.execute(_LIVE_BY_KEY, (key,)).fetchone() is not None:
                    continue
                total += conn.execute(
                    "UPDATE outbox_items SET state = 'pending', attempts = 0, next_run_at = ?, "
                    "due_at = ?, updated_at = ? WHERE item_id = ? AND state = 'dead'",
                    (now, now, now, item_id),
                ).rowcount
            return total

    def purge(self, state: ItemState, older_than: float | None, now: float) -> int:
        """Delete done or dead items last changed before ``now - older_than``."""
        if state not in (ItemState.DONE, ItemState.DEAD):
            raise ValueError(f"only done or dead items can be purged, not {state.value}")
        cutoff = now - older_than if older_than is not None else float("inf")
        with self._write() as conn:
            return conn.execute(
                "DELETE FROM outbox_items WHERE state = ? AND updated_at <= ?",
                (state.value, cutoff),
            ).rowcount

    # -- reads -------------------------------------------------------------------------------

    def stats(self) -> OutboxStats:
        """Count items per state."""
        conn = self._conn()
        counts = dict(
            conn.execute("SELECT state, COUNT(*) FROM outbox_items GROUP BY state").fetchall()
        )
        oldest = conn.execute(
            "SELECT MIN(created_at) FROM outbox_items WHERE state = 'pending'"
        ).fetchone()[0]
        return OutboxStats(
            pending=counts.get("pending", 0),
            leased=counts.get("leased", 0),
            dead=counts.get("dead", 0),
            done=counts.get("done", 0),
            oldest_pending_at=oldest,
        )

    def items(self, state: ItemState, limit: int) -> list[OutboxItem]:
        """Return up to ``limit`` items in one state, oldest first."""
        rows = (
            self._conn()
            .execute(
                "SELECT " + _COLUMNS + " FROM outbox_items WHERE state = ? "  # noqa: S608
                "ORDER BY created_at LIMIT ?",
                (state.value, limit),
            )
            .fetchall()
        )
        return [_row_to_item(r) for r in rows]

    def __repr__(self) -> str:
        return f"SQLiteBackend(path={self.path!r})"


def _check_outbox(path: str) -> str:
    """Return the ``file:`` URI of an existing outbox file, reading it without writing anything.

    Raises:
        FileNotFoundError: If nothing exists at ``path``.
        ValueError: If ``path`` is not a SQLite file with the outbox table.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no outbox at {path}: the file does not exist")
    uri = Path(os.path.abspath(path)).as_uri()
    try:
        probe = sqlite3.connect(uri + "?mode=ro", uri=True)
        try:
            found = probe.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox_items'"
            ).fetchone()
        finally:
            probe.close()
    except sqlite3.Error:  # a directory, or not a SQLite file at all
        found = None
    if found is None:
        raise ValueError(f"{path} is not an outbox (no SQLite file with an outbox_items table)")
    return uri
