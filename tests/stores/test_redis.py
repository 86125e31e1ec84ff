"""The Redis store: the store contract on a real redis-server, and outage behaviour."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from resilio.stores.redis import RedisStore, StoreUnavailable
from tests.stores._contract import *  # noqa: F403 - the shared contract tests

pytestmark = pytest.mark.redis


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    """A Redis store on a flushed database."""
    s = RedisStore(redis_url, socket_timeout=2.0)
    yield s
    s.close()


@pytest.fixture
def advance():
    """Let the server's clock move forward (a short real sleep: Redis time cannot be faked)."""
    return time.sleep


def test_keys_are_namespaced_by_name(store: RedisStore) -> None:
    """Breaker keys live under resilio:breaker:{name}:."""
    store.record("payments", successes=0, failures=1, slow=0, trailing_failures=0, window=10)
    keys = sorted(k.decode() for k in store.client.keys("resilio:*"))
    assert keys == ["resilio:breaker:payments:state", "resilio:breaker:payments:window"]


def test_unreachable_server_fails_fast_then_cools_down() -> None:
    """With no server, a call fails within the socket timeout; later calls fail at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = RedisStore(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2, cooldown=30)
    start = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.load("x")
    assert time.monotonic() - start < 1.0
    assert not store.available
    start = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cooling down"):
        store.acquire("x", rate=1, per=1, burst=1, max_wait=0)
    assert time.monotonic() - start < 0.01


def test_blackholed_server_times_out_quickly() -> None:
    """A server that accepts but never answers costs one socket timeout, then fails fast."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        store = RedisStore(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2, cooldown=30)
        start = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.reserve("k", lease=1)
        assert time.monotonic() - start < 1.5
    finally:
        listener.close()


async def test_async_unreachable_fails_fast() -> None:
    """The async path reports an outage as StoreUnavailable too."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = RedisStore(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
    with pytest.raises(StoreUnavailable):
        await store.load_async("x")
