"""The adapter's resilio plugin (entry point ``customerio`` in the ``resilio`` group).

It registers every ``customerio.<method>`` operation (idempotency, classifier, replay handler,
default pipeline name) and classifies Customer.io failures for any pipeline that runs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resilio.plugins.hookspecs import hookimpl
from resilio_customerio.classify import PREFIX, classify
from resilio_customerio.errors import CustomerIOError

if TYPE_CHECKING:
    from resilio._context import Context
    from resilio.classify import Classification
    from resilio.plugins.catalog import OperationRegistry

__all__ = ["resilio_classify", "resilio_register_operations"]


@hookimpl
def resilio_register_operations(registry: OperationRegistry) -> None:
    """Register every Customer.io operation of the adapter."""
    from resilio_customerio.operations import operations

    for operation in operations():
        registry.add(operation)


@hookimpl
def resilio_classify(error: BaseException, context: Context) -> Classification | None:
    """Classify Customer.io failures: adapter errors anywhere, client errors in its operations.

    Raw ``requests`` exceptions are claimed only inside ``customerio.*`` operations, so other
    HTTP code keeps its own classification.
    """
    from customerio import CustomerIOException

    operation = context.operation if context is not None else None
    if isinstance(error, CustomerIOError | CustomerIOException) or (
        operation is not None and operation.startswith(PREFIX)
    ):
        return classify(error, context)
    return None
