"""Success-path cost of a shared (Redis) circuit breaker compared with a local one.

Usage: ``PYTHONPATH=. python benchmarks/shared_breaker.py [--redis URL] [--calls N]``.
Starts its own redis-server when no URL is given. A shared breaker pays one Redis round trip
per ``sync_interval`` on the closed-state success path, so the extra cost per call is that round
trip divided by the calls made in the interval.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _redis import redis_url

from resilio._pipeline import Pipeline
from resilio.policies.circuit_breaker import CircuitBreaker
from resilio.stores.redis import RedisStore


def work() -> int:
    return 1


def per_call(pipe: Pipeline, calls: int) -> float:
    for _ in range(1000):
        pipe.execute(work)
    start = time.perf_counter()
    for _ in range(calls):
        pipe.execute(work)
    return (time.perf_counter() - start) / calls * 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default=None)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    rows: list[tuple[str, float]] = []
    local = Pipeline([CircuitBreaker(name="bench")], name="local", telemetry=False)
    rows.append(("local breaker", per_call(local, args.calls)))
    rt = 0.0
    with redis_url(args.redis) as url:
        if url is not None:
            store = RedisStore(url, socket_timeout=1.0)
            start = time.perf_counter()
            for _ in range(1000):
                store.load("bench")
            rt = (time.perf_counter() - start) / 1000 * 1e9
            for interval in (1.0, 0.1, 0.01):
                breaker: Any = CircuitBreaker(name="bench", store=store, sync_interval=interval)
                pipe = Pipeline([breaker], name="shared", telemetry=False)
                rows.append((f"shared, sync_interval={interval:g}s", per_call(pipe, args.calls)))
    base = rows[0][1]
    print(f"\nClosed-state success path, {args.calls:,} calls per row")
    if rt:
        print(f"(one Redis round trip, load script: {rt / 1000:,.1f} us)\n")
    print(f"{'breaker':<32}{'ns/call':>10}{'extra ns':>10}{'ratio':>8}")
    print("-" * 60)
    for name, ns in rows:
        print(f"{name:<32}{ns:>10,.0f}{ns - base:>10,.0f}{ns / base:>8.2f}")


if __name__ == "__main__":
    main()
