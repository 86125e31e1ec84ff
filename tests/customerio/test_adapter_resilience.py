"""Retries, throttling, the shared breaker and the outbox, against the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import resilio
from resilio.classify import ErrorKind
from resilio.outbox import Outbox, Queued
from resilio.testing import FakeClock
from resilio_customerio import (
    AuthenticationFailed,
    ConfigurationProblem,
    OutcomeUnknown,
    ResilientCustomerIO,
    ServiceUnavailable,
    Throttled,
)
from resilio_customerio.testing import Simulator

from ._adapter import make

SEND = {"transactional_message_id": "1", "identifiers": {"id": "42"}}
PATIENT_BREAKER = {
    "policies": {
        "customerio.track.breaker": {
            "circuit_breaker": {"failure_threshold": 100, "break_duration": 30}
        }
    }
}


@pytest.fixture
def cio(cio_simulator: Simulator, clock: FakeClock) -> Iterator[ResilientCustomerIO]:
    with make(cio_simulator, clock) as adapter:
        yield adapter


class TestRetries:
    def test_one_request_per_attempt(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """A persistent 500 makes exactly 5 requests for the 5 attempts: no hidden retries."""
        cio_simulator.faults.add("identify", status=500)
        with pytest.raises(ServiceUnavailable) as info:
            cio.identify("42", a=1)
        assert info.value.status == 500
        assert len(cio_simulator.requests) == 5
        assert len(clock.sleeps) == 4

    def test_retries_keep_the_event_id(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """Every retry of a track call sends the same ULID; one event is recorded."""
        cio_simulator.faults.add("track", status=503, first=2)
        cio.track("42", "purchase", {"n": 1})
        ids = {r.body["id"] for r in cio_simulator.requests}
        assert len(cio_simulator.requests) == 3
        assert len(ids) == 1
        assert [e["id"] for e in cio_simulator.events("42")] == list(ids)

    def test_reset_after_apply_is_deduplicated(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """A track whose answer is lost is retried with its id; the server keeps one event."""
        cio_simulator.faults.add("track", reset="after", first=1)
        cio.track("42", "purchase")
        assert len(cio_simulator.requests) == 2
        assert len(cio_simulator.events("42")) == 1
        assert cio_simulator.stats()["duplicates"] == 1

    def test_client_errors_are_not_retried(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """A 400 is PERMANENT: one request, no retry."""
        with pytest.raises(resilio.ResilioError) as info:
            cio.add_device("42", "tok", "windows-phone")
        assert info.value.status == 400  # type: ignore[attr-defined]
        assert len(cio_simulator.requests) == 1

    def test_wrong_key_is_auth_and_not_retried(
        self, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """A 401 is PERMANENT with an auth hint; one request."""
        with (
            make(cio_simulator, clock, api_key="wrong") as cio,
            pytest.raises(AuthenticationFailed, match="Track API key"),
        ):
            cio.identify("42", a=1)
        assert len(cio_simulator.requests) == 1
        assert cio_simulator.requests[0].status == 401

    def test_connection_refused_is_retried(self, clock: FakeClock) -> None:
        """Nothing listening: TRANSIENT, retried (sends too), then ServiceUnavailable."""
        cio = ResilientCustomerIO(
            "s",
            "k",
            app_key="a",
            host="127.0.0.1",
            port=9,
            api_url="https://127.0.0.1:9",
            clock=clock,
            timeout=1.0,
            replay=False,
        )
        with cio, pytest.raises(ServiceUnavailable) as info:
            cio.send_email(SEND)
        assert info.value.classification.kind is ErrorKind.TRANSIENT
        assert len(clock.sleeps) == 2  # three attempts for sends


class TestThrottling:
    def test_retry_after_is_a_floor(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """429 with Retry-After: 2 waits at least 2 s (on resilio's clock), then succeeds."""
        cio_simulator.faults.add("identify", status=429, retry_after=2, first=1)
        cio.identify("42", a=1)
        assert len(cio_simulator.requests) == 2
        assert 2.0 <= clock.sleeps[0] <= 30.0

    def test_without_retry_after_backs_off_with_jitter(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """429 without Retry-After backs off by the jittered exponential (first wait <= 0.2 s)."""
        cio_simulator.faults.add("identify", status=429, retry_after=None, first=1)
        cio.identify("42", a=1)
        assert len(cio_simulator.requests) == 2
        assert 0.0 <= clock.sleeps[0] <= 0.2

    def test_retry_after_beyond_the_bound_gives_up(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """A Retry-After longer than the policy's max_delay gives up at once with Throttled."""
        cio_simulator.faults.add("identify", status=429, retry_after=3600)
        with pytest.raises(Throttled) as info:
            cio.identify("42", a=1)
        assert info.value.retry_after == 3600.0
        assert len(cio_simulator.requests) == 1
        assert clock.sleeps == []


class TestBreakerAndOutbox:
    def test_breaker_opens_and_outbox_catches(
        self, cio_simulator: Simulator, clock: FakeClock, tmp_path: Path
    ) -> None:
        """During an outage the shared breaker opens; the outbox queues what it refuses."""
        outbox = Outbox.sqlite(tmp_path / "outbox.sqlite3", clock=clock)
        cio_simulator.faults.outage = (0.0, 1e9)
        with make(cio_simulator, clock, outbox=outbox) as cio:
            first = cio.track("42", "a")
            during_first = len(cio_simulator.requests)
            second = cio.identify("43", b=1)
            assert isinstance(first, Queued)
            assert isinstance(second, Queued)
            assert during_first == 5  # the breaker opened after 5 failures
            assert len(cio_simulator.requests) - during_first < 5  # refused without requests
            assert outbox.stats().pending == 2
            cio_simulator.faults.outage = None
            clock.advance(3600)
            report = resilio.Drainer(outbox, cio, clock=clock).drain_once()
        assert report.delivered == 2
        events = cio_simulator.events("42")
        assert [e["id"] for e in events] == [first.idempotency_key]
        assert cio_simulator.customer("43") == {"b": 1}

    def test_permanent_errors_are_never_queued(
        self, cio_simulator: Simulator, clock: FakeClock, tmp_path: Path
    ) -> None:
        """A 400 raises even with an outbox, and nothing is queued."""
        outbox = Outbox.sqlite(tmp_path / "outbox.sqlite3", clock=clock)
        cio_simulator.faults.add("identify", status=400)
        with make(cio_simulator, clock, outbox=outbox) as cio, pytest.raises(resilio.ResilioError):
            cio.identify("42", a=1)
        assert outbox.stats().pending == 0

    def test_retries_exhausted_on_transient_are_queued(
        self, cio_simulator: Simulator, clock: FakeClock, tmp_path: Path
    ) -> None:
        """A TRANSIENT failure that outlasts every retry is queued (the breaker stays closed)."""
        outbox = Outbox.sqlite(tmp_path / "outbox.sqlite3", clock=clock)
        cio_simulator.faults.add("identify", status=503)
        with make(cio_simulator, clock, outbox=outbox, config=PATIENT_BREAKER) as cio:
            receipt = cio.identify("42", a=1)
        assert isinstance(receipt, Queued)
        assert len(cio_simulator.requests) == 5
        assert outbox.stats().pending == 1

    def test_throttled_beyond_the_deadline_is_queued(
        self, cio_simulator: Simulator, clock: FakeClock, tmp_path: Path
    ) -> None:
        """A 429 asking for a wait past the deadline is queued at once, without waiting."""
        outbox = Outbox.sqlite(tmp_path / "outbox.sqlite3", clock=clock)
        cio_simulator.faults.add("track", status=429, retry_after=3600)
        with make(cio_simulator, clock, outbox=outbox) as cio:
            receipt = cio.track("42", "late")
        assert isinstance(receipt, Queued)
        assert len(cio_simulator.requests) == 1
        assert clock.sleeps == []

    def test_ambiguous_send_is_never_queued(
        self, cio_simulator: Simulator, clock: FakeClock, tmp_path: Path
    ) -> None:
        """A send whose outcome is unknown raises instead of being queued for a second send."""
        outbox = Outbox.sqlite(tmp_path / "outbox.sqlite3", clock=clock)
        cio_simulator.faults.add("send_email", reset="after")
        with make(cio_simulator, clock, outbox=outbox) as cio, pytest.raises(OutcomeUnknown):
            cio.send_email(SEND)
        assert outbox.stats().pending == 0
        assert len(cio_simulator.deliveries()) == 1

    def test_replay_after_an_applied_attempt_keeps_one_event(
        self, cio_simulator: Simulator, clock: FakeClock, tmp_path: Path
    ) -> None:
        """An event applied, then lost and queued, is replayed with its id: one event per id."""
        outbox = Outbox.sqlite(tmp_path / "outbox.sqlite3", clock=clock)
        cio_simulator.faults.add("track", reset="after", first=1)
        cio_simulator.faults.add("track", status=503)
        with make(cio_simulator, clock, outbox=outbox, config=PATIENT_BREAKER) as cio:
            receipts = [cio.track("42", "paid"), cio.track("42", "shipped")]
            assert all(isinstance(r, Queued) for r in receipts)
            cio_simulator.faults.clear()
            clock.advance(3600)
            report = resilio.Drainer(outbox, cio, clock=clock).drain_once()
        assert report.delivered == 2
        sent_ids = [r.body["id"] for r in cio_simulator.requests]
        assert set(sent_ids) == {r.idempotency_key for r in receipts}
        events = cio_simulator.events("42")
        assert sorted(e["id"] for e in events) == sorted(r.idempotency_key for r in receipts)
        assert [e["name"] for e in events] == ["paid", "shipped"]


class TestSharedRateLimit:
    @pytest.mark.redis
    def test_two_adapters_share_one_budget_through_redis(
        self, cio_simulator: Simulator, clock: FakeClock, redis_url: str
    ) -> None:
        """Two adapters whose Track limiter is in Redis share its tokens: the second gets none."""
        shared = {
            "stores": {"shared": {"kind": "redis", "url": redis_url}},
            "policies": {
                "customerio.track.rate": {
                    "rate_limiter": {"rate": 2, "per": 3600, "burst": 2, "store": "shared"}
                }
            },
        }
        with make(cio_simulator, clock, config=shared) as first:
            first.identify("1", a=1)
            first.identify("2", a=1)
        with make(cio_simulator, clock, config=shared) as second:
            with pytest.raises(resilio.RateLimited):
                second.identify("3", a=1)
            with pytest.raises(resilio.RateLimited):
                second.track("3", "e")
        assert len(cio_simulator.requests) == 2

    def test_track_and_app_have_separate_buckets(
        self, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """The Track and App APIs have their own limiters, each configurable."""
        config = {
            "policies": {
                "customerio.track.rate": {"rate_limiter": {"rate": 1, "per": 3600, "burst": 1}},
                "customerio.app.rate": {"rate_limiter": {"rate": 2, "per": 3600, "burst": 2}},
            }
        }
        with make(cio_simulator, clock, config=config) as cio:
            cio.identify("1", a=1)
            with pytest.raises(resilio.RateLimited):
                cio.track("1", "e")
            cio.send_email(SEND)
            cio.send_sms(SEND)
            with pytest.raises(resilio.RateLimited):
                cio.send_push(SEND)
        assert [r.endpoint for r in cio_simulator.requests] == [
            "identify",
            "send_email",
            "send_sms",
        ]


class TestRegionsAndTLS:
    def test_redirect_is_refused(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """A cross-region redirect is a PERMANENT configuration error; it is not followed."""
        cio_simulator.faults.add(
            "identify", status=307, location="https://track-eu.customer.io/api/v1/customers/42"
        )
        with pytest.raises(ConfigurationProblem, match="redirect"):
            cio.identify("42", a=1)
        assert len(cio_simulator.requests) == 1

    def test_untrusted_certificate(
        self, cio_simulator: Simulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An untrusted certificate is PERMANENT: one attempt, no retry loop."""
        import certifi

        monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
        with make(cio_simulator, clock) as cio, pytest.raises(ConfigurationProblem, match="TLS"):
            cio.identify("42", a=1)
        assert clock.sleeps == []
        assert cio_simulator.requests == []
