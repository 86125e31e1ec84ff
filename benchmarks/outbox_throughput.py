"""Outbox throughput: durable enqueues and drained items per second, on SQLite and Redis.

Usage: ``PYTHONPATH=. python benchmarks/outbox_throughput.py [--redis URL] [--n N]``.
Starts its own redis-server when no URL is given. Targets: >= 5,000 durable enqueues/s on
SQLite, >= 20,000 on Redis (with enqueue_many).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _redis import redis_url

from resilio._pipeline import Pipeline
from resilio.outbox import Drainer, Outbox


class _Op:
    idempotent = True
    pipeline = "replay"

    @staticmethod
    def handler(payload: Any) -> None:
        return None


class _Registry:
    def __init__(self) -> None:
        self.pipe = Pipeline([], name="replay", telemetry=False)

    def operation(self, name: str) -> _Op:
        return _Op()

    def pipeline(self, name: str) -> Pipeline:
        return self.pipe


PAYLOAD = {"customer_id": "c-123", "event": "signed_up", "data": {"plan": "pro", "seats": 3}}


def measure(outbox: Outbox, n: int, batch: int) -> dict[str, float]:
    start = time.perf_counter()
    for i in range(n):
        outbox.enqueue(operation="op", payload=PAYLOAD, idempotency_key=f"s{i}")
    single = n / (time.perf_counter() - start)
    many_n = n * 4
    start = time.perf_counter()
    for lo in range(0, many_n, batch):
        outbox.enqueue_many(
            {"operation": "op", "payload": PAYLOAD, "idempotency_key": f"m{i}"}
            for i in range(lo, min(lo + batch, many_n))
        )
    many = many_n / (time.perf_counter() - start)
    drainer = Drainer(outbox, _Registry(), batch=100)
    start = time.perf_counter()
    done = 0
    while done < n:
        done += drainer.drain_once(limit=min(1000, n - done)).delivered
    drain = done / (time.perf_counter() - start)
    return {"enqueue": single, "enqueue_many": many, "drain": drain}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default=None)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for sync in ("normal", "full"):
            box = Outbox.sqlite(os.path.join(tmp, f"bench-{sync}.db"), synchronous=sync)
            rows.append((f"sqlite (synchronous={sync})", measure(box, args.n, args.batch)))
            box.close()
    with redis_url(args.redis) as url:
        if url is not None:
            box = Outbox.redis(url, name="bench")
            rows.append(("redis streams", measure(box, args.n, args.batch)))
            box.close()
    print(f"\nOutbox throughput (items/s), n={args.n}, enqueue_many batch={args.batch}\n")
    print(f"{'backend':<28}{'enqueue':>12}{'enqueue_many':>15}{'drain':>12}")
    print("-" * 67)
    for name, r in rows:
        print(f"{name:<28}{r['enqueue']:>12,.0f}{r['enqueue_many']:>15,.0f}{r['drain']:>12,.0f}")


if __name__ == "__main__":
    main()
