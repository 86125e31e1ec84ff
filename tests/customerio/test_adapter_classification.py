"""The classification table, row by row, with the real client against real servers.

Each test makes one attempt (``ResilientCustomerIO.attempt``: no retries, no waits) so that the
error and its kind are exactly what the table says for that signal. The unit tests of the table
are in test_classify.py; these show the real ``customerio`` client produces those signals.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from resilio.classify import ErrorKind
from resilio.testing import FakeClock
from resilio_customerio import (
    AuthenticationFailed,
    ConfigurationProblem,
    CustomerIOError,
    InvalidRequest,
    OutcomeUnknown,
    ResilientCustomerIO,
    ServiceUnavailable,
    Throttled,
)
from resilio_customerio.testing import Simulator

from ._adapter import make

TRACK = "customerio.identify"
SEND = "customerio.send_email"
IDENTIFY = {"id": "42", "attributes": {"a": 1}}
EMAIL = {"request": {"transactional_message_id": "1", "identifiers": {"id": "42"}}}


@pytest.fixture
def cio(cio_simulator: Simulator, clock: FakeClock) -> Iterator[ResilientCustomerIO]:
    with make(cio_simulator, clock) as adapter:
        yield adapter


def fail(cio: ResilientCustomerIO, name: str, payload: dict[str, Any]) -> CustomerIOError:
    """Make one attempt that must fail; return the adapter's error."""
    with pytest.raises(CustomerIOError) as info:
        cio.attempt(name, payload)
    return info.value


def free_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class TestStatusRows:
    def test_client_validation_is_permanent(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """The client's own validation (no status, no cause) is PERMANENT and sends nothing."""
        payload = {
            "primary_id_type": "phone",
            "primary_id": "1",
            "secondary_id_type": "id",
            "secondary_id": "2",
        }
        error = fail(cio, "customerio.merge_customers", payload)
        assert isinstance(error, InvalidRequest)
        assert error.kind is ErrorKind.PERMANENT
        assert cio_simulator.requests == []

    @pytest.mark.parametrize("status", [400, 404, 405, 409, 413, 422, 418])
    def test_client_errors_are_permanent(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator, status: int
    ) -> None:
        """400, 404, 405, 409, 413, 422 and other 4xx answers are PERMANENT InvalidRequest."""
        cio_simulator.faults.add("identify", status=status)
        error = fail(cio, TRACK, IDENTIFY)
        assert isinstance(error, InvalidRequest)
        assert (error.status, error.kind) == (status, ErrorKind.PERMANENT)

    @pytest.mark.parametrize(
        ("name", "payload", "endpoint", "key"),
        [(TRACK, IDENTIFY, "identify", "Track API key"), (SEND, EMAIL, "send_email", "App API")],
    )
    @pytest.mark.parametrize("status", [401, 403])
    def test_auth_is_permanent_and_names_the_key(
        self,
        cio: ResilientCustomerIO,
        cio_simulator: Simulator,
        status: int,
        name: str,
        payload: dict[str, Any],
        endpoint: str,
        key: str,
    ) -> None:
        """401 and 403 are PERMANENT AuthenticationFailed naming the key type and the region."""
        cio_simulator.faults.add(endpoint, status=status)
        error = fail(cio, name, payload)
        assert isinstance(error, AuthenticationFailed)
        assert (error.status, error.kind) == (status, ErrorKind.PERMANENT)
        assert key in error.reason
        assert "region ('us')" in error.reason

    @pytest.mark.parametrize(("header", "expected"), [("7", 7.0), (None, None)])
    def test_429_is_throttled(
        self,
        cio: ResilientCustomerIO,
        cio_simulator: Simulator,
        header: str | None,
        expected: float | None,
    ) -> None:
        """429 is THROTTLED, carrying Retry-After when the answer has one."""
        cio_simulator.faults.add("identify", status=429, retry_after=header)
        error = fail(cio, TRACK, IDENTIFY)
        assert isinstance(error, Throttled)
        assert error.kind is ErrorKind.THROTTLED
        assert error.retry_after == expected
        assert error.classification.retry_after == expected

    @pytest.mark.parametrize("status", [408, 503])
    @pytest.mark.parametrize(
        ("name", "payload", "endpoint"),
        [(TRACK, IDENTIFY, "identify"), (SEND, EMAIL, "send_email")],
    )
    def test_408_and_503_are_transient(
        self,
        cio: ResilientCustomerIO,
        cio_simulator: Simulator,
        status: int,
        name: str,
        payload: dict[str, Any],
        endpoint: str,
    ) -> None:
        """408 and 503 are TRANSIENT for every operation, transactional sends included."""
        cio_simulator.faults.add(endpoint, status=status)
        error = fail(cio, name, payload)
        assert isinstance(error, ServiceUnavailable)
        assert error.kind is ErrorKind.TRANSIENT

    @pytest.mark.parametrize(
        ("name", "payload", "endpoint", "error_class", "kind"),
        [
            (TRACK, IDENTIFY, "identify", ServiceUnavailable, ErrorKind.TRANSIENT),
            (SEND, EMAIL, "send_email", OutcomeUnknown, ErrorKind.AMBIGUOUS),
        ],
        ids=["track", "send"],
    )
    @pytest.mark.parametrize("status", [500, 501, 502, 504])
    def test_other_5xx(
        self,
        cio: ResilientCustomerIO,
        cio_simulator: Simulator,
        status: int,
        name: str,
        payload: dict[str, Any],
        endpoint: str,
        error_class: type[CustomerIOError],
        kind: ErrorKind,
    ) -> None:
        """Other 5xx are TRANSIENT for Track operations, AMBIGUOUS for sends (may have gone)."""
        cio_simulator.faults.add(endpoint, status=status)
        error = fail(cio, name, payload)
        assert isinstance(error, error_class)
        assert (error.status, error.kind) == (status, kind)

    @pytest.mark.parametrize("status", [301, 302, 307, 308])
    def test_redirects_are_permanent(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator, status: int
    ) -> None:
        """A redirect is a PERMANENT ConfigurationProblem and is not followed."""
        cio_simulator.faults.add("identify", status=status, location="https://elsewhere.test/")
        error = fail(cio, TRACK, IDENTIFY)
        assert isinstance(error, ConfigurationProblem)
        assert (error.status, error.kind) == (status, ErrorKind.PERMANENT)
        assert len(cio_simulator.requests) == 1

    def test_unreadable_success_body_is_ambiguous(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """A 2xx whose body is not JSON, answering a send, is AMBIGUOUS (probably queued)."""
        cio_simulator.faults.add("send_email", status=200, body="<html>ok</html>")
        error = fail(cio, SEND, EMAIL)
        assert isinstance(error, OutcomeUnknown)
        assert error.kind is ErrorKind.AMBIGUOUS


class TestTransportRows:
    def test_connection_refused_is_transient(self, clock: FakeClock) -> None:
        """Connection refused is TRANSIENT: nothing was sent."""
        with ResilientCustomerIO(
            "s", "k", host="127.0.0.1", port=free_port(), clock=clock, replay=False
        ) as cio:
            error = fail(cio, TRACK, IDENTIFY)
        assert isinstance(error, ServiceUnavailable)
        assert error.kind is ErrorKind.TRANSIENT
        assert "nothing was sent" in error.reason

    def test_dns_failure_is_transient(self, clock: FakeClock) -> None:
        """A name that does not resolve is TRANSIENT: nothing was sent."""
        with ResilientCustomerIO(
            "s", "k", host="nowhere.invalid", clock=clock, replay=False
        ) as cio:
            error = fail(cio, TRACK, IDENTIFY)
        assert isinstance(error, ServiceUnavailable)
        assert error.kind is ErrorKind.TRANSIENT

    def test_connect_timeout_is_transient(self, clock: FakeClock) -> None:
        """A connect timeout (a listener whose backlog is full) is TRANSIENT."""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            port = listener.getsockname()[1]
            fillers = []
            for _ in range(3):  # fill the accept queue; later SYNs are dropped
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            try:
                with ResilientCustomerIO(
                    "s", "k", host="127.0.0.1", port=port, timeout=0.3, clock=clock, replay=False
                ) as cio:
                    error = fail(cio, TRACK, IDENTIFY)
            finally:
                for filler in fillers:
                    filler.close()
        assert isinstance(error, ServiceUnavailable)
        assert error.kind is ErrorKind.TRANSIENT
        assert error.reason == "connect timeout: nothing was sent"

    def test_read_timeout_is_ambiguous(self, cio_simulator: Simulator, clock: FakeClock) -> None:
        """A read timeout (applied, answered late) is AMBIGUOUS."""
        cio_simulator.faults.add("identify", timeout_after_commit=1.0)
        with make(cio_simulator, clock, timeout=0.3) as cio:
            error = fail(cio, TRACK, IDENTIFY)
        assert isinstance(error, OutcomeUnknown)
        assert error.kind is ErrorKind.AMBIGUOUS

    def test_reset_is_ambiguous(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """A connection reset after the request was sent is AMBIGUOUS."""
        cio_simulator.faults.add("identify", reset="before")
        error = fail(cio, TRACK, IDENTIFY)
        assert isinstance(error, OutcomeUnknown)
        assert error.kind is ErrorKind.AMBIGUOUS

    def test_remote_disconnect_is_ambiguous(
        self, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
    ) -> None:
        """A server that reads the request and closes without answering is AMBIGUOUS."""
        import trustme

        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        bundle = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(65536)  # read the request, then close cleanly without answering

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        try:
            with ResilientCustomerIO(
                "s", "k", host="127.0.0.1", port=port, clock=clock, replay=False
            ) as cio:
                error = fail(cio, TRACK, IDENTIFY)
        finally:
            server.join(5)
            listener.close()
        assert isinstance(error, OutcomeUnknown)
        assert error.kind is ErrorKind.AMBIGUOUS
        assert "RemoteDisconnected" in repr(getattr(error.__cause__, "__cause__", None))

    def test_tls_failure_is_permanent(
        self, cio_simulator: Simulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A certificate the client does not trust is a PERMANENT ConfigurationProblem."""
        import certifi

        monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
        with make(cio_simulator, clock) as cio:
            error = fail(cio, TRACK, IDENTIFY)
        assert isinstance(error, ConfigurationProblem)
        assert error.kind is ErrorKind.PERMANENT
        assert "TLS" in error.reason

    @pytest.mark.parametrize("value", [object(), float("inf")], ids=["object", "inf"])
    def test_unserialisable_payload_is_permanent(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator, value: object
    ) -> None:
        """A payload the client cannot serialise (TypeError, inf) is PERMANENT; nothing is sent."""
        error = fail(cio, TRACK, {"id": "42", "attributes": {"x": value}})
        assert isinstance(error, InvalidRequest)
        assert error.kind is ErrorKind.PERMANENT
        assert "serialised" in error.reason
        assert cio_simulator.requests == []
