"""Fixtures shared by the whole suite: a fake clock and a real redis-server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
import structlog

from resilio.testing import FakeClock


@pytest.fixture(autouse=True)
def _unconfigured_structlog() -> Iterator[None]:
    """Leave structlog unconfigured after each test.

    ``structlog.testing.capture_logs()`` restores the processors it replaced but leaves structlog
    marked as configured, which would send later tests' log lines to stdout.
    """
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _restore_telemetry_switches() -> Iterator[None]:
    """Put resilio's process-wide telemetry switches back after each test.

    ``resilio.health()`` starts health statistics for the whole process on first use; a test
    that calls it must not change what later tests see.
    """
    from resilio.telemetry._settings import SWITCHES

    before = {name: getattr(SWITCHES, name) for name in SWITCHES.__slots__}
    yield
    for name, value in before.items():
        setattr(SWITCHES, name, value)


@pytest.fixture
def clock() -> FakeClock:
    """A fresh fake clock starting at t=1000."""
    return FakeClock(start=1000.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real redis-server process on a free loopback port."""

    def __init__(self, port: int, proc: subprocess.Popen[bytes], workdir: str) -> None:
        self.port = port
        self.proc = proc
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{port}/0"

    def flush(self) -> None:
        """Drop every key."""
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Start a real redis-server for the session (skipped locally if not installed; CI fails)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/run must install it")
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    workdir = tempfile.mkdtemp(prefix="resilio-redis-")
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.02)
    server = RedisServer(port, proc, workdir)
    try:
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a flushed real Redis database."""
    redis_server.flush()
    return redis_server.url
