"""Success-path overhead of resilio's policies and pipelines, next to other libraries.

Every row decorates (or wraps) a function that returns at once, then measures the time per
successful call, best of several runs, with nothing subtracted. Rows marked with a target compare
resilio against another library's figure from the same run and print PASS or FAIL.

    python benchmarks/overhead.py            # full run (a few minutes)
    python benchmarks/overhead.py --quick    # fewer, shorter runs
    python benchmarks/overhead.py --check    # exit 1 if a target fails

Resilio rows are measured twice where it matters: with telemetry off (``telemetry=False``; the
other libraries trace nothing) and with the defaults users get (telemetry on, no OpenTelemetry SDK
configured). Each target is then re-measured as an interleaved pair, resilio's run and the other
library's run alternating, so that load from other processes weighs on both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import resilio

Row = tuple[str, str | None, str]
"""A table row: its label, the key of its benchmark (``None`` if not measured), a note."""
Bench = tuple[Callable[[], Any], bool]
"""What a figure measures: a callable (or, for async, a builder of one) and whether it is async."""


def ok() -> int:
    return 1


async def aok() -> int:
    return 1


def bench_sync(fn: Callable[[], Any], number: int, repeat: int) -> float:
    """Return the best time per call of ``fn()`` in microseconds."""
    fn()
    times = timeit.repeat(fn, number=number, repeat=repeat)
    return min(times) / number * 1e6


def bench_async(build: Callable[[], Any], number: int, repeat: int) -> float:
    """Return the best time per ``await fn()`` in microseconds, awaited in one loop.

    ``build()`` makes ``fn`` inside the running loop (some libraries need one).
    """
    fn: Any = None

    async def make() -> None:
        nonlocal fn
        fn = build()

    async def many() -> None:
        for _ in range(number):
            await fn()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(make())
        loop.run_until_complete(many())
        best = float("inf")
        for _ in range(repeat):
            start = timeit.default_timer()
            loop.run_until_complete(many())
            best = min(best, timeit.default_timer() - start)
    finally:
        loop.close()
    return best / number * 1e6


def measure(bench: Bench, number: int, repeat: int) -> float:
    """Return the best time per call of a benchmarked callable, in microseconds."""
    fn, is_async = bench
    return bench_async(fn, number, repeat) if is_async else bench_sync(fn(), number, repeat)


def resilio_rows(benches: dict[str, Bench]) -> list[Row]:
    """Build resilio's benchmarks into ``benches``; return their table rows."""
    rows: list[Row] = []

    def pipe(*policies: Any, telemetry: bool = False) -> resilio.Pipeline:
        return resilio.Pipeline(list(policies), telemetry=telemetry, name="bench")

    def add(key: str, label: str, fn: Callable[[], Any], is_async: bool = False) -> None:
        benches[key] = (lambda: fn, is_async)
        rows.append((label, key, ""))

    add("bare", "bare call", ok)
    add("bare_async", "bare call (async)", aok, True)
    add("empty", "resilio: empty pipeline (decorator)", pipe()(ok))
    empty = pipe()
    add("empty_execute", "resilio: empty pipeline (execute)", lambda: empty.execute(ok))
    add("retry", "resilio: Retry", pipe(resilio.Retry(attempts=3))(ok))
    add(
        "retry_telemetry",
        "resilio: Retry (default telemetry)",
        pipe(resilio.Retry(attempts=3), telemetry=True)(ok),
    )
    add("timeout", "resilio: Timeout (cooperative)", pipe(resilio.Timeout(10))(ok))
    add("fallback", "resilio: Fallback", pipe(resilio.Fallback(value=None))(ok))

    add("breaker", "resilio: CircuitBreaker", pipe(resilio.CircuitBreaker())(ok))
    add(
        "breaker_telemetry",
        "resilio: CircuitBreaker (default telemetry)",
        pipe(resilio.CircuitBreaker(), telemetry=True)(ok),
    )
    add("bulkhead", "resilio: Bulkhead", pipe(resilio.Bulkhead(max_concurrent=100))(ok))
    limiter = resilio.RateLimiter(rate=10**9, per=1.0)
    add("rate_limiter", "resilio: RateLimiter (huge rate)", pipe(limiter)(ok))
    rows.append(("resilio: Idempotency", None, "not a pass-through: stores every result"))

    def five() -> list[Any]:
        return [
            resilio.Fallback(value=None),
            resilio.Timeout(10),
            resilio.Retry(attempts=3),
            resilio.CircuitBreaker(),
            resilio.Bulkhead(max_concurrent=100),
        ]

    label = "Fallback>Timeout>Retry>CircuitBreaker>Bulkhead"
    add("five", f"resilio: {label}", pipe(*five())(ok))
    add("five_async", f"resilio: {label} (async)", pipe(*five())(aok), True)
    default = pipe(*five(), telemetry=True)  # telemetry on, no SDK configured
    add("five_telemetry", f"resilio: {label} (default telemetry)", default(ok))
    add("five_async_telemetry", f"resilio: {label} (async, default telemetry)", default(aok), True)
    return rows


def other_rows(benches: dict[str, Bench]) -> list[Row]:
    """Build the other libraries' benchmarks into ``benches``; return their table rows."""
    rows: list[Row] = []

    def add(key: str, label: str, build: Callable[[], Any], is_async: bool = False) -> None:
        try:
            measure((build, is_async), 10, 1)  # builds and runs: is the library usable here?
        except Exception as exc:
            rows.append((label, None, f"unavailable: {type(exc).__name__}: {exc}"))
            return
        benches[key] = (build, is_async)
        rows.append((label, key, ""))

    def tenacity_retry() -> Any:
        import tenacity

        return tenacity.retry(stop=tenacity.stop_after_attempt(3))(ok)

    def stamina_retry() -> Any:
        import stamina

        return stamina.retry(on=Exception, attempts=3)(ok)

    def backoff_retry() -> Any:
        import backoff

        return backoff.on_exception(backoff.expo, Exception, max_tries=3)(ok)

    def pybreaker_breaker() -> Any:
        import pybreaker

        return pybreaker.CircuitBreaker()(ok)

    def circuitbreaker_breaker() -> Any:
        import circuitbreaker

        return circuitbreaker.circuit(ok)

    def hyx_stack() -> Any:
        from hyx.bulkhead import bulkhead
        from hyx.circuitbreaker import consecutive_breaker
        from hyx.retry import retry
        from hyx.timeout import timeout

        fn: Any = aok
        fn = bulkhead(max_concurrency=100, max_capacity=100)(fn)
        fn = consecutive_breaker()(fn)
        fn = retry(attempts=3)(fn)
        return timeout(10)(fn)

    add("tenacity", "tenacity: @retry(stop_after_attempt(3))", tenacity_retry)
    add("stamina", "stamina: @retry(on=Exception, attempts=3)", stamina_retry)
    add("backoff", "backoff: @on_exception(expo, max_tries=3)", backoff_retry)
    add("pybreaker", "pybreaker: CircuitBreaker()", pybreaker_breaker)
    add("circuitbreaker", "circuitbreaker: @circuit", circuitbreaker_breaker)
    add("hyx", "hyx: timeout>retry>breaker>bulkhead (async)", hyx_stack, True)
    return rows


TARGETS = [
    # (label, resilio figure, other figure, allowed ratio resilio/other)
    ("five-policy sync pipeline <= tenacity retry / 6", "five", "tenacity", 1 / 6),
    ("five-policy async pipeline <= hyx four-policy stack / 5", "five_async", "hyx", 1 / 5),
    ("Retry alone <= backoff decorator", "retry", "backoff", 1.0),
    ("CircuitBreaker alone <= circuitbreaker decorator", "breaker", "circuitbreaker", 1.0),
    ("  the same, default telemetry: sync pipeline", "five_telemetry", "tenacity", 1 / 6),
    ("  the same, default telemetry: async pipeline", "five_async_telemetry", "hyx", 1 / 5),
    ("  the same, default telemetry: Retry alone", "retry_telemetry", "backoff", 1.0),
    ("  the same, default telemetry: CircuitBreaker", "breaker_telemetry", "circuitbreaker", 1.0),
]


def paired(mine: Bench, theirs: Bench, number: int, repeat: int) -> tuple[float, float]:
    """Measure two benchmarks in alternation; return the best time per call of each."""
    best_mine = best_theirs = float("inf")
    for _ in range(repeat):
        best_mine = min(best_mine, measure(mine, number, 1))
        best_theirs = min(best_theirs, measure(theirs, number, 1))
    return best_mine, best_theirs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target fails")
    args = parser.parse_args(argv)
    number, repeat = (20_000, 3) if args.quick else (200_000, 7)

    benches: dict[str, Bench] = {}
    rows = resilio_rows(benches) + other_rows(benches)
    # Round robin: every round measures every case once, so load from other processes spreads
    # over all cases instead of landing on whichever ran at the wrong moment.
    figures = dict.fromkeys(benches, float("inf"))
    for _ in range(repeat):
        for key, bench in benches.items():
            figures[key] = min(figures[key], measure(bench, number, 1))

    print(f"Python {platform.python_version()} on {platform.machine()}, {number} calls x {repeat}")
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'us/call':>8}")
    for label, case, note in rows:
        shown = "       -" if case is None else f"{figures[case]:8.3f}"
        print(f"{label:<{width}}  {shown}" + (f"  ({note})" if note else ""))

    print("\nTargets (each pair re-measured in alternation):")
    failed = False
    for label, mine, theirs, ratio in TARGETS:
        if mine not in benches or theirs not in benches:
            print(f"SKIP  {label}: not measured")
            continue
        a, b = paired(benches[mine], benches[theirs], number, repeat)
        verdict = "PASS" if a <= b * ratio else "FAIL"
        failed |= verdict == "FAIL"
        print(
            f"{verdict}  {label}: {a:.3f} us vs {b:.3f} us (ratio {a / b:.3f}, allowed {ratio:.3f})"
        )
    from benchmarks.telemetry_overhead import overhead_section

    failed |= overhead_section(args.quick)
    return 1 if (failed and args.check) else 0


if __name__ == "__main__":
    raise SystemExit(main())
