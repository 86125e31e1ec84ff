"""The Customer.io entries of FAULTS.md, each as a scenario against the real client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from customerio import Regions

from resilio.testing import FakeClock, capture_events
from resilio_customerio import (
    ConfigurationProblem,
    InvalidRequest,
    OutcomeUnknown,
    PayloadTooLarge,
    ResilientCustomerIO,
    Throttled,
)
from resilio_customerio.region import resolve_region
from resilio_customerio.testing import Simulator

from ._adapter import make

SEND = {"transactional_message_id": "1", "identifiers": {"id": "42"}}


@pytest.fixture
def cio(cio_simulator: Simulator, clock: FakeClock) -> Iterator[ResilientCustomerIO]:
    with make(cio_simulator, clock) as adapter:
        yield adapter


class TestRetriedPostAfterReset:
    def test_reset_send_is_ambiguous_and_not_repeated(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """A reset send is AMBIGUOUS and not re-sent; the caller's own retry succeeds once."""
        cio_simulator.faults.add("send_email", reset="before", first=1)
        with capture_events() as events, pytest.raises(OutcomeUnknown):
            cio.send_email(SEND)
        assert len(cio_simulator.requests) == 1
        assert [getattr(e, "reason", None) for e in events.events][-1] == "ambiguous"
        answer = cio.send_email(SEND)  # the caller decided to try again
        assert answer["delivery_id"]
        assert len(cio_simulator.deliveries()) == 1

    def test_reset_after_commit_never_duplicates(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """A send applied before the reset is not repeated: one delivery, outcome unknown."""
        cio_simulator.faults.add("send_email", reset="after", first=1)
        with pytest.raises(OutcomeUnknown):
            cio.send_email(SEND)
        assert len(cio_simulator.deliveries()) == 1

    def test_reset_track_post_is_retried_once_delivered(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """A reset event POST is retried with its id: the call succeeds, one event exists."""
        cio_simulator.faults.add("track", reset="before", first=1)
        cio.track("42", "purchase")
        assert len(cio_simulator.requests) == 2
        assert len(cio_simulator.events("42")) == 1


class TestSlowServerNonIdempotentSend:
    def test_at_most_one_delivery(self, cio_simulator: Simulator, clock: FakeClock) -> None:
        """The server records the send, answers after the timeout: one delivery, outcome unknown."""
        cio_simulator.faults.add("send_email", timeout_after_commit=1.0)
        with (
            make(cio_simulator, clock, timeout=0.3) as cio,
            pytest.raises(OutcomeUnknown, match="may have been applied"),
        ):
            cio.send_email(SEND)
        assert len(cio_simulator.requests) == 1
        assert len(cio_simulator.deliveries()) == 1


class TestIdleConnectionsDropped:
    def test_transparent_reconnect(self, make_simulator: object, clock: FakeClock) -> None:
        """Calls after the server closed idle keep-alive sockets reconnect without an error."""
        sim = make_simulator()  # type: ignore[operator]
        sim.faults.drop_idle = 0.1
        with make(sim, clock) as cio:
            cio.identify("1", a=1)
            time.sleep(0.3)  # real idle time: the server closes the pooled socket
            cio.identify("2", a=2)
            time.sleep(0.3)
            cio.track("2", "e")
        assert [r.status for r in sim.requests] == [200, 200, 200]
        assert sim.stats()["connections"] >= 2


class TestConcurrentCalls:
    def test_twenty_threads(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """20 threads call identify at once: every call succeeds."""
        barrier = threading.Barrier(20)
        errors: list[BaseException] = []

        def work(n: int) -> None:
            barrier.wait()
            try:
                cio.identify(str(n), n=n)
            except BaseException as exc:  # collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert all(cio_simulator.customer(str(n)) == {"n": n} for n in range(20))


class TestThrottled:
    def test_with_retry_after(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """Retry-After: 2 means a wait of at least 2 s and at most the policy's bound."""
        cio_simulator.faults.add("send_email", status=429, retry_after=2, first=1)
        cio.send_email(SEND)
        assert len(cio_simulator.requests) == 2
        assert 2.0 <= clock.sleeps[0] <= 30.0

    def test_without_retry_after(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """Without Retry-After: jittered backoff, and the client made one request per attempt."""
        cio_simulator.faults.add("identify", status=429, retry_after=None)
        with pytest.raises(Throttled):
            cio.identify("42", a=1)
        assert len(cio_simulator.requests) == 5
        assert all(0.0 <= s <= 10.0 for s in clock.sleeps)


class TestNestedDatetimesAndFalsyIds:
    def test_nested_aware_datetimes(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """Datetimes at any depth become correct integer epoch seconds."""
        import datetime as dt

        tz = dt.timezone(dt.timedelta(hours=-5))
        cio.identify("42", history={"visits": [{"at": dt.datetime(2024, 1, 1, 19, tzinfo=tz)}]})
        assert cio_simulator.requests[-1].body == {"history": {"visits": [{"at": 1704153600}]}}

    def test_falsy_ids(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """identify(0) reaches /customers/0; None and "" never leave the process."""
        cio.identify(0, a=1)
        assert cio_simulator.requests[-1].path == "/api/v1/customers/0"
        for blank in (None, ""):
            with pytest.raises(InvalidRequest):
                cio.delete(blank)  # type: ignore[arg-type]
        assert len(cio_simulator.requests) == 1


class TestRegions:
    def test_auto_resolves_once(self, make_simulator: object) -> None:
        """region="auto" asks /accounts/region once and uses the answer."""
        sim = make_simulator(region="eu")  # type: ignore[operator]
        region = resolve_region(
            "auto", site_id=sim.site_id, api_key=sim.api_key, host=sim.host, port=sim.port
        )
        assert region == Regions.EU
        assert [r.path for r in sim.requests] == ["/api/v1/accounts/region"]

    def test_adapter_resolves_auto_at_construction(
        self, make_simulator: object, clock: FakeClock
    ) -> None:
        """ResilientCustomerIO(region="auto") resolves once, then calls go straight through."""
        sim = make_simulator(region="eu")  # type: ignore[operator]
        with make(sim, clock, region="auto") as cio:
            assert cio.region == Regions.EU
            cio.identify("1", a=1)
        assert [r.endpoint for r in sim.requests] == ["region", "identify"]

    def test_auto_with_bad_credentials(self, make_simulator: object) -> None:
        """A refused region lookup is an auth error, raised at construction."""
        from resilio_customerio import AuthenticationFailed

        sim = make_simulator()  # type: ignore[operator]
        with pytest.raises(AuthenticationFailed):
            resolve_region("auto", site_id="x", api_key="y", host=sim.host, port=sim.port)

    def test_unknown_region(self) -> None:
        """An unknown region name is a configuration problem."""
        with pytest.raises(ConfigurationProblem, match="region"):
            resolve_region("ap")

    def test_redirect_is_not_followed(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """A cross-region 301 is a permanent configuration error; credentials go nowhere."""
        cio_simulator.faults.add("send_email", status=301, location="https://api-eu.customer.io/")
        with pytest.raises(ConfigurationProblem):
            cio.send_email(SEND)
        assert len(cio_simulator.requests) == 1


class TestOversizedPayloads:
    def test_event_data(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """Event data over 100,000 bytes is refused before sending, naming the limit."""
        with pytest.raises(PayloadTooLarge, match="event data <= 100000 bytes"):
            cio.track("42", "big", {"blob": "x" * 100_000})
        assert cio_simulator.requests == []

    def test_v2_operation(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """A v2 operation over 32 KB is refused before sending, naming the limit."""
        big = {
            "type": "person",
            "action": "identify",
            "identifiers": {"id": "1"},
            "attributes": {f"a{i}": "x" * 900 for i in range(40)},
        }
        with pytest.raises(PayloadTooLarge, match="v2 operations <= 32768 bytes"):
            cio.batch([big])
        assert cio_simulator.requests == []

    def test_attribute_value(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """An attribute value over 1000 bytes is refused before sending."""
        with pytest.raises(PayloadTooLarge, match="attribute values <= 1000 bytes"):
            cio.identify("42", bio="x" * 1001)
        assert cio_simulator.requests == []
