"""The adapter's resilio plugin (entry point ``customerio`` in the ``resilio`` group).

It registers every ``customerio.<method>`` operation (idempotency, classifier, replay handler,
default pipeline name) and classifies Customer.io failures for any pipeline that runs them.

Every process that builds a resilio pipeline imports this module, Customer.io user or not, so it
imports nothing heavy: the ``customerio`` client, ``requests`` and the adapter's modules are
imported only when a Customer.io operation fails or is replayed, or when a failure's exception
class comes from the ``customerio`` package. Any other failure is answered (``None``) by looking
at its classes' module names alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from resilio._operation import Operation
from resilio.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from resilio._context import Context
    from resilio.classify import Classification
    from resilio.plugins.catalog import OperationRegistry

__all__ = ["OPERATIONS", "resilio_classify", "resilio_register_operations"]

_PREFIX = "customerio."

OPERATIONS: tuple[tuple[str, bool, str], ...] = (
    ("identify", True, "Create or update a person (an upsert)."),
    ("track", True, "Track a person's event; deduplicated by its ULID id."),
    ("track_anonymous", True, "Track an anonymous event; deduplicated by its ULID id."),
    ("pageview", True, "Track a page view (type=page) with a ULID id."),
    ("backfill", True, "Track a past event (with timestamp) with a ULID id."),
    ("delete", True, "Delete a person."),
    ("add_device", True, "Add or update a person's device."),
    ("delete_device", True, "Remove a person's device."),
    ("suppress", True, "Suppress a person."),
    ("unsuppress", True, "Unsuppress a person."),
    ("merge_customers", True, "Merge a secondary person into a primary one."),
    ("batch", True, "Send v2 operations in one request (event operations carry ULID ids)."),
    *(
        (
            f"send_{kind}",
            False,
            f"Send a transactional {label} (not idempotent: never repeated when it may have gone).",
        )
        for kind, label in (
            ("email", "email"),
            ("push", "push notification"),
            ("sms", "SMS"),
            ("whatsapp", "WhatsApp message"),
            ("inbox_message", "inbox message"),
            ("in_app", "in-app message"),
        )
    ),
)
"""Every operation as ``(method, idempotent, description)``, in the order of
:data:`resilio_customerio.operations.SPECS` (a test keeps the two equal)."""


def _classify(error: BaseException, context: Context | None = None) -> Classification | None:
    """The adapter's classifier, imported on first use."""
    from resilio_customerio.classify import classify

    return classify(error, context)


@functools.cache
def _real_handlers() -> dict[str, Callable[[Any], Any]]:
    from resilio_customerio.operations import operations

    return {op.name: op.handler for op in operations() if op.handler is not None}


def _replay(name: str, method: str) -> Callable[[Any], Any]:
    def handler(payload: Any) -> Any:
        return _real_handlers()[name](payload)

    handler.__name__ = handler.__qualname__ = f"replay_{method}"
    return handler


def _client_exception(error: BaseException) -> bool:
    """Whether the error is a ``customerio.CustomerIOException`` (adapter errors are too).

    The class's module names are checked first: an exception whose classes all come from other
    packages cannot be one, and answering that imports nothing. Otherwise the ``customerio``
    package is already imported (one of its classes exists), so the exact check is free.
    """
    if not any(cls.__module__.partition(".")[0] == "customerio" for cls in type(error).__mro__):
        return False
    from customerio import CustomerIOException

    return isinstance(error, CustomerIOException)


@hookimpl
def resilio_register_operations(registry: OperationRegistry) -> None:
    """Register every Customer.io operation of the adapter.

    The operations' classifier and replay handlers import the adapter when first called.
    """
    for method, idempotent, description in OPERATIONS:
        name = _PREFIX + method
        registry.add(
            Operation(
                name=name,
                idempotent=idempotent,
                classifier=_classify,
                handler=_replay(name, method),
                pipeline=name,
                description=description,
            )
        )


@hookimpl
def resilio_classify(error: BaseException, context: Context) -> Classification | None:
    """Classify Customer.io failures: adapter errors anywhere, client errors in its operations.

    Raw ``requests`` exceptions are claimed only inside ``customerio.*`` operations, so other
    HTTP code keeps its own classification. Any other failure returns ``None`` without importing
    the client or the adapter.
    """
    operation = context.operation if context is not None else None
    if (operation is not None and operation.startswith(_PREFIX)) or _client_exception(error):
        return _classify(error, context)
    return None
