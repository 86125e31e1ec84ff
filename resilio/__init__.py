"""resilio: composable resilience policies for sync and asyncio code.

Public names are imported lazily, on first use, so ``import resilio`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilio import backoff, events, testing
    from resilio._clock import Clock, SystemClock
    from resilio._context import Context
    from resilio._operation import Operation
    from resilio._pipeline import Pipeline
    from resilio.classify import Classification, ErrorKind
    from resilio.config import Registry, load_config
    from resilio.errors import (
        BulkheadFull,
        CircuitOpen,
        ConfigError,
        IdempotencyConflict,
        PluginError,
        RateLimited,
        Rejected,
        ResilioError,
        RetryBudgetExhausted,
        TimeoutExceeded,
    )
    from resilio.outbox import Drainer, Outbox, Queued
    from resilio.plugins.hookspecs import hookimpl, hookspec
    from resilio.policies._base import Policy
    from resilio.policies.bulkhead import Bulkhead
    from resilio.policies.circuit_breaker import CircuitBreaker, CircuitState
    from resilio.policies.fallback import Fallback
    from resilio.policies.idempotency import Idempotency
    from resilio.policies.rate_limiter import RateLimiter
    from resilio.policies.retry import Retry, RetryBudget
    from resilio.policies.timeout import Timeout
    from resilio.telemetry.health import HealthReport, health

__all__ = [
    "Bulkhead",
    "BulkheadFull",
    "CircuitBreaker",
    "CircuitOpen",
    "CircuitState",
    "Classification",
    "Clock",
    "ConfigError",
    "Context",
    "Drainer",
    "ErrorKind",
    "Fallback",
    "HealthReport",
    "Idempotency",
    "IdempotencyConflict",
    "Operation",
    "Outbox",
    "Pipeline",
    "PluginError",
    "Policy",
    "Queued",
    "RateLimited",
    "RateLimiter",
    "Registry",
    "Rejected",
    "ResilioError",
    "Retry",
    "RetryBudget",
    "RetryBudgetExhausted",
    "SystemClock",
    "Timeout",
    "TimeoutExceeded",
    "__version__",
    "backoff",
    "events",
    "health",
    "hookimpl",
    "hookspec",
    "load_config",
    "testing",
]

_LAZY: dict[str, str] = {
    "Bulkhead": "resilio.policies.bulkhead",
    "BulkheadFull": "resilio.errors",
    "CircuitBreaker": "resilio.policies.circuit_breaker",
    "CircuitOpen": "resilio.errors",
    "CircuitState": "resilio.policies.circuit_breaker",
    "Classification": "resilio.classify",
    "Clock": "resilio._clock",
    "ConfigError": "resilio.errors",
    "Context": "resilio._context",
    "Drainer": "resilio.outbox",
    "ErrorKind": "resilio.classify",
    "Fallback": "resilio.policies.fallback",
    "HealthReport": "resilio.telemetry.health",
    "Idempotency": "resilio.policies.idempotency",
    "IdempotencyConflict": "resilio.errors",
    "Operation": "resilio._operation",
    "Outbox": "resilio.outbox",
    "Pipeline": "resilio._pipeline",
    "PluginError": "resilio.errors",
    "Policy": "resilio.policies._base",
    "Queued": "resilio.outbox",
    "RateLimited": "resilio.errors",
    "RateLimiter": "resilio.policies.rate_limiter",
    "Registry": "resilio.config",
    "Rejected": "resilio.errors",
    "ResilioError": "resilio.errors",
    "Retry": "resilio.policies.retry",
    "RetryBudget": "resilio.policies.retry",
    "RetryBudgetExhausted": "resilio.errors",
    "SystemClock": "resilio._clock",
    "Timeout": "resilio.policies.timeout",
    "TimeoutExceeded": "resilio.errors",
    "health": "resilio.telemetry.health",
    "hookimpl": "resilio.plugins.hookspecs",
    "hookspec": "resilio.plugins.hookspecs",
    "load_config": "resilio.config",
}
_SUBMODULES = {"backoff", "config", "events", "outbox", "plugins", "stores", "telemetry", "testing"}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("resilio")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            return "0.0.0"
    if name in _SUBMODULES:
        return importlib.import_module(f"resilio.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'resilio' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
