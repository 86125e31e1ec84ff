"""The durable journal that makes ``resilio-customerio send`` resumable.

The journal is a SQLite file next to the input (``FILE.jsonl.journal``). It holds one row per
line that was looked at: a digest of the line's bytes, its status, the event ULID(s) assigned
to it and a short, payload-free detail. A line's ULID is written and committed **before** the
line is sent, so a run killed mid-flight and started again resends the line with the same ULID
and Customer.io drops the duplicate.

Statuses: ``pending`` (ULID committed, the call may be in flight), ``sent``, ``deduplicated``,
``queued`` (taken by the outbox), ``dead`` (failed and set aside), ``invalid``, and ``unknown``
(a non-idempotent call that was in flight when the previous run stopped: it may or may not have
taken effect, so it is not sent again).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from attrs import frozen

__all__ = ["FINAL", "Journal", "JournalMismatchError", "Row", "digest", "journal_path_for"]

FINAL = frozenset({"sent", "deduplicated", "queued", "dead", "invalid", "unknown"})
"""Statuses of lines that a resumed run does not send again."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (
    line INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    status TEXT NOT NULL,
    event_ids TEXT,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class JournalMismatchError(Exception):
    """The input changed since the journal was written (a line's digest differs)."""


def digest(raw: bytes) -> str:
    """Return the digest the journal stores for a line (16 hex characters).

    Args:
        raw: The line's bytes, without its line ending.

    Returns:
        The digest.
    """
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def journal_path_for(input_path: Path) -> Path:
    """Return the default journal location for an input file: ``<input>.journal``.

    Args:
        input_path: The JSONL file.

    Returns:
        The journal path, in the same directory.
    """
    return input_path.with_name(input_path.name + ".journal")


@frozen
class Row:
    """One line's entry in the journal.

    Attributes:
        line: 1-based line number.
        digest: Digest of the line's bytes.
        status: The line's status.
        event_ids: ULIDs assigned to the line (empty when none).
        detail: Why the line is invalid, dead or deduplicated (never payload).
    """

    line: int
    digest: str
    status: str
    event_ids: tuple[str, ...] = ()
    detail: str | None = None


class Journal:
    """A per-input SQLite journal of line statuses and assigned event ULIDs.

    Not thread-safe: one thread (the one running the send loop) uses it.

    Args:
        path: The journal file; created if missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._in_tx = False
        self._recorded: list[tuple[int, str, str, str | None, str | None]] = []

    def close(self) -> None:
        """Commit anything pending and close the file."""
        self.commit()
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading --------------------------------------------------------------------------------

    def rows(self) -> Iterator[Row]:
        """Yield every row, by line number."""
        self._flush()
        cursor = self._db.execute(
            "SELECT line, digest, status, event_ids, detail FROM lines ORDER BY line"
        )
        for line, dig, status, ids, detail in cursor:
            yield Row(line, dig, status, tuple(ids.split(",")) if ids else (), detail)

    def get_meta(self, key: str) -> str | None:
        """Return a stored setting of the run (``None`` when unset).

        Args:
            key: The setting's name.

        Returns:
            Its value.
        """
        found = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if found is None else str(found[0])

    # -- writing --------------------------------------------------------------------------------

    def _flush(self) -> None:
        if self._recorded:
            self._db.executemany(
                "INSERT OR REPLACE INTO lines (line, digest, status, event_ids, detail) "
                "VALUES (?, ?, ?, ?, ?)",
                self._recorded,
            )
            self._recorded.clear()

    def _begin(self) -> None:
        self._flush()
        if not self._in_tx:
            self._db.execute("BEGIN")
            self._in_tx = True

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting of the run.

        Args:
            key: The setting's name.
            value: Its value.
        """
        self._begin()
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def record(
        self,
        line: int,
        line_digest: str,
        status: str,
        event_ids: Iterable[str] = (),
        detail: str | None = None,
    ) -> None:
        """Insert or replace a line's row (made durable by the next :meth:`commit`).

        Rows are written in bulk when the journal is next read, changed or committed.

        Args:
            line: 1-based line number.
            line_digest: Digest of the line's bytes.
            status: The new status.
            event_ids: ULIDs assigned to the line.
            detail: A short, payload-free explanation.
        """
        if not self._in_tx:
            self._begin()
        self._recorded.append((line, line_digest, status, ",".join(event_ids) or None, detail))

    def update(self, line: int, status: str, detail: str | None = None) -> None:
        """Change a line's status, keeping its digest and ULIDs.

        Args:
            line: 1-based line number.
            status: The new status.
            detail: A short, payload-free explanation.
        """
        self._begin()
        self._db.execute(
            "UPDATE lines SET status = ?, detail = ? WHERE line = ?", (status, detail, line)
        )

    def update_many(self, changes: Iterable[tuple[int, str, str | None]]) -> None:
        """Change several lines' statuses at once (a finished batch request).

        Args:
            changes: ``(line, status, detail)`` triples.
        """
        self._begin()
        self._db.executemany(
            "UPDATE lines SET status = ?, detail = ? WHERE line = ?",
            ((status, detail, line) for line, status, detail in changes),
        )

    def reset_status(self, status: str) -> int:
        """Turn every line with ``status`` back to ``pending`` so it is sent again.

        Args:
            status: The status to reset (``dead`` or ``unknown``).

        Returns:
            How many lines were reset.
        """
        self._begin()
        cursor = self._db.execute(
            "UPDATE lines SET status = 'pending', detail = NULL WHERE status = ?", (status,)
        )
        return cursor.rowcount

    def commit(self) -> None:
        """Make every change so far durable."""
        self._flush()
        if self._in_tx:
            self._db.execute("COMMIT")
            self._in_tx = False
