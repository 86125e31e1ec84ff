"""The errors the Customer.io adapter raises.

The ``customerio`` client puts the whole request (URL, payload, response body) into the text of
its :class:`customerio.CustomerIOException`. The adapter never shows that text: every error it
raises is a :class:`CustomerIOError` whose message names only the operation, the HTTP status and a
short reason. The client's exception is kept as ``__cause__`` so it can still be inspected on
purpose, but its message is replaced by a redacted summary; the original text is available from
:meth:`CustomerIOError.unredacted_detail`, which is documented as containing personal data.

Every error is also a :class:`customerio.CustomerIOException`, so code written against the plain
client keeps catching what it caught before.
"""

from __future__ import annotations

from typing import ClassVar

from customerio import CustomerIOException

from resilio.classify import Classification, ErrorKind
from resilio.errors import ResilioError

__all__ = [
    "AuthenticationFailed",
    "ConfigurationProblem",
    "CustomerIOError",
    "InvalidRequest",
    "OutcomeUnknown",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "Throttled",
]


class CustomerIOError(ResilioError, CustomerIOException):  # type: ignore[misc]
    """A Customer.io call failed; the message names operation, status and reason only.

    Args:
        operation: The operation's registered name, e.g. ``"customerio.track"``.
        status: The HTTP status code, or ``None`` when no response was received.
        reason: A short, payload-free explanation.
        retry_after: For throttling, the seconds the service asked to wait.
        detail: The client's original message (contains the payload; never shown).

    Attributes:
        operation: The operation's name.
        status: The HTTP status code, if a response was received.
        reason: The short, payload-free explanation.
        retry_after: Seconds the service asked to wait, if it said.
    """

    kind: ClassVar[ErrorKind] = ErrorKind.PERMANENT
    """How the resilience pipeline treats this error."""

    def __init__(
        self,
        operation: str,
        status: int | None = None,
        reason: str = "failed",
        *,
        retry_after: float | None = None,
        detail: str | None = None,
    ) -> None:
        self.operation = operation
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        self._detail = detail
        where = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{operation} failed ({where}): {reason}")

    @property
    def classification(self) -> Classification:
        """The classification the pipeline uses for this error."""
        return Classification(kind=self.kind, retry_after=self.retry_after, reason=self.short)

    @property
    def short(self) -> str:
        """A very short reason for events and metrics (``"http 503"``, ``"connect"``)."""
        return f"http {self.status}" if self.status is not None else type(self).__name__

    def unredacted_detail(self) -> str | None:
        """Return the client's original error text.

        Warning:
            The text contains the request URL, the whole payload and the response body, which
            usually hold personal data. Never log it.

        Returns:
            The original text, or ``None`` when the error did not come from the client.
        """
        return self._detail

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild,
            (type(self), self.operation, self.status, self.reason, self.retry_after),
        )


def _rebuild(
    cls: type[CustomerIOError],
    operation: str,
    status: int | None,
    reason: str,
    retry_after: float | None,
) -> CustomerIOError:
    return cls(operation, status, reason, retry_after=retry_after)


class InvalidRequest(CustomerIOError):
    """The request is wrong and will fail however often it is sent (PERMANENT).

    Raised for the client's own validation errors, blank ids, payloads that cannot be serialised,
    and 400/404/405/409/413/422 answers.
    """

    kind: ClassVar[ErrorKind] = ErrorKind.PERMANENT


class PayloadTooLarge(InvalidRequest):
    """A value is over one of Customer.io's documented size limits; nothing was sent.

    Attributes:
        limit: The limit that was exceeded, e.g. ``"event data <= 100000 bytes"``.
    """

    def __init__(self, operation: str, limit: str) -> None:
        self.limit = limit
        super().__init__(operation, None, f"over the size limit: {limit}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.operation, self.limit))


class AuthenticationFailed(CustomerIOError):
    """Customer.io refused the credentials (401) or the action (403) (PERMANENT)."""

    kind: ClassVar[ErrorKind] = ErrorKind.PERMANENT

    @property
    def short(self) -> str:
        """``"auth"``."""
        return "auth"


class ConfigurationProblem(CustomerIOError):
    """The connection is misconfigured: TLS failure, redirect, bad URL (PERMANENT)."""

    kind: ClassVar[ErrorKind] = ErrorKind.PERMANENT

    @property
    def short(self) -> str:
        """``"config"``."""
        return "config"


class Throttled(CustomerIOError):
    """Customer.io answered 429; ``retry_after`` says how long to wait when it said (THROTTLED)."""

    kind: ClassVar[ErrorKind] = ErrorKind.THROTTLED


class ServiceUnavailable(CustomerIOError):
    """The request did not take effect: 408/5xx, connection refused, DNS failure (TRANSIENT)."""

    kind: ClassVar[ErrorKind] = ErrorKind.TRANSIENT

    @property
    def short(self) -> str:
        """``"http NNN"``, or ``"connect"`` when no connection was made."""
        return f"http {self.status}" if self.status is not None else "connect"


class OutcomeUnknown(CustomerIOError):
    """The request may or may not have taken effect (AMBIGUOUS).

    Raised after a read timeout, a reset or a dropped connection once the request was sent, and
    for gateway errors and unreadable answers of transactional sends. Retried only for
    idempotent operations; a transactional send is never repeated automatically.
    """

    kind: ClassVar[ErrorKind] = ErrorKind.AMBIGUOUS

    @property
    def short(self) -> str:
        """``"outcome unknown"``."""
        return "outcome unknown"
