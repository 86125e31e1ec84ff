"""No payload, argument, key, result or exception message ever reaches telemetry output."""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from resilio import (
    CircuitBreaker,
    CircuitOpen,
    Context,
    Fallback,
    Pipeline,
    Retry,
    Timeout,
    health,
)
from resilio.testing import FakeClock

from .conftest import Metrics, Tracing

CANARY = "canary-7f3a9c-secret"


class _LeakyError(Exception):
    """Like the Customer.io client's errors: the message holds the request payload."""


def _leaky(*args: Any, **kwargs: Any) -> None:
    raise _LeakyError(f"HTTP 500 for body {{'email': '{CANARY}'}}")


def _everything(tracing: Tracing, metrics: Metrics) -> str:
    parts: list[str] = []
    for span in tracing.spans():
        parts.append(span.name)
        parts.append(repr(dict(span.attributes or {})))
        parts.append(str(span.status.description))
        for event in span.events:
            parts.append(event.name)
            parts.append(repr(dict(event.attributes or {})))
    parts.append(repr(metrics.collect()))
    return "\n".join(parts)


def _context() -> Context:
    return Context(
        "svc.send",
        idempotency_key=CANARY,
        attributes={"token": CANARY},
        payload={"email": CANARY},
    )


class TestCanary:
    def test_sync_paths_never_leak(
        self, tracing: Tracing, metrics: Metrics, clock: FakeClock
    ) -> None:
        """Retries, breaker opening and rejection, fallback: nothing holds the canary."""
        breaker = CircuitBreaker(failure_threshold=1, break_duration=60)
        kw: dict[str, Any] = {
            "tracer_provider": tracing.provider,
            "meter_provider": metrics.provider,
            "trace_attempts": True,
            "clock": clock,
        }
        raw = Pipeline([breaker, Retry(attempts=2, backoff=0)], name="raw", **kw)
        safe = Pipeline([Fallback(value=None), Timeout(5, mode="thread")], name="safe", **kw)
        errors: list[BaseException] = []
        with capture_logs() as logs:
            for _ in range(4):
                try:
                    raw.execute(_leaky, CANARY, key=CANARY, context=_context())
                except CircuitOpen as exc:
                    errors.append(exc)
                except _LeakyError:
                    pass
            assert safe.execute(_leaky, CANARY, context=_context()) is None
        assert errors, "the breaker should have rejected a call"
        assert CANARY not in str(errors[0])
        assert CANARY not in _everything(tracing, metrics)
        assert CANARY not in repr(logs)
        assert CANARY not in json.dumps(health([raw, safe]).to_dict())
        error_type = str(dict(tracing.named("resilio raw")[0].attributes or {})["error.type"])
        assert error_type.endswith("_LeakyError")

    async def test_async_paths_never_leak(
        self, tracing: Tracing, metrics: Metrics, clock: FakeClock
    ) -> None:
        """Async retries and timeouts leave no trace of the canary."""
        p = Pipeline(
            [Retry(attempts=2, backoff=0), Timeout(1)],
            name="async",
            clock=clock,
            tracer_provider=tracing.provider,
            meter_provider=metrics.provider,
            trace_attempts=True,
        )

        async def slow(secret: str) -> None:
            await clock.sleep_async(5)

        async def leaky(secret: str) -> None:
            _leaky()

        with capture_logs() as logs:
            with pytest.raises(TimeoutError) as info:
                await p.execute_async(slow, CANARY, context=_context())
            assert clock.monotonic() == 1002.0  # two attempts, each cut at 1 s
            with pytest.raises(_LeakyError):
                await p.execute_async(leaky, CANARY, context=_context())
        assert CANARY not in str(info.value)
        assert CANARY not in _everything(tracing, metrics)
        assert CANARY not in repr(logs)
