"""resilio_customerio: Customer.io's official client, made resilient.

``ResilientCustomerIO`` (and ``AsyncResilientCustomerIO``) offer every method of
``customerio.CustomerIO`` and ``customerio.APIClient`` with the same names and arguments, each
call run through a resilio pipeline: classified errors, bounded retries that keep event ids,
a shared circuit breaker, client-side rate limits, payload hygiene and an optional outbox.

Public names are imported lazily, so ``import resilio_customerio.testing`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilio_customerio.aio import AsyncResilientCustomerIO
    from resilio_customerio.batching import (
        BatchBuffer,
        BatchItemResult,
        BatchResult,
        install_shutdown_handlers,
    )
    from resilio_customerio.client import ResilientCustomerIO
    from resilio_customerio.errors import (
        AuthenticationFailed,
        ConfigurationProblem,
        CustomerIOError,
        InvalidRequest,
        OutcomeUnknown,
        PayloadTooLarge,
        ServiceUnavailable,
        Throttled,
    )
    from resilio_customerio.ulid import new_ulid

__all__ = [
    "AsyncResilientCustomerIO",
    "AuthenticationFailed",
    "BatchBuffer",
    "BatchItemResult",
    "BatchResult",
    "ConfigurationProblem",
    "CustomerIOError",
    "InvalidRequest",
    "OutcomeUnknown",
    "PayloadTooLarge",
    "ResilientCustomerIO",
    "ServiceUnavailable",
    "Throttled",
    "install_shutdown_handlers",
    "new_ulid",
]

_LAZY: dict[str, str] = {
    "AsyncResilientCustomerIO": "resilio_customerio.aio",
    "AuthenticationFailed": "resilio_customerio.errors",
    "BatchBuffer": "resilio_customerio.batching",
    "BatchItemResult": "resilio_customerio.batching",
    "BatchResult": "resilio_customerio.batching",
    "ConfigurationProblem": "resilio_customerio.errors",
    "CustomerIOError": "resilio_customerio.errors",
    "InvalidRequest": "resilio_customerio.errors",
    "OutcomeUnknown": "resilio_customerio.errors",
    "PayloadTooLarge": "resilio_customerio.errors",
    "ResilientCustomerIO": "resilio_customerio.client",
    "ServiceUnavailable": "resilio_customerio.errors",
    "Throttled": "resilio_customerio.errors",
    "install_shutdown_handlers": "resilio_customerio.batching",
    "new_ulid": "resilio_customerio.ulid",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'resilio_customerio' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
