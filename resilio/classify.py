"""Error classification: what kind of failure an exception is.

A classifier maps an exception to a :class:`Classification`. The retry policy, the circuit
breaker and the fallback decide on the kind, never on exception types directly, so adapters for
a SaaS API teach the whole pipeline about that API's errors in one place.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING

from attrs import field, frozen, validators

from resilio._validators import plain

if TYPE_CHECKING:
    from resilio._context import Context

__all__ = [
    "Classification",
    "Classifier",
    "ErrorKind",
    "PERMANENT",
    "TRANSIENT",
    "default_classifier",
]


class ErrorKind(enum.Enum):
    """The kinds of failure resilio distinguishes."""

    TRANSIENT = "transient"
    """Did not take effect and may succeed if tried again (connection refused, 503)."""

    AMBIGUOUS = "ambiguous"
    """May have taken effect (read timeout, reset after sending): retry only idempotent work."""

    THROTTLED = "throttled"
    """The service asked to slow down; ``retry_after`` may say for how long."""

    PERMANENT = "permanent"
    """Will fail again however often it is tried (bad request, bad credentials)."""


def _non_negative_or_none(_inst: object, attribute: object, value: float | None) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"retry_after must be None or >= 0, got {value!r}")


@frozen(kw_only=True)
class Classification:
    """What a classifier decided about one exception.

    Attributes:
        kind: The kind of failure.
        retry_after: For throttling, the seconds the service asked to wait (a floor).
        reason: A short, payload-free reason for logs and errors (``"http 503"``, ``"auth"``).
    """

    kind: ErrorKind = field(validator=plain(validators.instance_of(ErrorKind)))
    retry_after: float | None = field(default=None, validator=_non_negative_or_none)
    reason: str | None = None

    @property
    def counts_as_failure(self) -> bool:
        """Whether a circuit breaker counts this failure (TRANSIENT and AMBIGUOUS only)."""
        return self.kind is ErrorKind.TRANSIENT or self.kind is ErrorKind.AMBIGUOUS


TRANSIENT = Classification(kind=ErrorKind.TRANSIENT)
"""The shared classification of an unclassified :class:`Exception`."""

PERMANENT = Classification(kind=ErrorKind.PERMANENT)
"""A plain permanent classification."""

Classifier = Callable[[BaseException, "Context"], "Classification | None"]
"""A function that classifies an exception, or returns ``None`` to let the next one decide."""


def default_classifier(error: BaseException, context: Context | None = None) -> Classification:
    """Classify an exception nobody else claimed.

    Framework rejections are classified by what they mean: a timeout is TRANSIENT (the service
    was too slow); every other :class:`~resilio.errors.Rejected` (a rate limit, an open
    circuit, a full bulkhead, a plugin policy's own refusal) is THROTTLED with its
    ``retry_after``: a refusal by the pipeline says nothing about the service's health, so no
    breaker counts it, and a retry waits at least ``retry_after`` (or gives up at once if that
    is too long). Any other :class:`Exception` is TRANSIENT.

    Args:
        error: The exception to classify.
        context: The execution context (unused by the default).

    Returns:
        The classification.
    """
    from resilio.errors import Rejected, TimeoutExceeded

    if isinstance(error, Rejected):
        if isinstance(error, TimeoutExceeded):
            return Classification(kind=ErrorKind.TRANSIENT, reason="rejected")
        return Classification(
            kind=ErrorKind.THROTTLED, retry_after=error.retry_after, reason="rejected"
        )
    return TRANSIENT
