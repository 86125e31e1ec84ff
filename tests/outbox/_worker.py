"""Processes for the outbox's multi-process tests: producers, drainers, and a recording sink.

Run as ``python -m tests.outbox._worker ROLE BACKEND TARGET SINK|N [SALT]``.

Handlers get the replay context's idempotency key from :class:`PassKey`, a policy in the
replay pipeline, so the sink records the key the drainer really passed, not one rebuilt from the
payload.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from typing import Any

import attrs

from resilio._context import Context
from resilio._pipeline import Pipeline
from resilio.classify import Classification, ErrorKind
from resilio.outbox import Drainer, Outbox
from resilio.policies._base import Args, Env, Kwargs, Layer, Policy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def spawn_worker(*args: str) -> subprocess.Popen[bytes]:
    """Start ``python -m tests.outbox._worker ARGS`` from the repository root (stdout piped)."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.outbox._worker", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
    )


class SinkDown(Exception):
    """The recording sink failed (on purpose)."""


class Sink:
    """Records every delivery as (idempotency_key, payload n, delivery number)."""

    def __init__(self, backend: str, target: str) -> None:
        self.backend = backend
        if backend == "sqlite":
            self.db = sqlite3.connect(target, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS deliveries (delivery_no INTEGER PRIMARY KEY "
                "AUTOINCREMENT, idempotency_key TEXT NOT NULL, n INTEGER NOT NULL)"
            )
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS runs (idempotency_key TEXT NOT NULL, "
                "pid INTEGER NOT NULL, start REAL NOT NULL, end REAL NOT NULL)"
            )
        else:
            import redis

            self.redis = redis.Redis.from_url(target)

    def record(self, key: str, n: int) -> None:
        if self.backend == "sqlite":
            self.db.execute("INSERT INTO deliveries (idempotency_key, n) VALUES (?, ?)", (key, n))
        else:
            no = self.redis.hincrby("sink:count", key, 1)
            self.redis.sadd("sink:deliveries", f"{key}|{n}|{no}")

    def record_run(self, key: str, pid: int, start: float, end: float) -> None:
        """Record one run of a handler: its item's key, the drainer's pid, when it ran."""
        if self.backend == "sqlite":
            self.db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)", (key, pid, start, end))
        else:
            self.redis.rpush("sink:runs", f"{key}|{pid}|{start!r}|{end!r}")

    def runs(self) -> list[tuple[str, int, float, float]]:
        """Every recorded run as (key, pid, start, end)."""
        if self.backend == "sqlite":
            return list(self.db.execute("SELECT idempotency_key, pid, start, end FROM runs"))
        out = []
        for raw in self.redis.lrange("sink:runs", 0, -1):
            key, pid, start, end = raw.decode().split("|")
            out.append((key, int(pid), float(start), float(end)))
        return out

    def deliveries(self) -> list[tuple[str, int]]:
        if self.backend == "sqlite":
            return list(self.db.execute("SELECT idempotency_key, n FROM deliveries"))
        out = []
        for raw in self.redis.smembers("sink:deliveries"):
            key, n, _ = raw.decode().split("|")
            out.append((key, int(n)))
        return out


def open_outbox(backend: str, target: str) -> Outbox:
    if backend == "sqlite":
        return Outbox.sqlite(target)
    return Outbox.redis(target, name="crash")


@attrs.define
class Op:
    handler: Any
    idempotent: bool = True
    pipeline: str = "replay"


class PassKey(Policy):
    """Calls the handler with ``key=`` the context's idempotency key (what it sends a service)."""

    kind = "pass_key"

    def __init__(self) -> None:
        self.name = self.kind
        self.options = None

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        return _PassKeyLayer(inner, env, self)


class _PassKeyLayer(Layer):
    def run(self, fn: Any, args: Args, kwargs: Kwargs, ctx: Context) -> Any:
        return self.inner.run(fn, args, {**kwargs, "key": ctx.idempotency_key}, ctx)

    async def run_async(self, fn: Any, args: Args, kwargs: Kwargs, ctx: Context) -> Any:
        return await self.inner.run_async(fn, args, {**kwargs, "key": ctx.idempotency_key}, ctx)


class Registry:
    def __init__(self, handler: Any) -> None:
        self.op = Op(handler)
        self.pipe = Pipeline([PassKey()], name="replay", telemetry=False, classifier=_classify)

    def operation(self, name: str) -> Op:
        if name != "deliver":
            raise KeyError(name)
        return self.op

    def pipeline(self, name: str) -> Pipeline:
        return self.pipe


def _classify(error: BaseException, ctx: Any) -> Classification | None:
    if isinstance(error, SinkDown):
        return Classification(kind=ErrorKind.TRANSIENT, reason="sink down")
    return None


def produce(backend: str, target: str, n: int, salt: str) -> None:
    """Enqueue items ``{"n": i}`` keyed ``f"{salt}-{i}"`` (a key no handler can rebuild)."""
    outbox = open_outbox(backend, target)
    i = 0
    while i < n:
        if i % 500 == 0:
            outbox.enqueue(operation="deliver", payload={"n": i}, idempotency_key=f"{salt}-{i}")
            i += 1
            continue
        chunk = range(i, min(i + 100, n))
        outbox.enqueue_many(
            {"operation": "deliver", "payload": {"n": j}, "idempotency_key": f"{salt}-{j}"}
            for j in chunk
        )
        i = chunk.stop
    outbox.close()


def enqueue_keys(backend: str, target: str, n: int) -> None:
    """Enqueue keys k0..k(n-1) in a random order, alone and in batches; print how many stored."""
    outbox = open_outbox(backend, target)
    keys = [f"k{i}" for i in range(n)]
    random.Random(os.getpid()).shuffle(keys)
    stored = 0
    for lo in range(0, n, 10):
        chunk = keys[lo : lo + 10]
        if lo % 20:
            receipts = outbox.enqueue_many(
                {"operation": "deliver", "payload": {"k": k}, "idempotency_key": k} for k in chunk
            )
        else:
            receipts = [
                outbox.enqueue(operation="deliver", payload={"k": k}, idempotency_key=k)
                for k in chunk
            ]
        stored += sum(not r.duplicate for r in receipts)
    outbox.close()
    print("stored", stored, flush=True)


def drain(backend: str, target: str, sink_target: str) -> None:
    """Drain with a sink that fails 30 % of the time (a third of those after recording)."""
    sink = Sink(backend, sink_target)
    rng = random.Random(os.getpid())

    def handler(payload: dict[str, Any], *, key: str) -> None:
        roll = rng.random()
        if roll < 0.2:
            raise SinkDown
        sink.record(key, payload["n"])
        if roll < 0.3:
            raise SinkDown  # recorded, yet reported as failed: an ambiguous outcome

    drainer = Drainer(
        open_outbox(backend, target),
        Registry(handler),
        lease=1.0,
        max_attempts=None,
        backoff=lambda a: 0.02,
        batch=10,
    )
    drainer.run(poll_interval=0.02)


def serve(backend: str, target: str, sink_target: str) -> None:
    """Drain slow items (``{"key", "sleep"}``) until SIGTERM, with the grace in $GRACE."""
    sink = Sink(backend, sink_target)

    def handler(payload: dict[str, Any], *, key: str) -> None:
        print("started", key, flush=True)
        time.sleep(float(payload["sleep"]))
        sink.record(key, 0)

    drainer = Drainer(open_outbox(backend, target), Registry(handler), lease=30, batch=5)
    drainer.install_signal_handlers(grace=float(os.environ.get("GRACE", "5")))
    print("ready", flush=True)
    drainer.run(poll_interval=0.02)
    print("stopped", flush=True)


def work(backend: str, target: str, sink_target: str) -> None:
    """Drain slow-ish items, recording each run's (key, pid, start, end); a third fail after."""
    sink = Sink(backend, sink_target)
    rng = random.Random(os.getpid())
    pid = os.getpid()

    def handler(payload: dict[str, Any], *, key: str) -> None:
        start = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the host
        time.sleep(float(payload["sleep"]))
        sink.record_run(key, pid, start, time.monotonic())
        if rng.random() < 0.3:
            raise SinkDown  # run again, maybe by another drainer, once this result is recorded

    drainer = Drainer(
        open_outbox(backend, target),
        Registry(handler),
        lease=10.0,  # far longer than a run: no lease expires while its item runs
        max_attempts=None,
        backoff=lambda a: 0.0,
        batch=2,
    )
    print("ready", flush=True)
    drainer.run(poll_interval=0.01)


if __name__ == "__main__":
    role, backend, target, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    if role == "produce":
        produce(backend, target, int(extra), sys.argv[5])
    elif role == "work":
        work(backend, target, extra)
    elif role == "enqueue":
        enqueue_keys(backend, target, int(extra))
    elif role == "serve":
        serve(backend, target, extra)
    else:
        drain(backend, target, extra)
