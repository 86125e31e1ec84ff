"""The classification table: every failure the customerio client can raise."""

from __future__ import annotations

import http.client
import socket
import ssl

import pytest
import requests
import urllib3.exceptions
from customerio import CustomerIOException
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool

from resilio import Context
from resilio.classify import ErrorKind
from resilio_customerio.classify import (
    RedirectRefused,
    classify,
    parse_retry_after,
    status_of,
    translate,
)
from resilio_customerio.errors import (
    AuthenticationFailed,
    ConfigurationProblem,
    CustomerIOError,
    InvalidRequest,
    OutcomeUnknown,
    ServiceUnavailable,
    Throttled,
)

CANARY = "canary-7f3a@example.com"
URL = "https://track.customer.io/api/v1/customers/42"
POOL = HTTPSConnectionPool("track.customer.io", 443)


def status_error(status: int) -> CustomerIOException:
    """A non-2xx answer, as ClientBase.send_request reports it (payload in the text)."""
    return CustomerIOException(f"{status}: {URL} {{'email': '{CANARY}'}} {{}}")


def wrapped(cause: BaseException) -> CustomerIOException:
    """Any other failure, as ClientBase.send_request wraps it (``raise ... from e``)."""
    try:
        try:
            raise cause
        except Exception as e:
            message = (
                "Failed to receive valid response after 0 retries.\n"
                "Check system status at http://status.customer.io.\n"
                f"Last caught exception -- {type(e)}: {e} {CANARY}"
            )
            raise CustomerIOException(message) from e
    except CustomerIOException as exc:
        return exc


def max_retry(reason: Exception) -> requests.exceptions.ConnectionError:
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(POOL, "/api/v1/customers/42", reason)
    )


def conn() -> HTTPSConnection:
    return HTTPSConnection("track.customer.io", 443)


class TestStatusRows:
    @pytest.mark.parametrize("status", [400, 404, 405, 409, 413, 422, 410])
    def test_client_errors_are_permanent(self, status: int) -> None:
        """4xx answers other than 401/403/408/429 are PERMANENT InvalidRequest."""
        err = translate(status_error(status), "customerio.identify")
        assert type(err) is InvalidRequest
        assert err.status == status
        assert err.classification.kind is ErrorKind.PERMANENT

    @pytest.mark.parametrize("status", [401, 403])
    def test_auth_is_permanent_with_hint(self, status: int) -> None:
        """401/403 are PERMANENT with an auth reason naming the key type and region."""
        err = translate(status_error(status), "customerio.send_email", api="app", region="eu")
        assert isinstance(err, AuthenticationFailed)
        assert err.classification.kind is ErrorKind.PERMANENT
        assert err.classification.reason == "auth"
        assert "App API key" in str(err)
        assert "'eu'" in str(err)

    def test_track_auth_hint_names_track_key(self) -> None:
        """A Track 401 points at the site id and Track API key."""
        err = translate(status_error(401), "customerio.identify", api="track")
        assert "Track API key" in str(err)

    def test_429_with_retry_after(self) -> None:
        """429 is THROTTLED and carries the captured Retry-After."""
        err = translate(status_error(429), "customerio.track", retry_after=2.0)
        assert isinstance(err, Throttled)
        assert err.classification.kind is ErrorKind.THROTTLED
        assert err.classification.retry_after == 2.0

    def test_429_without_retry_after(self) -> None:
        """429 without Retry-After is THROTTLED with no floor."""
        err = translate(status_error(429), "customerio.track")
        assert err.classification.kind is ErrorKind.THROTTLED
        assert err.classification.retry_after is None

    @pytest.mark.parametrize("status", [408, 500, 502, 503, 504, 501, 522])
    def test_server_errors_are_transient_for_idempotent(self, status: int) -> None:
        """408 and 5xx are TRANSIENT for idempotent operations."""
        err = translate(status_error(status), "customerio.identify", idempotent=True)
        assert isinstance(err, ServiceUnavailable)
        assert err.classification.kind is ErrorKind.TRANSIENT

    @pytest.mark.parametrize("status", [500, 502, 504])
    def test_gateway_errors_are_ambiguous_for_sends(self, status: int) -> None:
        """A 5xx on a non-idempotent send may have been applied: AMBIGUOUS."""
        err = translate(status_error(status), "customerio.send_email", idempotent=False)
        assert isinstance(err, OutcomeUnknown)
        assert err.classification.kind is ErrorKind.AMBIGUOUS

    @pytest.mark.parametrize("status", [408, 503])
    def test_408_503_are_transient_even_for_sends(self, status: int) -> None:
        """408 and 503 mean "not processed" even for a non-idempotent send."""
        err = translate(status_error(status), "customerio.send_email", idempotent=False)
        assert err.classification.kind is ErrorKind.TRANSIENT

    def test_redirect_is_permanent_config(self) -> None:
        """A refused redirect is a PERMANENT configuration problem."""
        err = translate(wrapped(RedirectRefused(307)), "customerio.identify")
        assert isinstance(err, ConfigurationProblem)
        assert err.status == 307
        assert err.classification.kind is ErrorKind.PERMANENT

    def test_exhausted_urllib3_status_retries(self) -> None:
        """A RetryError (client built with retries>0) is read for its status."""
        reason = urllib3.exceptions.ResponseError("too many 503 error responses")
        retry = requests.exceptions.RetryError(urllib3.exceptions.MaxRetryError(POOL, "/x", reason))
        assert status_of(retry) == 503
        err = translate(wrapped(retry), "customerio.track")
        assert err.status == 503
        assert err.classification.kind is ErrorKind.TRANSIENT


class TestCauseRows:
    def test_validation_error_is_permanent(self) -> None:
        """The client's own validation (no status, no cause) is PERMANENT."""
        err = translate(
            CustomerIOException("id cannot be blank in identify"), "customerio.identify"
        )
        assert type(err) is InvalidRequest
        assert err.status is None

    def test_connection_refused_is_transient(self) -> None:
        """Connection refused: nothing was sent, TRANSIENT."""
        cause = max_retry(urllib3.exceptions.NewConnectionError(conn(), "refused"))
        err = translate(wrapped(cause), "customerio.send_email", idempotent=False)
        assert isinstance(err, ServiceUnavailable)
        assert err.classification.kind is ErrorKind.TRANSIENT

    def test_dns_failure_is_transient(self) -> None:
        """A DNS failure is TRANSIENT: nothing was sent."""
        reason = urllib3.exceptions.NameResolutionError(
            "track.customer.io", conn(), socket.gaierror()
        )
        err = translate(wrapped(max_retry(reason)), "customerio.track")
        assert err.classification.kind is ErrorKind.TRANSIENT

    def test_connect_timeout_is_transient(self) -> None:
        """A connect timeout (requests.ConnectTimeout) is TRANSIENT."""
        reason = urllib3.exceptions.ConnectTimeoutError(conn(), "timed out")
        cause = requests.exceptions.ConnectTimeout(
            urllib3.exceptions.MaxRetryError(POOL, "/x", reason)
        )
        err = translate(wrapped(cause), "customerio.send_sms", idempotent=False)
        assert err.classification.kind is ErrorKind.TRANSIENT

    def test_read_timeout_as_connection_error_is_ambiguous(self) -> None:
        """A read timeout wrapped in ConnectionError (client default) is AMBIGUOUS."""
        reason = urllib3.exceptions.ReadTimeoutError(POOL, "/x", "read timed out")
        err = translate(wrapped(max_retry(reason)), "customerio.track")
        assert isinstance(err, OutcomeUnknown)
        assert err.classification.kind is ErrorKind.AMBIGUOUS

    def test_read_timeout_is_ambiguous(self) -> None:
        """requests.ReadTimeout (zero-retry adapter) is AMBIGUOUS."""
        err = translate(wrapped(requests.exceptions.ReadTimeout("x")), "customerio.send_email")
        assert err.classification.kind is ErrorKind.AMBIGUOUS

    def test_reset_is_ambiguous(self) -> None:
        """A connection reset after sending is AMBIGUOUS."""
        protocol = urllib3.exceptions.ProtocolError(
            "Connection aborted.", ConnectionResetError(104, "reset")
        )
        cause = requests.exceptions.ConnectionError(protocol)
        assert translate(wrapped(cause), "customerio.identify").kind is ErrorKind.AMBIGUOUS

    def test_remote_disconnect_is_ambiguous(self) -> None:
        """RemoteDisconnected (server closed without answering) is AMBIGUOUS."""
        protocol = urllib3.exceptions.ProtocolError(
            "Connection aborted.", http.client.RemoteDisconnected("closed")
        )
        err = translate(wrapped(max_retry(protocol)), "customerio.identify")
        assert err.classification.kind is ErrorKind.AMBIGUOUS

    def test_tls_failure_is_permanent(self) -> None:
        """An untrusted certificate is a PERMANENT configuration problem."""
        reason = urllib3.exceptions.SSLError(ssl.SSLCertVerificationError("verify failed"))
        cause = requests.exceptions.SSLError(urllib3.exceptions.MaxRetryError(POOL, "/x", reason))
        err = translate(wrapped(cause), "customerio.identify")
        assert isinstance(err, ConfigurationProblem)
        assert err.classification.kind is ErrorKind.PERMANENT

    @pytest.mark.parametrize(
        "cause",
        [
            requests.exceptions.InvalidJSONError(
                "Out of range float values are not JSON compliant"
            ),
            TypeError("Object of type Decimal is not JSON serializable"),
        ],
    )
    def test_unserialisable_payload_is_permanent(self, cause: Exception) -> None:
        """A payload JSON cannot encode is PERMANENT (no request was sent)."""
        err = translate(wrapped(cause), "customerio.track")
        assert isinstance(err, InvalidRequest)
        assert err.classification.kind is ErrorKind.PERMANENT

    def test_unreadable_success_body_is_ambiguous(self) -> None:
        """A 2xx send whose body is not JSON probably went out: AMBIGUOUS."""
        cause = requests.exceptions.JSONDecodeError("Expecting value", "<html>", 0)
        err = translate(cause, "customerio.send_email", idempotent=False)
        assert err.classification.kind is ErrorKind.AMBIGUOUS


class TestPrivacy:
    def test_message_names_operation_status_reason_only(self) -> None:
        """The adapter error's text never contains the payload."""
        err = translate(status_error(400), "customerio.identify")
        assert str(err) == "customerio.identify failed (HTTP 400): rejected by Customer.io"
        assert CANARY not in repr(err)

    def test_cause_is_kept_but_redacted(self) -> None:
        """The client exception stays as __cause__, with its text moved to unredacted_detail()."""
        original = status_error(500)
        err = translate(original, "customerio.identify")
        assert err.__cause__ is original
        assert err.__suppress_context__ is True
        assert CANARY not in str(original)
        assert CANARY in (err.unredacted_detail() or "")

    def test_transport_cause_text_is_redacted(self) -> None:
        """A wrapped transport failure's text is redacted too."""
        original = wrapped(requests.exceptions.ReadTimeout("x"))
        err = translate(original, "customerio.track")
        assert CANARY not in str(err) + str(original)

    def test_error_is_still_a_customerio_exception(self) -> None:
        """Code catching CustomerIOException still catches adapter errors."""
        err = translate(status_error(400), "customerio.identify")
        assert isinstance(err, CustomerIOException)
        assert isinstance(err, CustomerIOError)

    def test_errors_pickle(self) -> None:
        """Adapter errors survive pickling (process pools, outbox) without their detail."""
        import pickle

        err = translate(status_error(429), "customerio.track", retry_after=3.0)
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is Throttled
        assert (back.status, back.retry_after) == (429, 3.0)
        assert back.unredacted_detail() is None


class TestClassifier:
    def test_adapter_errors_carry_their_classification(self) -> None:
        """classify() returns an adapter error's own classification."""
        err = Throttled("customerio.track", 429, "rate limited", retry_after=4.0)
        c = classify(err, Context("customerio.track"))
        assert c is not None
        assert (c.kind, c.retry_after) == (ErrorKind.THROTTLED, 4.0)

    def test_raw_client_exception_without_mutating_it(self) -> None:
        """classify() reads a raw client exception and leaves its text alone."""
        raw = status_error(502)
        c = classify(raw, Context("customerio.send_email", idempotent=False))
        assert c is not None
        assert c.kind is ErrorKind.AMBIGUOUS
        assert CANARY in str(raw)

    def test_send_operations_default_to_not_idempotent(self) -> None:
        """Without context.idempotent, a send_* operation's 502 is AMBIGUOUS."""
        c = classify(status_error(502), Context("customerio.send_push"))
        assert c is not None
        assert c.kind is ErrorKind.AMBIGUOUS

    def test_raw_requests_exception(self) -> None:
        """A bare requests exception is classified too."""
        cause = max_retry(urllib3.exceptions.NewConnectionError(conn(), "refused"))
        c = classify(cause, None)
        assert c is not None
        assert c.kind is ErrorKind.TRANSIENT

    def test_foreign_errors_are_left_alone(self) -> None:
        """Exceptions that are not Customer.io's return None."""
        assert classify(ValueError("x"), Context("other")) is None


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2", 2.0),
            (" 1.5 ", 1.5),
            ("-3", 0.0),
            ("", None),
            (None, None),
            ("soon", None),
            ("nan", None),
        ],
    )
    def test_seconds(self, value: str | None, expected: float | None) -> None:
        """Retry-After seconds parse to a non-negative float, junk to None."""
        assert parse_retry_after(value) == expected

    def test_http_date(self) -> None:
        """An HTTP-date Retry-After is relative to now."""
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
