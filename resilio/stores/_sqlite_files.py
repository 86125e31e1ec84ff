"""SQLite files: checking a path without touching the disk, and opening a WAL connection."""

from __future__ import annotations

import os
import sqlite3
import time

__all__ = ["check_creatable", "open_wal"]


def check_creatable(path: str) -> None:
    """Check that ``path`` is a file that exists or could be created, without creating it.

    Missing directories are fine (they are made on first use) as long as the nearest existing
    ancestor is a writable directory.

    Args:
        path: The SQLite file.

    Raises:
        ValueError: If ``path`` is a directory, or cannot be created: an ancestor is a file,
            or the nearest existing ancestor directory is not writable.
    """
    target = os.path.abspath(path)
    if os.path.isdir(target):
        raise ValueError(f"{path!r} is a directory, not a SQLite file")
    if os.path.exists(target):
        return
    parent = os.path.dirname(target)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"cannot create {path!r}: {parent!r} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot create {path!r}: the directory {parent!r} is not writable")


def open_wal(
    path: str, *, busy_ms: int, synchronous: str = "NORMAL", uri: str | None = None
) -> sqlite3.Connection:
    """Open an autocommit connection in WAL mode with a busy timeout.

    Switching a new file to WAL takes a lock for which SQLite does not always wait, so several
    processes opening one fresh file at once could fail with "database is locked": the switch
    is retried, with short growing pauses, for as long as the busy timeout.

    Args:
        path: The database file (created if missing, unless ``uri`` is given).
        busy_ms: Milliseconds to wait for another connection's lock.
        synchronous: SQLite's ``synchronous`` setting (``NORMAL``, ``FULL`` ...).
        uri: A ``file:`` URI to open instead of ``path`` (``mode=rw``: never create).

    Returns:
        The connection.

    Raises:
        sqlite3.OperationalError: If the file stays locked for the whole busy timeout.
    """
    if uri is not None:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
        give_up = time.monotonic() + busy_ms / 1000
        pause = 0.001
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= give_up:
                    raise
            time.sleep(pause)  # a lock wait, like SQLite's own busy handler: real time
            pause = min(pause * 2, 0.05)
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    except BaseException:
        conn.close()
        raise
    return conn
