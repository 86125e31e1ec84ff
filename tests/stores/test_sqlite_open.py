"""Many processes opening one fresh SQLite file at the same moment (real processes)."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from resilio.outbox import Outbox
from resilio.stores.sqlite import SQLiteStore

pytestmark = pytest.mark.slow


def _open_store(path: str, go: float) -> None:
    while time.time() < go:
        pass
    SQLiteStore(path).load("b")


def _open_outbox(path: str, go: float) -> None:
    while time.time() < go:
        pass
    Outbox.sqlite(path).stats()


@pytest.mark.parametrize("opener", [_open_store, _open_outbox], ids=["store", "outbox"])
def test_processes_opening_a_fresh_file_together_all_succeed(
    tmp_path: Path, opener: object
) -> None:
    """Eight processes make and open one new file at once, ten times: none fails with
    "database is locked" (switching a new file to WAL is retried within the busy timeout)."""
    fork = multiprocessing.get_context("fork")
    failed = 0
    for trial in range(10):
        path = str(tmp_path / f"fresh-{trial}.sqlite3")
        go = time.time() + 0.3
        procs = [fork.Process(target=opener, args=(path, go)) for _ in range(8)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        failed += sum(p.exitcode != 0 for p in procs)
    assert failed == 0
