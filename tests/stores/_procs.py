"""Processes for the multi-process store tests.

``python -m tests.stores._procs breaker URL NAME ACTIONS``: run ACTIONS through a shared
breaker (``f`` failing call, ``s`` succeeding call, ``w`` wait for a line on stdin), printing
``fail``/``ok``/``open`` per call and ``state VERSION OPENED_AT UNTIL`` at the end.
``... limiter URL NAME SECONDS``: acquire permits (rate 50/s, burst 5) for SECONDS, print count.
``... once URL KEY``: run the work for KEY at most once across processes, print ran/replayed.
"""

from __future__ import annotations

import sys
import time

from resilio._pipeline import Pipeline
from resilio.errors import CircuitOpen
from resilio.policies.circuit_breaker import CircuitBreaker
from resilio.stores import Completed, InFlight, Reserved
from resilio.stores.redis import RedisStore


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


if __name__ == "__main__":
    kind, url, name = sys.argv[1:4]
    if kind == "breaker":
        breaker(url, name, sys.argv[4])
    elif kind == "limiter":
        limiter(url, name, float(sys.argv[4]))
    else:
        once(url, name)
