"""Fixtures for outbox tests: an outbox on each backend, a fake registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from resilio.outbox import Outbox
from resilio.testing import FakeClock
from tests.outbox._fakes import FakeRegistry

BACKENDS = ["sqlite", "redis"]


def make_outbox(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, clock: FakeClock
) -> Outbox:
    if kind == "sqlite":
        return Outbox.sqlite(tmp_path / "outbox.sqlite3", clock=clock)
    url = request.getfixturevalue("redis_url")
    return Outbox.redis(url, name="test", clock=clock)


@pytest.fixture(params=BACKENDS)
def outbox(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Outbox]:
    """An empty outbox on each backend, on the fake clock."""
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
    box = make_outbox(request.param, tmp_path, request, clock)
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Each backend's name ("sqlite", "redis"), marking the Redis case."""
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
    return str(request.param)


@pytest.fixture
def registry(clock: FakeClock) -> FakeRegistry:
    """A fake operations registry whose pipeline runs on the fake clock."""
    return FakeRegistry(clock=clock)
