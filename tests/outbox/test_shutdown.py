"""Graceful shutdown of a real drainer process on SIGTERM: nothing in flight is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from resilio.outbox import Outbox
from tests.outbox._worker import Sink

ROOT = Path(__file__).resolve().parents[2]


def _serve(outbox_path: Path, sink_path: Path, grace: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRACE": str(grace)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.outbox._worker",
            "serve",
            "sqlite",
            str(outbox_path),
            str(sink_path),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _fill(path: Path, sleep: float, n: int) -> Outbox:
    outbox = Outbox.sqlite(path)
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
def test_sigterm_finishes_the_item_in_flight(tmp_path: Path) -> None:
    """On SIGTERM the drainer finishes its item within the grace, gives the rest back, exits 0."""
    outbox = _fill(tmp_path / "o.db", 0.5, 5)
    Sink("sqlite", str(tmp_path / "s.db"))
    proc = _serve(tmp_path / "o.db", tmp_path / "s.db", grace=5)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    assert proc.stdout.readline().split()[0] == "started"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert out.strip().endswith("stopped")
    s = outbox.stats()
    assert (s.done, s.pending, s.leased) == (1, 4, 0)
    assert Sink("sqlite", str(tmp_path / "s.db")).deliveries() == [("k0", 0)]
    assert [i.attempts for i in outbox.items("pending")] == [0, 0, 0, 0]


@pytest.mark.slow
def test_sigterm_returns_an_item_that_outlives_the_grace(tmp_path: Path) -> None:
    """An item still running when the grace ends is interrupted and returned, uncounted."""
    outbox = _fill(tmp_path / "o.db", 60, 2)
    Sink("sqlite", str(tmp_path / "s.db"))
    proc = _serve(tmp_path / "o.db", tmp_path / "s.db", grace=0.3)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    assert proc.stdout.readline().split()[0] == "started"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == 0
    s = outbox.stats()
    assert (s.done, s.pending, s.leased) == (0, 2, 0)
    assert [i.attempts for i in outbox.items("pending")] == [0, 0]
