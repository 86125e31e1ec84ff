"""Throughput of the Customer.io adapter against the bare ``customerio`` client.

Sends N track events (default 5,000) to the local simulator, which runs in its own process with
no faults, and prints events per second for:

* the bare client (``customerio.CustomerIO``, its defaults), sequentially and from 8 threads;
* ``ResilientCustomerIO`` with its default pipelines **except one setting**, the same two ways:
  the client-side Track rate limit (``customerio.track.rate``, 100 requests/s by default,
  Customer.io's conservative documented pace) is raised to 1,000,000/s. Every other policy
  (timeouts, retry, the shared breaker, the bulkhead) is the default. This measures what the
  pipelines cost, which the default limiter would hide: with it, any sender tops out at
  100 requests/s;
* ``ResilientCustomerIO`` with the true defaults, from 8 threads, over ``--capped-events``
  events (default 1,000): capped by the default rate limit at about 100 events/s after the
  initial burst of 100, which is the figure to expect from an unconfigured adapter;
* ``ResilientCustomerIO.batch`` with v2 batches of 500 events (``send --batch``'s default size),
  sequentially;
* the ``send`` command's engine over a JSONL file, with ``--concurrency 8``, and with ``--batch``
  (its defaults: 500 operations per request, ``--concurrency 4``).

Targets: adapter (rate limit raised) >= 0.9x the bare client at the same concurrency; batches
>= 10x the bare client (sequential), both with the rate limit raised: a batch request carries
500 events but counts as one request for the limiter, so the defaults allow 50,000 events/s.
The machine may be shared: ``--repeat N`` keeps each figure's best of N runs.
Run: ``PYTHONPATH=. .venv/bin/python benchmarks/customerio_throughput.py --repeat 3``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import customerio

from resilio_customerio import ResilientCustomerIO
from resilio_customerio._journal import Journal
from resilio_customerio._send import SendOptions, send_file
from resilio_customerio.cli import DEFAULT_BATCH
from resilio_customerio.ulid import new_ulid

RATE_RAISED = {
    "version": 1,
    "policies": {
        "customerio.track.rate": {
            "rate_limiter": {"rate": 1_000_000, "per": 1, "burst": 1_000_000, "max_wait": 5}
        }
    },
}
"""The default pipelines with one change: the shared Track rate limiter raised far above any pace
this machine can reach (it is still consulted on every call)."""

DEFAULT_RATE = 100
"""``customerio.track.rate``'s default requests per second (``pipelines.yaml``)."""


class SimulatorProcess:
    """The simulator in a child process, so it does not share this process's GIL."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "resilio_customerio.testing", "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        assert self.proc.stdout is not None
        text = ""
        while "Press Ctrl-C" not in text:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the simulator did not start")
            text += line
        self.port = int(re.search(r"port:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
        self.ca = re.search(r"ca:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        os.environ["REQUESTS_CA_BUNDLE"] = self.ca

    def kwargs(self) -> dict[str, Any]:
        return {
            "site_id": "site",
            "api_key": "key",
            "host": "127.0.0.1",
            "port": self.port,
            "url_prefix": "/api/v1",
        }

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def timed(n: int, threads: int, send: Callable[[int], Any]) -> float:
    start = time.perf_counter()
    if threads == 1:
        for i in range(n):
            send(i)
    else:
        with cf.ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(send, range(n)):
                pass
    return n / (time.perf_counter() - start)


BATCH_LABEL = f"adapter batch ({DEFAULT_BATCH} per request), 1 thread"
SEND_BATCH_LABEL = f"send command, --batch (N={DEFAULT_BATCH}, concurrency 4)"


CAPPED_LABEL = "adapter, true defaults (rate-limited), 8 threads"


def bench(n: int, capped_n: int) -> dict[str, float]:
    sim = SimulatorProcess()
    results: dict[str, float] = {}
    try:
        bare = customerio.CustomerIO(**sim.kwargs())
        adapter = ResilientCustomerIO(**sim.kwargs(), region="us", config=RATE_RAISED)

        def bare_track(i: int) -> None:
            bare.track(f"b{i % 50}", "bench", data={"i": i}, id=new_ulid())

        def adapter_track(i: int) -> None:
            adapter.track(f"a{i % 50}", "bench", data={"i": i})

        for name, fn in (("warm-up", bare_track), ("warm-up", adapter_track)):
            timed(200, 1, fn)
            del name
        for threads in (1, 8):
            results[f"bare client, {threads} thread(s)"] = timed(n, threads, bare_track)
            results[f"adapter, {threads} thread(s)"] = timed(n, threads, adapter_track)

        def batch(i: int) -> None:
            ops = [
                {
                    "type": "person",
                    "action": "event",
                    "identifiers": {"id": f"c{(i * 100 + k) % 50}"},
                    "name": "bench",
                    "id": new_ulid(),
                    "attributes": {"i": i * DEFAULT_BATCH + k},
                }
                for k in range(DEFAULT_BATCH)
            ]
            adapter.batch(ops)

        start = time.perf_counter()
        for i in range(n // DEFAULT_BATCH):
            batch(i)
        results[BATCH_LABEL] = n // DEFAULT_BATCH * DEFAULT_BATCH / (time.perf_counter() - start)

        with tempfile.TemporaryDirectory() as tmp:
            for label, options in (
                ("send command, --concurrency 8", SendOptions(concurrency=8)),
                (SEND_BATCH_LABEL, SendOptions(concurrency=4, batch=DEFAULT_BATCH)),
            ):
                path = Path(tmp) / f"{options.batch}.jsonl"
                with path.open("w") as out:
                    for i in range(n):
                        line = {"op": "track", "id": f"s{i % 50}", "name": "b", "data": {"i": i}}
                        out.write(json.dumps(line) + "\n")
                start = time.perf_counter()
                with Journal(Path(str(path) + ".journal")) as journal:
                    report = send_file(path, adapter, journal, options)
                assert report.counts == {"sent": n}, report.counts
                results[label] = n / (time.perf_counter() - start)
        # The true defaults: same adapter, no configuration; the rate limiter sets the pace.
        capped = ResilientCustomerIO(**sim.kwargs(), region="us")

        def capped_track(i: int) -> None:
            capped.track(f"d{i % 50}", "bench", data={"i": i})

        results[CAPPED_LABEL] = timed(capped_n, 8, capped_track)
        capped.close()
        bare.close()
        adapter.close()
    finally:
        sim.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3, help="keep the best of N runs (3)")
    parser.add_argument(
        "--capped-events",
        type=int,
        default=1000,
        help="events for the true-defaults run (about 1 s per 100 past the first 100)",
    )
    args = parser.parse_args()
    results: dict[str, float] = {}
    for _ in range(max(1, args.repeat)):
        for name, rate in bench(args.events, args.capped_events).items():
            results[name] = max(rate, results.get(name, 0.0))
    base1 = results["bare client, 1 thread(s)"]
    base8 = results["bare client, 8 thread(s)"]
    print(f"{args.events} track events to the simulator (no faults)")
    print(
        "Adapter figures use the default pipelines with ONE change: the client-side Track rate\n"
        f"limit (customerio.track.rate, {DEFAULT_RATE} requests/s by default) is raised to\n"
        "1,000,000/s, so they show the pipelines' own cost. The last line uses the true defaults."
    )
    print(f"{'':48}{'events/s':>10}  ratio")
    for name, rate in results.items():
        if name == CAPPED_LABEL:
            continue
        base = base8 if "8" in name and "batch" not in name else base1
        print(f"{name:48}{rate:>10.0f}  {rate / base:.2f}x")
    capped = results[CAPPED_LABEL]
    print(f"{CAPPED_LABEL:48}{capped:>10.0f}  {capped / base8:.2f}x")
    print(
        f"  ({args.capped_events} events; the default limiter allows a burst of {DEFAULT_RATE}, "
        f"then {DEFAULT_RATE} requests/s, Customer.io's\n"
        "  conservative documented pace. Raise customerio.track.rate (its current docs allow\n"
        "  1000/s) or send batches, 500 events per request, for bulk loads.)"
    )
    print(
        "targets (rate limit raised): "
        f"adapter/bare >= 0.9 -> {results['adapter, 1 thread(s)'] / base1:.2f} "
        f"(1 thread), {results['adapter, 8 thread(s)'] / base8:.2f} (8 threads); "
        f"batch/bare >= 10 -> {results[BATCH_LABEL] / base1:.1f} (adapter), "
        f"{results[SEND_BATCH_LABEL] / base1:.1f} (send --batch)"
    )


if __name__ == "__main__":
    main()
