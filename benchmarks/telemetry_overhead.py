"""Cost of telemetry on the success path of a five-policy pipeline.

Each configuration runs in its own process (global OpenTelemetry providers can be set only once):

* ``off``         -- ``Pipeline(telemetry=False)``: the baseline.
* ``no-sdk``      -- telemetry on (tracing, metrics, logs), ``opentelemetry.sdk`` made
                     unimportable: what a user without an SDK pays. (The same as having the SDK
                     installed but no provider set: resilio only reads the API's global slots.)
* ``no-sdk+h``    -- as ``no-sdk`` once health is in use (latency ring and last-success time).
* ``sdk-off``     -- SDK installed, global ``TracerProvider(sampler=ALWAYS_OFF)``, no meter
                     provider.
* ``sdk-off+m``   -- as ``sdk-off`` plus a global ``MeterProvider`` whose periodic reader exports
                     to a no-op exporter every 0.5 s (its collection thread records the queued
                     durations, so that cost is in the wall time measured here): one histogram
                     measurement per call, the default.
* ``sdk-off+m-d`` -- as ``sdk-off+m`` with ``telemetry.configure(durations=False)``: counters only.
* ``sdk-off+m+a`` -- as ``sdk-off+m`` with ``telemetry.configure(attempt_durations=True)``: two
                     histogram measurements per call.

Targets: ``no-sdk`` <= 1.2 x ``off``; ``sdk-off`` <= 2 x ``off``.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/telemetry_overhead.py``; ``benchmarks/overhead.py``
prints the same table through :func:`overhead_section`.
"""

from __future__ import annotations

import argparse
import importlib.abc
import json
import os
import subprocess
import sys
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODES = ("off", "no-sdk", "no-sdk+h", "sdk-off", "sdk-off+m", "sdk-off+m-d", "sdk-off+m+a")
TARGETS = {"no-sdk": 1.2, "sdk-off": 2.0}


class _BlockSdk(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name == "opentelemetry.sdk" or name.startswith("opentelemetry.sdk."):
            raise ImportError(f"{name} is blocked for this measurement")
        return


def _policies() -> list[Any]:
    """Five policies from whatever is importable; pass-through layers stand in for the rest."""
    import resilio
    from resilio.policies._base import Env, Layer, Policy

    class PassThrough(Policy):
        kind = "pass"

        def __init__(self, name: str) -> None:
            self.name = name
            self.options = None

        def make_layer(self, inner: Layer, env: Env) -> Layer:
            return Layer(inner, env, self)

    def make(name: str, factory: Any) -> Any:
        try:
            return factory()
        except (ImportError, AttributeError):
            return PassThrough(name)

    return [
        make("fallback", lambda: resilio.Fallback(value=None)),
        make("timeout", lambda: resilio.Timeout(10)),
        make("retry", lambda: resilio.Retry(attempts=3)),
        make("circuit_breaker", lambda: resilio.CircuitBreaker()),
        make("bulkhead", lambda: resilio.Bulkhead(max_concurrent=100)),
    ]


def _child(mode: str, number: int, repeat: int) -> None:
    from resilio import Pipeline, telemetry

    if mode.startswith("no-sdk"):
        sys.meta_path.insert(0, _BlockSdk())
    if mode == "no-sdk+h":
        telemetry.configure(health=True)
    if mode == "sdk-off+m-d":
        telemetry.configure(durations=False)
    if mode == "sdk-off+m+a":
        telemetry.configure(attempt_durations=True)
    if mode.startswith("sdk-off"):
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

        trace.set_tracer_provider(TracerProvider(sampler=ALWAYS_OFF))
        if mode.startswith("sdk-off+m"):
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import (
                MetricExporter,
                MetricExportResult,
                PeriodicExportingMetricReader,
            )

            class NoopExporter(MetricExporter):
                def export(self, metrics_data: Any, timeout_millis: float = 0, **kw: Any) -> Any:
                    return MetricExportResult.SUCCESS

                def force_flush(self, timeout_millis: float = 0) -> bool:
                    return True

                def shutdown(self, timeout_millis: float = 0, **kw: Any) -> None:
                    return None

            reader = PeriodicExportingMetricReader(NoopExporter(), export_interval_millis=500)
            metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    policies = _policies()
    pipeline = Pipeline(policies, name="bench", telemetry=(mode != "off"))

    def call() -> int:
        return 1

    execute = pipeline.execute
    for _ in range(20_000):
        execute(call)
    best = min(timeit.repeat(lambda: execute(call), number=number, repeat=repeat))
    kinds = [p.kind for p in policies]
    print(json.dumps({"mode": mode, "us": best / number * 1e6, "policies": kinds}))


def measure(number: int, repeat: int, rounds: int) -> tuple[dict[str, float], list[str]]:
    """Time every configuration, each in its own process; return best µs per call and policies.

    Rounds interleave the configurations so a busy machine slows them all alike; best wins.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results: dict[str, float] = {}
    policies: list[str] = []
    for _ in range(rounds):
        for mode in MODES:
            command = [sys.executable, __file__, "--child", mode]
            command += ["--number", str(number), "--repeat", str(repeat)]
            out = subprocess.run(
                command, capture_output=True, text=True, check=True, env=env, cwd=ROOT
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            results[mode] = min(results.get(mode, float("inf")), row["us"])
            policies = row["policies"]
    return results, policies


def table(results: dict[str, float], policies: list[str]) -> tuple[list[str], bool]:
    """Return the printed table of ``results`` and whether a target was missed."""
    base = results["off"]
    lines = [
        f"telemetry cost, five-policy pipeline ({', '.join(policies)}):",
        f"{'configuration':<12} {'us/call':>9} {'ratio':>7} {'target':>8}  verdict",
    ]
    failed = False
    for mode in MODES:
        ratio = results[mode] / base
        target = TARGETS.get(mode)
        verdict = "" if target is None else ("PASS" if ratio <= target else "FAIL")
        failed |= verdict == "FAIL"
        shown = f"<= {target:g}x" if target else "-"
        lines.append(f"{mode:<12} {results[mode]:>9.3f} {ratio:>6.2f}x {shown:>8}  {verdict}")
    return lines, failed


def overhead_section(quick: bool = False) -> bool:
    """Print the telemetry cost table (used by ``benchmarks/overhead.py``).

    Args:
        quick: Fewer, shorter runs.

    Returns:
        Whether a target was missed.
    """
    number, repeat, rounds = (20_000, 5, 2) if quick else (50_000, 7, 3)
    lines, failed = table(*measure(number, repeat, rounds))
    print()
    print("\n".join(lines))
    return failed


def main() -> None:
    """Run the measurement, or one configuration with ``--child``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=MODES)
    parser.add_argument("--number", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.number, args.repeat)
        return
    lines, _ = table(*measure(args.number, args.repeat, args.rounds))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
