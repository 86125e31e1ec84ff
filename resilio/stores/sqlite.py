"""SQLite stores: breaker, rate-limiter and idempotency state shared by processes of one host.

One :class:`SQLiteStore` implements :class:`~resilio.stores.BreakerStore`,
:class:`~resilio.stores.RateLimitStore` and :class:`~resilio.stores.IdempotencyStore` in both
forms (the ``_async`` methods run the same transaction in a worker thread). Every operation is
one ``BEGIN IMMEDIATE`` transaction on a WAL-journaled file, so processes that open the same
file see one state; the store's clock is the host's wall clock.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from resilio._clock import SYSTEM_CLOCK
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
from resilio.stores._sqlite_files import check_creatable, open_wal

if TYPE_CHECKING:
    from resilio._clock import Clock

__all__ = ["DEFAULT_PATH", "SQLiteStore"]

DEFAULT_PATH = "resilio-state.sqlite3"
"""The file used when no path is given (relative to the current directory)."""

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS breakers (
    name TEXT PRIMARY KEY, state TEXT NOT NULL, version INTEGER NOT NULL, opened_at REAL,
    until REAL, openings INTEGER NOT NULL, consecutive INTEGER NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS breaker_window (
    name TEXT NOT NULL, bucket INTEGER NOT NULL, calls INTEGER NOT NULL,
    failures INTEGER NOT NULL, slow INTEGER NOT NULL, PRIMARY KEY (name, bucket)
);
CREATE TABLE IF NOT EXISTS rate_buckets (
    name TEXT PRIMARY KEY, level REAL NOT NULL, t REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, token TEXT NOT NULL, done INTEGER NOT NULL, result TEXT,
    expires REAL NOT NULL
);
"""

_DAY = 86400.0


class SQLiteStore:
    """Shared policy state in a SQLite file (breaker, rate limiter, idempotency).

    Args:
        path: The database file (default ``resilio-state.sqlite3`` in the current directory).
        clock: The store's clock; its wall time (``clock.time()``) is used. Default: the system
            clock.
        busy_timeout: Seconds to wait for another writer before failing.

    Constructing one touches nothing on disk (so validating a configuration has no side
    effects): the file, its missing directories and its tables are made on first use.

    Raises:
        ValueError: If the path is a directory, or cannot be created (under a file, or in a
            directory that is not writable).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        clock: Clock | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = os.fspath(path)
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._busy_ms = int(busy_timeout * 1000)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._ready = False  # the file and its schema are made on first use
        check_creatable(self.path)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if not self._ready:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            conn = open_wal(self.path, busy_ms=self._busy_ms)
            with self._lock:
                if not self._ready:
                    conn.executescript(_SCHEMA)
                    self._ready = True
                self._all.append(conn)
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[tuple[sqlite3.Connection, float]]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn, self._clock.time()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    @staticmethod
    async def _thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # -- breaker -----------------------------------------------------------------------------

    @staticmethod
    def _snapshot(conn: sqlite3.Connection, name: str, now: float) -> SharedBreakerState:
        row = conn.execute(
            "SELECT state, version, opened_at, until, openings, consecutive FROM breakers "
            "WHERE name = ?",
            (name,),
        ).fetchone()
        calls, failures, slow = conn.execute(
            "SELECT COALESCE(SUM(calls), 0), COALESCE(SUM(failures), 0), COALESCE(SUM(slow), 0) "
            "FROM breaker_window WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            return SharedBreakerState(now=now)
        return SharedBreakerState(
            state=row[0],
            version=row[1],
            now=now,
            opened_at=row[2],
            until=row[3],
            openings=row[4],
            consecutive_failures=row[5],
            window_calls=calls,
            window_failures=failures,
            window_slow=slow,
        )

    @staticmethod
    def _ensure(conn: sqlite3.Connection, name: str, now: float) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO breakers VALUES (?, 'closed', 0, NULL, NULL, 0, 0, ?)",
            (name, now),
        )

    def load(self, name: str) -> SharedBreakerState:
        """Return the shared state of breaker ``name`` (see the BreakerStore protocol)."""
        with self._tx() as (conn, now):
            return self._snapshot(conn, name, now)

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
        """Add a batch of outcomes to breaker ``name`` (see the BreakerStore protocol)."""
        with self._tx() as (conn, now):
            self._ensure(conn, name, now)
            state = conn.execute("SELECT state FROM breakers WHERE name = ?", (name,)).fetchone()
            if state[0] != "closed":
                return self._snapshot(conn, name, now)
            if successes > 0:
                conn.execute(
                    "UPDATE breakers SET consecutive = ?, updated_at = ? WHERE name = ?",
                    (trailing_failures, now, name),
                )
            else:
                conn.execute(
                    "UPDATE breakers SET consecutive = consecutive + ?, updated_at = ? "
                    "WHERE name = ?",
                    (failures, now, name),
                )
            if window > 0:
                current = math.floor(now / (window / WINDOW_BUCKETS))
                conn.execute(
                    "DELETE FROM breaker_window WHERE name = ? AND bucket < ?",
                    (name, current - WINDOW_BUCKETS + 1),
                )
                conn.execute(
                    "INSERT INTO breaker_window VALUES (?, ?, ?, ?, ?) ON CONFLICT (name, bucket) "
                    "DO UPDATE SET calls = calls + excluded.calls, "
                    "failures = failures + excluded.failures, slow = slow + excluded.slow",
                    (name, current, successes + failures, failures, slow),
                )
            else:
                conn.execute("DELETE FROM breaker_window WHERE name = ?", (name,))
            return self._snapshot(conn, name, now)

    def transition(
        self,
        name: str,
        *,
        expected_version: int | None,
        state: SharedState,
        break_duration: float,
    ) -> SharedBreakerState:
        """Compare-and-set breaker ``name``'s state (see the BreakerStore protocol)."""
        with self._tx() as (conn, now):
            self._ensure(conn, name, now)
            (version,) = conn.execute(
                "SELECT version FROM breakers WHERE name = ?", (name,)
            ).fetchone()
            if expected_version is not None and expected_version != version:
                return self._snapshot(conn, name, now)
            sets = "version = version + 1, state = ?, updated_at = ?"
            params: list[Any] = [state, now]
            if state == "open":
                sets += ", opened_at = ?, until = ?, openings = openings + 1, consecutive = 0"
                params += [now, now + break_duration]
            elif state == "half_open":
                sets += ", until = ?"
                params += [now + break_duration]
            elif state == "closed":
                sets += ", opened_at = NULL, until = NULL, openings = 0, consecutive = 0"
            else:
                sets += ", opened_at = ?, until = NULL"
                params += [now]
            conn.execute(f"UPDATE breakers SET {sets} WHERE name = ?", (*params, name))  # noqa: S608
            if state in ("open", "closed"):
                conn.execute("DELETE FROM breaker_window WHERE name = ?", (name,))
            conn.execute(
                "DELETE FROM breakers WHERE state = 'closed' AND updated_at < ?", (now - _DAY,)
            )
            return self._snapshot(conn, name, now)

    async def load_async(self, name: str) -> SharedBreakerState:
        """See :meth:`load`."""
        return await self._thread(self.load, name)

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
        return await self._thread(
            self.record,
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
        return await self._thread(
            self.transition,
            name,
            expected_version=expected_version,
            state=state,
            break_duration=break_duration,
        )

    # -- rate limiter ------------------------------------------------------------------------

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
        """Reserve tokens from the shared bucket ``name`` (see the RateLimitStore protocol)."""
        with self._tx() as (conn, now):
            row = conn.execute(
                "SELECT level, t FROM rate_buckets WHERE name = ?", (name,)
            ).fetchone()
            level = burst
            if row is not None:
                level = min(burst, row[0] + max(0.0, now - row[1]) * rate / per)
            need = tokens - level
            wait = need * per / rate if need > 0 else 0.0
            if wait > max_wait:
                return RateLimitGrant(False, wait)
            conn.execute(
                "INSERT INTO rate_buckets VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "level = excluded.level, t = excluded.t",
                (name, level - tokens, now),
            )
            return RateLimitGrant(True, wait)

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
        return await self._thread(
            self.acquire, name, rate=rate, per=per, burst=burst, tokens=tokens, max_wait=max_wait
        )

    # -- idempotency -------------------------------------------------------------------------

    def reserve(self, key: str, *, lease: float) -> Reservation:
        """Claim idempotency ``key`` (see the IdempotencyStore protocol)."""
        with self._tx() as (conn, now):
            row = conn.execute(
                "SELECT done, result, expires FROM idempotency WHERE key = ?", (key,)
            ).fetchone()
            if row is not None and row[2] > now:
                if row[0]:
                    return Completed(json.loads(row[1]))
                return InFlight(row[2] - now)
            token = uuid.uuid4().hex
            conn.execute(
                "INSERT INTO idempotency VALUES (?, ?, 0, NULL, ?) ON CONFLICT (key) DO UPDATE "
                "SET token = excluded.token, done = 0, result = NULL, expires = excluded.expires",
                (key, token, now + lease),
            )
            if uuid.UUID(token).int % 64 == 0:  # now and then, drop expired records
                conn.execute("DELETE FROM idempotency WHERE expires <= ?", (now,))
            return Reserved(token)

    def complete(self, key: str, *, token: str, result: Any, ttl: float) -> bool:
        """Store the owner's JSON result for ``ttl`` seconds (see the IdempotencyStore protocol).

        Raises:
            TypeError: If ``result`` is not JSON-serialisable.
        """
        try:
            text = json.dumps(result, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            raise TypeError(
                f"idempotency result of type {type(result).__name__} is not JSON-serialisable"
            ) from None
        with self._tx() as (conn, now):
            cur = conn.execute(
                "UPDATE idempotency SET done = 1, result = ?, expires = ? "
                "WHERE key = ? AND token = ? AND done = 0",
                (text, now + ttl, key, token),
            )
            return cur.rowcount == 1

    def release(self, key: str, *, token: str) -> bool:
        """Drop the owner's in-flight record (see the IdempotencyStore protocol)."""
        with self._tx() as (conn, _now):
            cur = conn.execute(
                "DELETE FROM idempotency WHERE key = ? AND token = ? AND done = 0", (key, token)
            )
            return cur.rowcount == 1

    async def reserve_async(self, key: str, *, lease: float) -> Reservation:
        """See :meth:`reserve`."""
        return await self._thread(self.reserve, key, lease=lease)

    async def complete_async(self, key: str, *, token: str, result: Any, ttl: float) -> bool:
        """See :meth:`complete`."""
        return await self._thread(self.complete, key, token=token, result=result, ttl=ttl)

    async def release_async(self, key: str, *, token: str) -> bool:
        """See :meth:`release`."""
        return await self._thread(self.release, key, token=token)

    def __repr__(self) -> str:
        return f"SQLiteStore(path={self.path!r})"
