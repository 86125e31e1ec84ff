"""Checks of a SQLite file's path that touch nothing on disk."""

from __future__ import annotations

import os

__all__ = ["check_creatable"]


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
