"""The SQLite store: the store contract on a file, shared by processes of one host."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from resilio.stores.sqlite import SQLiteStore
from resilio.testing import FakeClock
from tests.stores._contract import *  # noqa: F403 - the shared contract tests


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[SQLiteStore]:
    """A SQLite store on a fresh file, on the fake clock."""
    s = SQLiteStore(tmp_path / "state.db", clock=clock)
    yield s
    s.close()


@pytest.fixture
def advance(clock: FakeClock):
    """Move the store's (fake) clock forward."""
    return clock.advance


def test_two_store_objects_share_one_file(tmp_path: Path, clock: FakeClock) -> None:
    """Two stores on the same file see one breaker state (as two processes would)."""
    a = SQLiteStore(tmp_path / "s.db", clock=clock)
    b = SQLiteStore(tmp_path / "s.db", clock=clock)
    a.record("x", successes=0, failures=4, slow=0, trailing_failures=0, window=0)
    assert (
        b.record(
            "x", successes=0, failures=1, slow=0, trailing_failures=0, window=0
        ).consecutive_failures
        == 5
    )
