"""A real Redis outage under a shared circuit breaker: the server is killed, then restarted.

The test starts its own redis-server on its own port (the session's server is never touched).
The breaker's sync interval runs on a FakeClock; only the server's restart takes real time.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilio._pipeline import Pipeline
from resilio.errors import CircuitOpen
from resilio.events import BreakerStoreDegraded, Event
from resilio.policies.circuit_breaker import CircuitBreaker
from resilio.stores.redis import RedisStore
from resilio.telemetry.health import health
from resilio.testing import FakeClock

pytestmark = [pytest.mark.redis, pytest.mark.slow]


class OwnRedis:
    """A redis-server this test starts, kills and restarts on one port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    pytest.fail("redis-server did not start")
                time.sleep(0.02)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A redis-server of this test's own, stopped at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    server = OwnRedis(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def ok() -> str:
    return "ok"


def _breaker_health(pipe: Pipeline) -> tuple[str, str | None, object]:
    entry = health(pipe).pipeline("p")
    (policy,) = entry.policies
    return entry.status, policy.reason, policy.details.get("store_degraded")


def test_redis_killed_and_restarted_under_a_shared_breaker(
    own_redis: OwnRedis, clock: FakeClock
) -> None:
    """Killed server: calls go on locally, degraded reported; restarted: resynced, healthy."""
    store = RedisStore(own_redis.url, socket_timeout=0.2, cooldown=0.2)
    events: list[Event] = []
    breaker = CircuitBreaker(
        failure_threshold=3, break_duration=30, store=store, sync_interval=1, name="svc"
    )
    pipe = Pipeline([breaker], name="p", clock=clock, listeners=[events.append])

    def degraded() -> list[bool]:
        return [e.degraded for e in events if isinstance(e, BreakerStoreDegraded)]

    assert pipe.execute(ok) == "ok"  # the first admission syncs with the store
    assert store.client.exists("resilio:breaker:svc:state") == 1
    assert _breaker_health(pipe) == ("healthy", None, False)

    own_redis.kill()
    results = []
    for _ in range(5):  # each call after a sync interval asks the dead server
        clock.advance(1)
        results.append(pipe.execute(ok))
    assert results == ["ok"] * 5, "callers never see the store's failure"
    assert degraded() == [True]
    (lost,) = [e for e in events if isinstance(e, BreakerStoreDegraded)]
    assert lost.error_type == "resilio.stores.redis.StoreUnavailable"
    assert _breaker_health(pipe) == ("degraded", "store_degraded", True)
    assert health(pipe).reasons == ("pipeline 'p': circuit_breaker 'svc': store_degraded",)

    own_redis.start()  # an empty server on the same port: the breaker's key is gone
    deadline = time.monotonic() + 5
    while not store.available:  # the store's cooldown runs on real time
        assert time.monotonic() < deadline
        time.sleep(0.02)
    clock.advance(1)
    assert pipe.execute(ok) == "ok"
    assert degraded() == [True, False]
    assert store.client.exists("resilio:breaker:svc:state") == 1, "the breaker synced again"
    assert _breaker_health(pipe) == ("healthy", None, False)

    # Resynced: a circuit opened in the store by another process reaches this breaker.
    other_store = RedisStore(own_redis.url)
    other = CircuitBreaker(failure_threshold=3, break_duration=30, store=other_store, name="svc")
    other_pipe = Pipeline([other], name="other", clock=clock)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            other_pipe.execute(_down)
    assert store.load("svc").state == "open"
    clock.advance(1)
    with pytest.raises(CircuitOpen):
        pipe.execute(ok)
    assert _breaker_health(pipe)[:2] == ("unhealthy", "open")
    store.close()
    other_store.close()


def _down() -> None:
    raise ConnectionError("service down")
