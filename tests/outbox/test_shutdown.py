"""Graceful shutdown of a real drainer process on SIGTERM or SIGINT: nothing in flight is lost.

Each test runs on SQLite and on a real redis-server, with each signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resilio.outbox import Outbox
from tests.outbox._worker import Sink, open_outbox

ROOT = Path(__file__).resolve().parents[2]
SIGNALS = pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])


@pytest.fixture
def targets(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str]:
    """(outbox target, sink target): two SQLite files, or one flushed real Redis for both."""
    if backend_kind == "redis":
        url = str(request.getfixturevalue("redis_url"))
        return url, url
    return str(tmp_path / "o.db"), str(tmp_path / "s.db")


def _serve(backend: str, target: str, sink: str, grace: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRACE": str(grace)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.outbox._worker", "serve", backend, target, sink],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _fill(backend: str, target: str, sleep: float, n: int) -> Outbox:
    outbox = open_outbox(backend, target)
    outbox.enqueue_many(
        {
            "operation": "deliver",
            "payload": {"key": f"k{i}", "sleep": sleep},
            "idempotency_key": f"k{i}",
        }
        for i in range(n)
    )
    return outbox


@pytest.mark.slow
@SIGNALS
def test_signal_finishes_the_item_in_flight(
    backend_kind: str, targets: tuple[str, str], signum: signal.Signals
) -> None:
    """On the signal the drainer finishes its item within the grace, returns the rest, exits 0."""
    target, sink_target = targets
    outbox = _fill(backend_kind, target, 0.5, 5)
    Sink(backend_kind, sink_target)
    proc = _serve(backend_kind, target, sink_target, grace=5)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    assert proc.stdout.readline().split() == ["started", "k0"]
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert out.strip().endswith("stopped")
    s = outbox.stats()
    assert (s.done, s.pending, s.leased) == (1, 4, 0)
    assert Sink(backend_kind, sink_target).deliveries() == [("k0", 0)]
    assert [i.attempts for i in outbox.items("pending")] == [0, 0, 0, 0]
    outbox.close()


@pytest.mark.slow
@SIGNALS
def test_signal_returns_an_item_that_outlives_the_grace(
    backend_kind: str, targets: tuple[str, str], signum: signal.Signals
) -> None:
    """An item still running when the grace ends is interrupted and returned, uncounted."""
    target, sink_target = targets
    outbox = _fill(backend_kind, target, 60, 2)
    Sink(backend_kind, sink_target)
    proc = _serve(backend_kind, target, sink_target, grace=0.3)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    assert proc.stdout.readline().split()[0] == "started"
    proc.send_signal(signum)
    proc.communicate(timeout=10)
    assert proc.returncode == 0
    s = outbox.stats()
    assert (s.done, s.pending, s.leased) == (0, 2, 0)
    assert [i.attempts for i in outbox.items("pending")] == [0, 0]
    assert Sink(backend_kind, sink_target).deliveries() == []
    outbox.close()


@pytest.mark.slow
@SIGNALS
def test_second_signal_interrupts_the_item_in_flight(
    backend_kind: str, targets: tuple[str, str], signum: signal.Signals
) -> None:
    """With a long grace, a second signal interrupts the item at once; it is given back, its
    attempt uncounted, and the drainer exits 0 long before the grace or the item would end."""
    target, sink_target = targets
    outbox = _fill(backend_kind, target, 60, 2)
    Sink(backend_kind, sink_target)
    proc = _serve(backend_kind, target, sink_target, grace=60)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    assert proc.stdout.readline().split()[0] == "started"
    proc.send_signal(signum)
    time.sleep(0.5)  # two signals at once would be handled as one
    assert proc.poll() is None  # the first signal leaves the item its grace
    sent = time.monotonic()
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=20)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 0
    assert out.strip().endswith("stopped")
    s = outbox.stats()
    assert (s.done, s.pending, s.leased) == (0, 2, 0)
    assert [i.attempts for i in outbox.items("pending")] == [0, 0]
    assert Sink(backend_kind, sink_target).deliveries() == []
    outbox.close()
