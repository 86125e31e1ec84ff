"""Processes for the multi-process store tests.

``python -m tests.stores._procs breaker URL NAME ACTIONS``: run ACTIONS through a shared
breaker (``f`` failing call, ``s`` succeeding call, ``w`` wait for a line on stdin), printing
``fail``/``ok``/``open`` per call and ``state VERSION OPENED_AT UNTIL`` at the end.
``... limiter URL NAME SECONDS``: acquire permits (rate 50/s, burst 5) for SECONDS, print count.
``... once URL KEY``: run the work for KEY at most once across processes, print ran/replayed.

The ``policy-*`` roles go through the policies in a real pipeline instead of calling the store;
their TARGET is a ``redis://`` URL or a SQLite file path:

``... policy-once TARGET KEY GO SINK``: at wall time GO, call the pipeline
``[Idempotency(store)]`` with KEY as the context's idempotency key; the work appends this pid to
the file SINK and returns it. Print ``ran PID`` or ``replayed PID`` (the result it got).
``... policy-limiter TARGET NAME SECONDS GO``: from wall time GO, call the pipeline
``[RateLimiter(rate=50, burst=5, store)]`` for SECONDS; print how many calls it let through.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from resilio._context import Context
from resilio._pipeline import Pipeline
from resilio.errors import CircuitOpen, RateLimited
from resilio.policies.circuit_breaker import CircuitBreaker
from resilio.policies.idempotency import Idempotency
from resilio.policies.rate_limiter import RateLimiter
from resilio.stores import Completed, InFlight, Reserved
from resilio.stores.redis import RedisStore
from resilio.stores.sqlite import SQLiteStore


def breaker(url: str, name: str, actions: str) -> None:
    store = RedisStore(url, socket_timeout=2.0)
    cb = CircuitBreaker(
        failure_threshold=5, break_duration=30, store=store, sync_interval=0.05, name=name
    )
    pipe = Pipeline([cb], name="p", telemetry=False)

    def fail() -> None:
        raise ConnectionError("down")

    for action in actions:
        if action == "w":
            sys.stdin.readline()
            time.sleep(0.1)  # let sync_interval pass
            continue
        try:
            pipe.execute(fail if action == "f" else (lambda: None))
            print("ok", flush=True)
        except CircuitOpen:
            print("open", flush=True)
        except ConnectionError:
            print("fail", flush=True)
    s = store.load(name)
    print("state", s.state, s.version, s.opened_at, s.until, flush=True)


def limiter(url: str, name: str, seconds: float) -> None:
    store = RedisStore(url, socket_timeout=2.0)
    granted = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        g = store.acquire(name, rate=50, per=1, burst=5, max_wait=0)
        if g.granted:
            granted += 1
        else:
            time.sleep(min(g.wait, 0.005))
    print(granted, flush=True)


def once(url: str, key: str) -> None:
    store = RedisStore(url, socket_timeout=2.0)
    while True:
        r = store.reserve(key, lease=10)
        if isinstance(r, Reserved):
            store.client.incr("work:" + key)
            time.sleep(0.05)
            store.complete(key, token=r.token, result={"by": "me"}, ttl=60)
            print("ran", flush=True)
            return
        if isinstance(r, Completed):
            print("replayed", flush=True)
            return
        assert isinstance(r, InFlight)
        time.sleep(0.01)


def open_store(target: str) -> Any:
    """A Redis store for a ``redis://`` URL, else a SQLite store on that file."""
    if target.startswith("redis://"):
        return RedisStore(target, socket_timeout=2.0)
    return SQLiteStore(target)


def _wait_until(go: float) -> None:
    delay = go - time.time()
    if delay > 0:
        time.sleep(delay)


def policy_once(target: str, key: str, go: float, sink: str) -> None:
    store = open_store(target)
    pipe = Pipeline(
        [Idempotency(store=store, lease=10, poll_interval=0.01)], name="orders", telemetry=False
    )
    ran = False

    def work() -> int:
        nonlocal ran
        ran = True
        with open(sink, "a") as f:  # one short append per run: lines never interleave
            f.write(f"{os.getpid()}\n")
        time.sleep(0.2)  # long enough for every other process to arrive while it runs
        return os.getpid()

    _wait_until(go)
    result = pipe.execute(work, context=Context("orders.create", idempotency_key=key))
    print("ran" if ran else "replayed", result, flush=True)


def policy_limiter(target: str, name: str, seconds: float, go: float) -> None:
    store = open_store(target)
    limiter = RateLimiter(rate=50, per=1, burst=5, max_wait=0, store=store, name=name)
    pipe = Pipeline([limiter], name="p", telemetry=False)
    granted = 0
    _wait_until(go)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            pipe.execute(lambda: None)
        except RateLimited as exc:
            time.sleep(min(exc.retry_after or 0.005, 0.005))
        else:
            granted += 1
    print(granted, flush=True)


if __name__ == "__main__":
    kind, url, name = sys.argv[1:4]
    if kind == "policy-once":
        policy_once(url, name, float(sys.argv[4]), sys.argv[5])
    elif kind == "policy-limiter":
        policy_limiter(url, name, float(sys.argv[4]), float(sys.argv[5]))
    elif kind == "breaker":
        breaker(url, name, sys.argv[4])
    elif kind == "limiter":
        limiter(url, name, float(sys.argv[4]))
    else:
        once(url, name)
