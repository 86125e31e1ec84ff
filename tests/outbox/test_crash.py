"""Crash test: drainers SIGKILLed at random while a producer fills the outbox; nothing is lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.outbox._worker import Sink, open_outbox

ROOT = Path(__file__).resolve().parents[2]
N = 10_000
DRAINERS = 3
SALT = "order-7f3a"  # the producer's keys are f"{SALT}-{n}": no handler can rebuild them


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.outbox._worker", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def _run_crash(backend: str, target: str, sink_target: str) -> None:
    open_outbox(backend, target).close()  # create schema / group before the race
    sink = Sink(backend, sink_target)
    rng = random.Random(1234)
    producer = _spawn("produce", backend, target, str(N), SALT)
    drainers = [_spawn("drain", backend, target, sink_target) for _ in range(DRAINERS)]
    kills = 0
    deadline = time.monotonic() + 75
    outbox = open_outbox(backend, target)
    try:
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 0.9))
            victim = rng.randrange(DRAINERS)
            drainers[victim].send_signal(signal.SIGKILL)
            drainers[victim].wait()
            kills += 1
            drainers[victim] = _spawn("drain", backend, target, sink_target)
            if producer.poll() is not None and len({n for _, n in sink.deliveries()}) == N:
                break
        assert producer.wait(timeout=30) == 0
        while time.monotonic() < deadline:
            s = outbox.stats()
            if s.depth == 0:
                break
            time.sleep(0.2)
    finally:
        for p in drainers:
            p.kill()
            p.wait()
        producer.kill()
    stats = outbox.stats()
    outbox.close()
    deliveries = sink.deliveries()
    keys = Counter(k for k, _ in deliveries)
    assert kills >= 3
    assert (stats.depth, stats.dead) == (0, 0)
    assert {n for _, n in deliveries} == set(range(N)), "every item delivered, none lost"
    # The sink holds the idempotency key each replay's context carried: every delivery of
    # item n, first or duplicate, carries the key the producer enqueued n with.
    wrong = [(key, n) for key, n in deliveries if key != f"{SALT}-{n}"]
    assert wrong == [], f"{len(wrong)} deliveries carried another key, e.g. {wrong[:3]}"
    assert sum(keys.values()) >= N


@pytest.mark.slow
def test_crash_sqlite(tmp_path: Path) -> None:
    """On SQLite, 10,000 items survive randomly SIGKILLed drainers: all delivered, keys kept."""
    _run_crash("sqlite", str(tmp_path / "outbox.db"), str(tmp_path / "sink.db"))


@pytest.mark.slow
@pytest.mark.redis
def test_crash_redis(redis_url: str) -> None:
    """On Redis, 10,000 items survive randomly SIGKILLed drainers: all delivered, keys kept."""
    _run_crash("redis", redis_url, redis_url)
