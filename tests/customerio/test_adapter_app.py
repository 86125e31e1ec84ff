"""Every App API transactional send of the adapter: path, method, auth, body and hygiene."""

from __future__ import annotations

import decimal
from collections.abc import Iterator
from typing import Any

import customerio
import pytest

from resilio.testing import FakeClock
from resilio_customerio import ConfigurationProblem, PayloadTooLarge, ResilientCustomerIO
from resilio_customerio.testing import Simulator

from ._adapter import header, last, make

REQUESTS: list[tuple[str, Any]] = [
    (
        "email",
        customerio.SendEmailRequest(
            transactional_message_id="1", to="a@example.com", identifiers={"id": "42"}
        ),
    ),
    ("push", customerio.SendPushRequest(transactional_message_id="2", identifiers={"id": "42"})),
    ("sms", customerio.SendSMSRequest(transactional_message_id="3", identifiers={"id": "42"})),
    (
        "whatsapp",
        customerio.SendWhatsAppRequest(transactional_message_id="4", identifiers={"id": "42"}),
    ),
    (
        "inbox_message",
        customerio.SendInboxMessageRequest(transactional_message_id="5", identifiers={"id": "42"}),
    ),
    ("in_app", customerio.SendInAppRequest(transactional_message_id="6", identifiers={"id": "42"})),
]


@pytest.fixture
def cio(cio_simulator: Simulator, clock: FakeClock) -> Iterator[ResilientCustomerIO]:
    with make(cio_simulator, clock) as adapter:
        yield adapter


class TestSends:
    @pytest.mark.parametrize(("kind", "request_object"), REQUESTS, ids=[k for k, _ in REQUESTS])
    def test_request_objects(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator, kind: str, request_object: Any
    ) -> None:
        """send_<kind> POSTs /v1/send/<kind> with the Bearer App key and the object's fields."""
        answer = getattr(cio, f"send_{kind}")(request_object)
        request = last(cio_simulator)
        assert (request.method, request.path) == ("POST", f"/v1/send/{kind}")
        assert header(request, "Authorization") == f"Bearer {cio_simulator.app_key}"
        assert request.body == request_object._to_dict()
        assert answer["delivery_id"] == cio_simulator.deliveries()[0].delivery_id

    def test_dicts_are_normalised(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """A dict request is sent with Decimal and NaN normalised."""
        cio.send_email(
            {
                "transactional_message_id": 7,
                "identifiers": {"email": "a@example.com"},
                "message_data": {"total": decimal.Decimal("9.50"), "bad": float("nan")},
            }
        )
        assert last(cio_simulator).body["message_data"] == {"total": 9.5, "bad": None}

    def test_oversized_send_is_refused_before_sending(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """A send over 2 MB is PERMANENT, names the limit and sends nothing."""
        big = {
            "transactional_message_id": 1,
            "identifiers": {"id": "1"},
            "message_data": {"blob": "x" * (2048 * 1024)},
        }
        with pytest.raises(PayloadTooLarge, match="transactional requests <= 2097152 bytes"):
            cio.send_email(big)
        assert cio_simulator.requests == []

    def test_sends_need_an_app_key(self, cio_simulator: Simulator, clock: FakeClock) -> None:
        """Without app_key, a send is a configuration problem and nothing is sent."""
        with (
            make(cio_simulator, clock, app_key=None) as cio,
            pytest.raises(ConfigurationProblem, match="app_key"),
        ):
            cio.send_sms({"transactional_message_id": 1, "identifiers": {"id": "1"}})
        assert cio_simulator.requests == []
