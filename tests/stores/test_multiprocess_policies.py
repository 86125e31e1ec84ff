"""Idempotency and rate limiting across real processes, through the policies in real pipelines.

Each process builds ``Pipeline([Idempotency(store=...)])`` or ``Pipeline([RateLimiter(store=...)])``
on a shared store (a real redis-server, or one SQLite file) and calls it; the processes start
their calls at the same wall-clock moment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "redis"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A shared store: a SQLite file path, or the URL of a flushed real Redis."""
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
        return str(request.getfixturevalue("redis_url"))
    return str(tmp_path / "state.sqlite3")


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.stores._procs", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_idempotent_pipeline_runs_the_work_once_across_processes(
    target: str, tmp_path: Path
) -> None:
    """Six processes call one key at once: one runs the work, five get its result replayed."""
    sink = tmp_path / "runs.txt"
    sink.touch()
    go = time.time() + 1.5  # after every process has imported resilio
    procs = [_spawn("policy-once", target, "order-42", repr(go), str(sink)) for _ in range(6)]
    outs = [p.communicate(timeout=30)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    runners = sink.read_text().split()
    assert len(runners) == 1, f"the work ran {len(runners)} times"
    assert sorted(word for word, _ in outs) == ["ran"] + ["replayed"] * 5
    ran = next(result for word, result in outs if word == "ran")
    assert ran == runners[0]
    assert {result for _, result in outs} == {runners[0]}, "every replay is the first result"


def test_rate_limited_pipelines_share_one_bucket_across_processes(target: str) -> None:
    """Four processes' limiters (50/s, burst 5) on one store let 50/s + burst through in all."""
    seconds = 2.0
    go = time.time() + 1.5
    procs = [_spawn("policy-limiter", target, "agg", str(seconds), repr(go)) for _ in range(4)]
    counts = [int(p.communicate(timeout=30)[0].strip()) for p in procs]
    total = sum(counts)
    # One local bucket per process would let about 4 * (50 * 2 + 5) = 420 calls through.
    assert total <= 50 * (seconds + 0.25) + 5
    assert total >= 50 * seconds * 0.8
    assert all(c > 0 for c in counts)
