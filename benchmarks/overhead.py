"""Success-path overhead of resilio's policies and pipelines, next to other libraries.

Every row decorates (or wraps) a function that returns at once, then measures the time per
successful call, best of several runs, with nothing subtracted. Rows marked with a target compare
resilio against another library's figure from the same run and print PASS or FAIL.

    python benchmarks/overhead.py            # full run (about a minute)
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
import inspect
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import resilio

Row = tuple[str, float | None, str]
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


def optional(label: str, build: Callable[[], Any]) -> tuple[Any, str]:
    """Build a benchmarked object, or return ``None`` and the reason it is unavailable."""
    try:
        return build(), ""
    except Exception as exc:
        return None, f"{label} unavailable: {type(exc).__name__}: {exc}"


def rate_limiter() -> Any:
    cls = resilio.RateLimiter
    params = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {}
    for name in ("rate", "burst", "capacity", "limit"):
        if name in params:
            kwargs[name] = 10**9
    if "per" in params:
        kwargs["per"] = 1.0
    return cls(**kwargs)


def measure(bench: Bench, number: int, repeat: int) -> float:
    """Return the best time per call of a benchmarked callable, in microseconds."""
    fn, is_async = bench
    return bench_async(fn, number, repeat) if is_async else bench_sync(fn(), number, repeat)


def resilio_rows(
    number: int, repeat: int, benches: dict[str, Bench]
) -> tuple[list[Row], dict[str, float]]:
    rows: list[Row] = []
    figures: dict[str, float] = {}

    def pipe(*policies: Any, telemetry: bool = False) -> resilio.Pipeline:
        return resilio.Pipeline(list(policies), telemetry=telemetry, name="bench")

    def add(key: str, label: str, fn: Callable[[], Any], is_async: bool = False) -> None:
        benches[key] = (lambda: fn, is_async)
        value = measure(benches[key], number, repeat)
        figures[key] = value
        rows.append((label, value, ""))

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

    breaker, why = optional("CircuitBreaker", lambda: resilio.CircuitBreaker())
    bulkhead, why2 = optional("Bulkhead", lambda: resilio.Bulkhead(max_concurrent=100))
    limiter, why3 = optional("RateLimiter", rate_limiter)
    for policy, key, label, reason in (
        (breaker, "breaker", "resilio: CircuitBreaker", why),
        (bulkhead, "bulkhead", "resilio: Bulkhead", why2),
        (limiter, "rate_limiter", "resilio: RateLimiter (huge rate)", why3),
    ):
        if policy is None:
            rows.append((label, None, reason))
        else:
            add(key, label, pipe(policy)(ok))
    if breaker is not None:
        defaults = pipe(resilio.CircuitBreaker(), telemetry=True)
        add("breaker_telemetry", "resilio: CircuitBreaker (default telemetry)", defaults(ok))
    rows.append(("resilio: Idempotency", None, "not a pass-through: stores every result"))

    five = [
        resilio.Fallback(value=None),
        resilio.Timeout(10),
        resilio.Retry(attempts=3),
    ]
    if breaker is not None and bulkhead is not None:
        five += [resilio.CircuitBreaker(), resilio.Bulkhead(max_concurrent=100)]
        label = "Fallback>Timeout>Retry>CircuitBreaker>Bulkhead"
    else:
        label = "Fallback>Timeout>Retry (breaker/bulkhead unavailable)"
    add("five", f"resilio: {label}", pipe(*five)(ok))
    add("five_async", f"resilio: {label} (async)", pipe(*five)(aok), True)
    default = pipe(*five, telemetry=True)  # telemetry on, no SDK configured
    add("five_telemetry", f"resilio: {label} (default telemetry)", default(ok))
    add("five_async_telemetry", f"resilio: {label} (async, default telemetry)", default(aok), True)
    return rows, figures


def other_rows(
    number: int, repeat: int, benches: dict[str, Bench]
) -> tuple[list[Row], dict[str, float]]:
    rows: list[Row] = []
    figures: dict[str, float] = {}

    def add(key: str, label: str, build: Callable[[], Any], is_async: bool = False) -> None:
        try:
            value = measure((build, is_async), number, repeat)
        except Exception as exc:
            rows.append((label, None, f"unavailable: {type(exc).__name__}: {exc}"))
            return
        benches[key] = (build, is_async)
        figures[key] = value
        rows.append((label, value, ""))

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
    return rows, figures


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
    rows, figures = resilio_rows(number, repeat, benches)
    more, other = other_rows(number, repeat, benches)
    figures.update(other)
    rows += more

    print(f"Python {platform.python_version()} on {platform.machine()}, {number} calls x {repeat}")
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'us/call':>8}")
    for label, value, note in rows:
        shown = f"{value:8.3f}" if value is not None else "       -"
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
