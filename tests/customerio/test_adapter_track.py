"""Every Track API operation of the adapter: request path, method, auth and body."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from resilio.testing import FakeClock
from resilio_customerio import InvalidRequest, ResilientCustomerIO
from resilio_customerio.testing import Simulator
from resilio_customerio.ulid import is_ulid

from ._adapter import basic_auth, header, last, make


@pytest.fixture
def cio(cio_simulator: Simulator, clock: FakeClock) -> Iterator[ResilientCustomerIO]:
    with make(cio_simulator, clock) as adapter:
        yield adapter


class TestTrackOperations:
    def test_identify(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """identify sends PUT /customers/{id} with Basic auth and the attributes."""
        response = cio.identify("42", email="a@example.com", plan="pro")
        assert response.status_code == 200
        request = last(cio_simulator)
        assert (request.method, request.path) == ("PUT", "/api/v1/customers/42")
        assert header(request, "Authorization") == basic_auth(cio_simulator)
        assert request.body == {"email": "a@example.com", "plan": "pro"}
        assert cio_simulator.customer("42") == {"email": "a@example.com", "plan": "pro"}

    def test_identify_zero(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """identify(0) is a real id: PUT /customers/0."""
        cio.identify(0, a=1)
        assert last(cio_simulator).path == "/api/v1/customers/0"

    @pytest.mark.parametrize("blank", [None, ""])
    def test_blank_ids_send_nothing(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator, blank: object
    ) -> None:
        """None and "" are refused before any request."""
        with pytest.raises(InvalidRequest, match="cannot be blank"):
            cio.identify(blank)  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest):
            cio.track(blank, "e")  # type: ignore[arg-type]
        assert cio_simulator.requests == []

    def test_path_ids_are_encoded(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """Ids with spaces, slashes and accents are percent-encoded in the path."""
        cio.identify("u 1/é", a=1)
        assert last(cio_simulator).path == "/api/v1/customers/u%201%2F%C3%A9"

    def test_track_gets_a_ulid(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """track POSTs the event with a fresh ULID id."""
        cio.track("42", "purchase", {"amount": 3})
        request = last(cio_simulator)
        assert (request.method, request.path) == ("POST", "/api/v1/customers/42/events")
        assert request.body["name"] == "purchase"
        assert request.body["data"] == {"amount": 3}
        assert is_ulid(request.body["id"])

    def test_track_respects_given_id(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """A caller-given event id is sent unchanged."""
        given = "01HZX3M5B3QJ0E3XN3V6YV2V4C"
        cio.track("42", "purchase", id=given, timestamp=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
        assert last(cio_simulator).body["id"] == given
        assert last(cio_simulator).body["timestamp"] == 1704067200

    def test_track_anonymous(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """track_anonymous POSTs /events with the anonymous id and a ULID."""
        cio.track_anonymous("anon-1", "visit", {"page": "/"})
        request = last(cio_simulator)
        assert (request.method, request.path) == ("POST", "/api/v1/events")
        assert request.body["anonymous_id"] == "anon-1"
        assert is_ulid(request.body["id"])

    def test_pageview_is_a_page_event_with_id(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """pageview sends type=page with a ULID, which the client's pageview cannot."""
        cio.pageview("42", "/pricing", referrer="ad")
        body = last(cio_simulator).body
        assert body["type"] == "page"
        assert body["name"] == "/pricing"
        assert body["data"] == {"referrer": "ad"}
        assert is_ulid(body["id"])
        assert cio_simulator.events("42")[0]["type"] == "page"

    def test_backfill_has_timestamp_and_id(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """backfill sends the timestamp and a ULID."""
        cio.backfill("42", "signup", dt.datetime(2020, 1, 1), source="import")
        body = last(cio_simulator).body
        assert body["timestamp"] == 1577836800
        assert body["data"] == {"source": "import"}
        assert is_ulid(body["id"])

    def test_backfill_bad_timestamp(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """An unparseable backfill timestamp is refused before sending."""
        with pytest.raises(InvalidRequest, match="timestamp"):
            cio.backfill("42", "signup", "yesterday")
        assert cio_simulator.requests == []

    def test_delete(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """delete sends DELETE /customers/{id}."""
        cio.identify("42", a=1)
        cio.delete("42")
        request = last(cio_simulator)
        assert (request.method, request.path) == ("DELETE", "/api/v1/customers/42")
        assert cio_simulator.customer("42") is None

    def test_devices(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """add_device PUTs the device; delete_device DELETEs it."""
        cio.add_device("42", "tok-1", "ios", last_used=1700000000)
        request = last(cio_simulator)
        assert (request.method, request.path) == ("PUT", "/api/v1/customers/42/devices")
        assert request.body == {
            "device": {"last_used": 1700000000, "id": "tok-1", "platform": "ios"}
        }
        assert "tok-1" in cio_simulator.devices("42")
        cio.delete_device("42", "tok-1")
        request = last(cio_simulator)
        assert (request.method, request.path) == ("DELETE", "/api/v1/customers/42/devices/tok-1")

    def test_suppress_unsuppress(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """suppress and unsuppress POST to their paths."""
        cio.identify("42", a=1)
        cio.suppress("42")
        assert last(cio_simulator).path == "/api/v1/customers/42/suppress"
        assert cio_simulator.suppressed("42")
        cio.unsuppress("42")
        assert last(cio_simulator).path == "/api/v1/customers/42/unsuppress"
        assert not cio_simulator.suppressed("42")

    def test_merge_customers(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """merge_customers POSTs primary and secondary."""
        cio.identify("1", a=1)
        cio.identify("2", b=2)
        cio.merge_customers("id", "1", "id", "2")
        request = last(cio_simulator)
        assert (request.method, request.path) == ("POST", "/api/v1/merge_customers")
        assert request.body == {"primary": {"id": "1"}, "secondary": {"id": "2"}}

    def test_merge_bad_type_sends_nothing(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """An invalid id type is refused before sending."""
        with pytest.raises(InvalidRequest, match="id type"):
            cio.merge_customers("phone", "1", "id", "2")
        assert cio_simulator.requests == []

    def test_batch(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """batch POSTs /api/v2/batch; event operations get a ULID."""
        result = cio.batch(
            [
                {
                    "type": "person",
                    "action": "identify",
                    "identifiers": {"id": "7"},
                    "attributes": {"a": 1},
                },
                {"type": "person", "action": "event", "identifiers": {"id": "7"}, "name": "e"},
            ]
        )
        assert result.ok
        assert result.succeeded == [0, 1]
        request = last(cio_simulator)
        assert (request.method, request.path) == ("POST", "/api/v2/batch")
        assert is_ulid(request.body["batch"][1]["id"])
        assert "id" not in request.body["batch"][0]

    def test_nested_datetimes(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """Nested aware datetimes reach the server as correct epoch seconds."""
        plus_two = dt.timezone(dt.timedelta(hours=2))
        when = dt.datetime(2024, 1, 1, 2, 0, tzinfo=plus_two)
        cio.track("42", "e", {"order": {"placed": [when]}})
        assert last(cio_simulator).body["data"] == {"order": {"placed": [1704067200]}}


class TestBufferedMode:
    def test_calls_become_one_v2_batch_on_close(
        self, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """Buffered identify and track calls are sent together as one v2 batch when closed."""
        with make(cio_simulator, clock, buffer={"max_delay": 3600}) as cio:
            assert cio.identify("42", plan="pro") is None
            assert cio.track("42", "purchase", {"n": 1}) is None
            assert cio_simulator.requests == []
        assert [(r.method, r.path) for r in cio_simulator.requests] == [("POST", "/api/v2/batch")]
        ops = last(cio_simulator).body["batch"]
        assert [(op["action"], op["identifiers"]) for op in ops] == [
            ("identify", {"id": "42"}),
            ("event", {"id": "42"}),
        ]
        assert is_ulid(ops[1]["id"])
        assert cio_simulator.customer("42") == {"plan": "pro"}

    @pytest.mark.parametrize(
        ("given", "identifiers"),
        [
            ("a@example.com", {"email": "a@example.com"}),
            ("cio_03000001", {"cio_id": "03000001"}),
            (7, {"id": 7}),
            ("cio_", {"id": "cio_"}),
        ],
    )
    def test_identifier_type_follows_the_value(
        self,
        cio_simulator: Simulator,
        clock: FakeClock,
        given: str | int,
        identifiers: dict[str, str | int],
    ) -> None:
        """An email or a cio_ id becomes that v2 identifier type, as the v1 path would read it."""
        with make(cio_simulator, clock, buffer={"max_delay": 3600}) as cio:
            cio.track(given, "seen")
        assert last(cio_simulator).body["batch"][0]["identifiers"] == identifiers

    def test_email_identify_reaches_the_person(
        self, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """A buffered identify by email updates the person known by that email."""
        with make(cio_simulator, clock) as direct:
            direct.identify("9", email="p@example.com")
        with make(cio_simulator, clock, buffer={"max_delay": 3600}) as cio:
            cio.identify("p@example.com", plan="pro")
        assert cio_simulator.customer("9") == {"email": "p@example.com", "plan": "pro"}


class TestTimestamps:
    @pytest.mark.parametrize(
        ("given", "sent"),
        [
            ("2024-01-01T00:00:00Z", 1704067200),
            ("2024-01-01T02:00:00+02:00", 1704067200),
            ("1704067200", 1704067200),
            (1704067200, 1704067200),
        ],
    )
    def test_iso_8601_with_a_zone_and_epoch_seconds_are_sent_as_seconds(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator, given: Any, sent: int
    ) -> None:
        """An ISO 8601 date-time with a zone is converted, as the JSONL format accepts it."""
        cio.track("42", "purchase", timestamp=given)
        assert last(cio_simulator).body["timestamp"] == sent

    @pytest.mark.parametrize(
        ("given", "reason"),
        [
            ("2024-01-01T00:00:00", "must name its time zone"),
            ("soon", "ISO 8601 date-time with a zone"),
            (1704067200000, r"from 1970 to 2099 \(epoch seconds, not milliseconds\)"),
            (-5, "from 1970 to 2099"),
        ],
    )
    def test_unusable_timestamps_are_refused_before_sending(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator, given: Any, reason: str
    ) -> None:
        """A naive, unreadable or implausible timestamp is an InvalidRequest; nothing is sent."""
        before = len(cio_simulator.requests)
        with pytest.raises(InvalidRequest, match=reason):
            cio.backfill("42", "purchase", given)
        assert len(cio_simulator.requests) == before
