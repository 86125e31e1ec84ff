"""Success-path cost of a shared (Redis) circuit breaker compared with a local one.

Usage: ``PYTHONPATH=. python benchmarks/shared_breaker.py [--redis URL] [--calls N]``.
Starts its own redis-server when no URL is given. A closed shared breaker counts each success
in a plain counter under its lock and sends the batch in one Redis round trip per
``sync_interval``, so the extra cost per call is a clock read plus that counter, and the round
trip divided by the calls made in the interval. Rows are measured in interleaved rounds and the
best round is kept, which keeps a busy machine's noise out of the ratios.
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
    start = time.perf_counter()
    for _ in range(calls):
        pipe.execute(work)
    return (time.perf_counter() - start) / calls * 1e9


def best_of(pipes: list[tuple[str, Pipeline]], calls: int, rounds: int) -> list[tuple[str, float]]:
    for _, pipe in pipes:
        per_call(pipe, 1000)  # warm up
    best = {name: float("inf") for name, _ in pipes}
    for _ in range(rounds):
        for name, pipe in pipes:
            best[name] = min(best[name], per_call(pipe, calls // rounds))
    return [(name, best[name]) for name, _ in pipes]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default=None)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    pipes: list[tuple[str, Pipeline]] = [
        ("local breaker", Pipeline([CircuitBreaker(name="bench")], name="local", telemetry=False))
    ]
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
                pipes.append((f"shared, sync_interval={interval:g}s", pipe))
        rows = best_of(pipes, args.calls, args.rounds)
    base = rows[0][1]
    per_round = args.calls // args.rounds
    print(f"\nClosed-state success path, best of {args.rounds} rounds of {per_round:,}")
    if rt:
        print(f"(one Redis round trip, load script: {rt / 1000:,.1f} us)\n")
    print(f"{'breaker':<32}{'ns/call':>10}{'extra ns':>10}{'ratio':>8}")
    print("-" * 60)
    for name, ns in rows:
        print(f"{name:<32}{ns:>10,.0f}{ns - base:>10,.0f}{ns / base:>8.2f}")


if __name__ == "__main__":
    main()
