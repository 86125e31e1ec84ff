"""The classification table: what every failure of the ``customerio`` client means.

:func:`translate` turns anything the client can raise into a payload-free
:class:`~resilio_customerio.errors.CustomerIOError` subclass whose ``kind`` the pipeline acts on.
It reads the status code at the start of a :class:`customerio.CustomerIOException` message
(``"503: https://..."``) and, for transport failures, the exception's ``__cause__`` chain.
:func:`classify` is the same table as a resilio classifier, for the ``resilio_classify`` hook and
for pipelines that call the plain client.

The table (also in the guide):

===============================================  ===========  =====================================
Signal                                           Kind         Error
===============================================  ===========  =====================================
client validation (no status, no cause)          PERMANENT    InvalidRequest
400 404 405 409 413 422, other 4xx               PERMANENT    InvalidRequest
401 403                                          PERMANENT    AuthenticationFailed
429                                              THROTTLED    Throttled (``Retry-After`` if sent)
408, 503                                         TRANSIENT    ServiceUnavailable
other 5xx                                        TRANSIENT    ServiceUnavailable (idempotent ops)
other 5xx on a non-idempotent send               AMBIGUOUS    OutcomeUnknown
3xx (redirects are never followed)               PERMANENT    ConfigurationProblem
connection refused, DNS, connect timeout         TRANSIENT    ServiceUnavailable
read timeout, reset, remote disconnect           AMBIGUOUS    OutcomeUnknown
TLS failure, invalid URL                         PERMANENT    ConfigurationProblem
unserialisable payload (TypeError, inf)          PERMANENT    InvalidRequest
2xx with an unreadable body (sends)              AMBIGUOUS    OutcomeUnknown
===============================================  ===========  =====================================
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import TYPE_CHECKING

import requests
import urllib3.exceptions
from customerio import CustomerIOException

from resilio_customerio.errors import (
    AuthenticationFailed,
    ConfigurationProblem,
    CustomerIOError,
    InvalidRequest,
    OutcomeUnknown,
    ServiceUnavailable,
    Throttled,
)

if TYPE_CHECKING:
    from resilio._context import Context
    from resilio.classify import Classification

__all__ = [
    "PREFIX",
    "RedirectRefused",
    "classify",
    "parse_retry_after",
    "status_of",
    "translate",
]

PREFIX = "customerio."
"""Every adapter operation's name starts with this prefix."""

_STATUS = re.compile(r"^(\d{3}): ")
_TOO_MANY = re.compile(r"too many (\d{3}) error responses")
_REDACTED = "{status}: message withheld (it contains the request); see unredacted_detail()"


class RedirectRefused(requests.exceptions.RequestException):
    """Raised by the adapter's session hook when a server answers with a redirect.

    Redirects are never followed: requests drops credentials on a cross-host redirect and turns a
    POST into a body-less GET on 301/302, so a redirect means a misconfigured host or region.

    Attributes:
        status: The redirect's status code.
    """

    def __init__(self, status: int) -> None:
        super().__init__(f"redirect ({status}) refused: resolve the region once, up front")
        self.status = status


def status_of(error: BaseException) -> int | None:
    """Return the HTTP status a client exception reports, if any.

    Args:
        error: Any exception.

    Returns:
        The status from a ``"NNN: ..."`` message or an exhausted urllib3 status retry.
    """
    if isinstance(error, CustomerIOException):
        match = _STATUS.match(str(error.args[0]) if error.args else "")
        if match:
            return int(match.group(1))
    if isinstance(error, RedirectRefused):
        return error.status
    if isinstance(error, requests.exceptions.RetryError):
        match = _TOO_MANY.search(str(error))
        if match:
            return int(match.group(1))
    return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delay-seconds or an HTTP date).

    Args:
        value: The header value.
        now: Wall-clock time for HTTP dates (default: :func:`time.time`).

    Returns:
        Seconds to wait (never negative), or ``None`` when absent or unparseable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def _auth_reason(status: int, api: str, region: str | None) -> str:
    where = f" and that the region ({region!r}) is the workspace's" if region else ""
    if api == "app":
        key = f"check that an App API key (not a Track API key) is used{where}"
        if status == 403:
            return f"forbidden: the workspace may not be allowed to send; {key}"
        return f"unauthorised: {key}"
    key = f"check the site id and Track API key (not an App API key){where}"
    return ("forbidden: " if status == 403 else "unauthorised: ") + key


def _from_status(
    status: int,
    operation: str,
    *,
    idempotent: bool,
    api: str,
    region: str | None,
    retry_after: float | None,
    detail: str | None,
) -> CustomerIOError:
    if status in (401, 403):
        return AuthenticationFailed(
            operation, status, _auth_reason(status, api, region), detail=detail
        )
    if status == 429:
        reason = "rate limited" + (f", retry after {retry_after:g} s" if retry_after else "")
        return Throttled(operation, status, reason, retry_after=retry_after, detail=detail)
    if status == 408 or status == 503:
        return ServiceUnavailable(operation, status, "service unavailable", detail=detail)
    if status >= 500:
        if idempotent:
            return ServiceUnavailable(operation, status, "server error", detail=detail)
        return OutcomeUnknown(
            operation, status, "server error: the request may have been applied", detail=detail
        )
    if 300 <= status < 400:
        return ConfigurationProblem(
            operation,
            status,
            "redirect refused: check the host and resolve the region once, up front",
            detail=detail,
        )
    if 400 <= status < 500:
        reason = "payload too large" if status == 413 else "rejected by Customer.io"
        return InvalidRequest(operation, status, reason, detail=detail)
    return OutcomeUnknown(operation, status, "unexpected answer", detail=detail)


def _transport(error: BaseException) -> BaseException | None:
    """Return the innermost informative exception of a transport failure, if any."""
    if isinstance(error, requests.exceptions.ConnectionError) and error.args:
        inner = error.args[0]
        if isinstance(inner, urllib3.exceptions.MaxRetryError) and inner.reason is not None:
            return inner.reason
        if isinstance(inner, BaseException):
            return inner
    return None


def _from_cause(
    cause: BaseException, operation: str, *, idempotent: bool, detail: str | None
) -> CustomerIOError:
    name = type(cause).__name__
    if isinstance(cause, requests.exceptions.SSLError):
        return ConfigurationProblem(operation, None, "TLS failure: certificate not trusted")
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return ServiceUnavailable(operation, None, "connect timeout: nothing was sent")
    if isinstance(cause, requests.exceptions.ReadTimeout):
        return OutcomeUnknown(operation, None, "read timeout: the request may have been applied")
    if isinstance(cause, requests.exceptions.JSONDecodeError):
        return OutcomeUnknown(operation, None, "unreadable answer to an accepted request")
    if isinstance(cause, requests.exceptions.InvalidJSONError | TypeError | ValueError):
        return InvalidRequest(operation, None, f"payload cannot be serialised ({name})")
    if isinstance(
        cause,
        requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | requests.exceptions.TooManyRedirects,
    ):
        return ConfigurationProblem(operation, None, f"invalid address or redirect ({name})")
    if isinstance(cause, requests.exceptions.ConnectionError):
        inner = _transport(cause)
        if isinstance(inner, urllib3.exceptions.SSLError):
            return ConfigurationProblem(operation, None, "TLS failure: certificate not trusted")
        if isinstance(
            inner,
            urllib3.exceptions.NewConnectionError
            | urllib3.exceptions.ConnectTimeoutError
            | urllib3.exceptions.NameResolutionError,
        ):
            return ServiceUnavailable(operation, None, "cannot connect: nothing was sent")
        if isinstance(cause, requests.exceptions.ProxyError):
            return ServiceUnavailable(operation, None, "proxy failure: nothing was sent")
        return OutcomeUnknown(operation, None, "connection lost: the request may have been applied")
    if isinstance(cause, requests.exceptions.RequestException):
        return OutcomeUnknown(operation, None, f"transport failure ({name})")
    return OutcomeUnknown(operation, None, f"unexpected failure ({name})")


def translate(
    error: BaseException,
    operation: str,
    *,
    idempotent: bool = True,
    api: str = "track",
    region: str | None = None,
    retry_after: float | None = None,
) -> CustomerIOError:
    """Turn a failure of the ``customerio`` client into a payload-free adapter error.

    The result keeps ``error`` as ``__cause__`` (with ``__suppress_context__`` set). A client
    exception's text contains the payload, so its ``args`` are replaced by a redacted summary
    and the original text moves to :meth:`CustomerIOError.unredacted_detail`.

    Args:
        error: What the client raised (usually a :class:`customerio.CustomerIOException`).
        operation: The operation's name, e.g. ``"customerio.send_email"``.
        idempotent: Whether repeating the operation is harmless; decides whether a gateway
            error is TRANSIENT or AMBIGUOUS.
        api: ``"track"`` or ``"app"``, for the authentication hint.
        region: The configured region, for the authentication hint.
        retry_after: The ``Retry-After`` seconds captured from the response, if any.

    Returns:
        The error to raise.
    """
    if isinstance(error, CustomerIOError):
        return error
    detail: str | None = None
    if isinstance(error, CustomerIOException):
        detail = str(error.args[0]) if error.args else None
    status = status_of(error)
    cause = error.__cause__ if isinstance(error, CustomerIOException) else error
    if status is None and cause is not None:
        status = status_of(cause)
    if status is not None:
        result = _from_status(
            status,
            operation,
            idempotent=idempotent,
            api=api,
            region=region,
            retry_after=retry_after if status == 429 else None,
            detail=detail,
        )
    elif cause is None:
        result = InvalidRequest(
            operation, None, "refused by the client's validation", detail=detail
        )
    else:
        result = _from_cause(cause, operation, idempotent=idempotent, detail=detail)
        result._detail = detail
    if isinstance(error, CustomerIOException) and detail is not None:
        error.args = (_REDACTED.format(status=status if status is not None else "error"),)
    result.__cause__ = error
    result.__suppress_context__ = True
    return result


def _client_error(error: BaseException) -> bool:
    return isinstance(
        error, CustomerIOException | requests.exceptions.RequestException
    ) or isinstance(error.__cause__, requests.exceptions.RequestException)


def classify(error: BaseException, context: Context | None = None) -> Classification | None:
    """Classify a Customer.io failure for a resilio pipeline.

    Adapter errors carry their classification. Raw client exceptions are translated with the
    table above; whether a gateway error is AMBIGUOUS depends on ``context.idempotent`` (and on
    the operation being a transactional send when that is unset). Anything else is left to the
    next classifier.

    Args:
        error: The exception to classify.
        context: The execution context, if any.

    Returns:
        The classification, or ``None`` for exceptions that are not Customer.io's.
    """
    if isinstance(error, CustomerIOError):
        return error.classification
    if not _client_error(error):
        return None
    operation = (context.operation if context is not None else None) or "customerio"
    idempotent = context.idempotent if context is not None else None
    if idempotent is None:
        idempotent = ".send_" not in operation
    api = "app" if ".send_" in operation else "track"
    copy = type(error)(*error.args) if isinstance(error, CustomerIOException) else error
    if copy is not error:
        copy.__cause__ = error.__cause__
    return translate(copy, operation, idempotent=idempotent, api=api).classification
