"""Shared state across real processes on a real redis-server: breaker, limiter, idempotency."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from resilio._pipeline import Pipeline
from resilio.errors import CircuitOpen
from resilio.policies.circuit_breaker import CircuitBreaker
from resilio.stores.redis import RedisStore

pytestmark = [pytest.mark.redis, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.stores._procs", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _line(p: subprocess.Popen[str]) -> str:
    assert p.stdout is not None
    return p.stdout.readline().strip()


def test_shared_breaker_opens_for_everyone_and_newcomer_does_not_extend(redis_url: str) -> None:
    """A records 4 of 5 failures, B fails once: open for both; C, started while open, keeps it."""
    a = _spawn("breaker", redis_url, "svc", "ffffwf")
    assert [_line(a) for _ in range(4)] == ["fail"] * 4
    b = _spawn("breaker", redis_url, "svc", "ff")
    out_b, _ = b.communicate(timeout=30)
    assert out_b.split("\n")[:2] == ["fail", "open"]
    state_b = out_b.split("\n")[2].split()
    assert state_b[1] == "open"
    assert a.stdin is not None
    a.stdin.write("\n")
    a.stdin.flush()
    out_a, _ = a.communicate(timeout=30)
    assert out_a.split("\n")[0] == "open"
    time.sleep(0.2)
    c = _spawn("breaker", redis_url, "svc", "sf")
    out_c, _ = c.communicate(timeout=30)
    assert out_c.split("\n")[:2] == ["open", "open"]
    state_c = out_c.split("\n")[2].split()
    assert state_c[1:] == state_b[1:], "C neither closed the circuit nor extended the break"


def test_shared_limiter_aggregate_rate(redis_url: str) -> None:
    """Four processes drawing from one 50/s bucket (burst 5) get at most 50/s + burst together."""
    seconds = 2.0
    procs = [_spawn("limiter", redis_url, "agg", str(seconds)) for _ in range(4)]
    counts = [int(p.communicate(timeout=30)[0].strip()) for p in procs]
    total = sum(counts)
    # Processes start at slightly different times, so the window is a little longer than 2 s.
    assert total <= 50 * (seconds + 0.5) + 5
    assert total >= 50 * seconds * 0.8
    assert all(c > 0 for c in counts)


def test_idempotent_work_runs_once_across_processes(redis_url: str) -> None:
    """Six processes given the same key: the work runs once, the others replay its result."""
    procs = [_spawn("once", redis_url, "order-42") for _ in range(6)]
    outs = sorted(p.communicate(timeout=30)[0].strip() for p in procs)
    assert outs == ["ran"] + ["replayed"] * 5
    store = RedisStore(redis_url)
    assert store.client.get("work:order-42") == b"1"


class _SlowStore:
    """Wraps a store: every async call takes 200 ms more (a distant or overloaded Redis)."""

    def __init__(self, inner: RedisStore) -> None:
        self.inner = inner

    async def _slow(self, method: str, *a: Any, **kw: Any) -> Any:
        await asyncio.sleep(0.2)
        return await getattr(self.inner, method)(*a, **kw)

    async def load_async(self, name: str) -> Any:
        return await self._slow("load_async", name)

    async def record_async(self, name: str, **kw: Any) -> Any:
        return await self._slow("record_async", name, **kw)

    async def transition_async(self, name: str, **kw: Any) -> Any:
        return await self._slow("transition_async", name, **kw)


async def test_slow_async_store_does_not_block_the_loop(redis_url: str) -> None:
    """With 200 ms store latency, a 10 ms ticker on the same loop never lags more than 20 ms."""
    store = RedisStore(redis_url, socket_timeout=2.0)
    cb = CircuitBreaker(
        failure_threshold=3,
        break_duration=30,
        store=_SlowStore(store),
        sync_interval=0.05,
        name="slow",
    )
    pipe = Pipeline([cb], name="p", telemetry=False)
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        expected = loop.time() + 0.01
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = loop.time()
            lags.append(now - expected)
            expected = now + 0.01

    async def fail() -> None:
        raise ConnectionError("down")

    async def ok() -> None:
        return None

    tick = asyncio.ensure_future(ticker())
    outcomes = []
    for fn in (ok, fail, fail, fail, ok, ok):
        try:
            await pipe.execute_async(fn)
            outcomes.append("ok")
        except CircuitOpen:
            outcomes.append("open")
        except ConnectionError:
            outcomes.append("fail")
        await asyncio.sleep(0.06)
    done.set()
    await tick
    await store.aclose()
    assert outcomes[:4] == ["ok", "fail", "fail", "fail"]
    assert outcomes[4:] == ["open", "open"]
    assert store.load("slow").state == "open"
    assert max(lags) < 0.02
