"""Fault injection in the Customer.io simulator, observed through the real client."""

from __future__ import annotations

import contextlib
import time

import pytest
import requests
from customerio import APIClient, CustomerIO, CustomerIOException

from resilio_customerio.testing import FaultRule, Faults, Simulator


def track_client(sim: Simulator, **options: object) -> CustomerIO:
    options.setdefault("retries", 0)
    return CustomerIO(**sim.client_kwargs(), **options)


def cause_of(call) -> BaseException | None:
    with pytest.raises(CustomerIOException) as info:
        call()
    return info.value.__cause__


class TestStatusFaults:
    def test_500_is_not_applied_and_exhausts_client_retries(self, cio_simulator):
        """A scripted 500 is answered without applying the call; retries=0 gives RetryError."""
        cio_simulator.faults.add("identify", status=500)
        cause = cause_of(lambda: track_client(cio_simulator).identify("1", a=1))
        assert isinstance(cause, requests.exceptions.RetryError)
        assert cio_simulator.customer("1") is None
        assert [(r.status, r.fault) for r in cio_simulator.requests] == [(500, "rule")]

    def test_first_n_then_success_with_client_retries(self, cio_simulator):
        """first=2 fails two attempts; the client's own retries then succeed on the third."""
        rule = cio_simulator.faults.add("track", status=503, first=2)
        track_client(cio_simulator, retries=2, backoff_factor=0).track("1", "e")
        assert [r.status for r in cio_simulator.requests] == [503, 503, 200]
        assert (rule.seen, rule.fired, len(cio_simulator.events("1"))) == (3, 2, 1)

    def test_429_without_retry_after_is_raised_at_once(self, cio_simulator):
        """429 without Retry-After is tried once and raised as "429: ..."."""
        cio_simulator.faults.add("*", status=429)
        with pytest.raises(CustomerIOException, match=r"^429: "):
            track_client(cio_simulator, retries=3).identify("1")
        (req,) = cio_simulator.requests
        assert req.status == 429

    def test_429_with_retry_after_is_honoured_by_the_client(self, cio_simulator):
        """429 with Retry-After: 0 is retried by the client and the second attempt applies."""
        cio_simulator.faults.add("identify", status=429, retry_after=0, first=1)
        track_client(cio_simulator, retries=1).identify("1", a=2)
        assert [r.status for r in cio_simulator.requests] == [429, 200]
        assert cio_simulator.customer("1") == {"a": 2}

    def test_retry_after_header_and_app_api_body(self, cio_simulator):
        """A 429 on the App API carries the Retry-After header and the errors[].detail body."""
        cio_simulator.faults.add("send_*", status=429, retry_after=7)
        resp = requests.post(
            cio_simulator.api_url + "/v1/send/email",
            json={},
            headers={"Authorization": "Bearer appkey"},
            timeout=5,
        )
        assert (resp.status_code, resp.headers["Retry-After"]) == (429, "7")
        assert resp.json()["errors"][0]["status"] == "429"

    def test_every_nth_request(self, cio_simulator):
        """every=2 fails the 2nd and 4th matching requests only."""
        cio_simulator.faults.add("identify", status=502, every=2)
        cio = track_client(cio_simulator)
        for n in range(4):
            with contextlib.suppress(CustomerIOException):
                cio.identify(str(n))
        assert [r.status for r in cio_simulator.requests] == [200, 502, 200, 502]

    def test_path_pattern_rule(self, cio_simulator):
        """A "METHOD /path/glob" rule hits matching paths only."""
        cio_simulator.faults.add("POST /api/v1/customers/*/events", status=400)
        cio = track_client(cio_simulator)
        cio.identify("1")
        with pytest.raises(CustomerIOException, match=r"^400: .*simulated 400"):
            cio.track("1", "e")
        assert [r.status for r in cio_simulator.requests] == [200, 400]

    def test_injected_401_on_track_has_empty_body(self, cio_simulator):
        """An injected 401 on the Track API has an empty body like the real one."""
        cio_simulator.faults.add("identify", status=401)
        resp = requests.put(cio_simulator.track_url + "/customers/1", json={}, timeout=5)
        assert (resp.status_code, resp.content) == (401, b"")

    def test_redirect_fault_sends_location(self, cio_simulator):
        """A 307 rule with a location sends the Location header."""
        cio_simulator.faults.add("region", status=307, location="https://elsewhere.invalid/x")
        resp = requests.get(
            cio_simulator.track_url + "/accounts/region", allow_redirects=False, timeout=5
        )
        assert (resp.status_code, resp.headers["Location"]) == (307, "https://elsewhere.invalid/x")


class TestTiming:
    def test_latency_delays_the_answer(self, cio_simulator):
        """latency=0.2 delays the answer by at least 0.2 s and still applies the call."""
        cio_simulator.faults.add("identify", latency=0.2)
        started = time.monotonic()
        track_client(cio_simulator).identify("1", a=1)
        assert time.monotonic() - started >= 0.2
        assert cio_simulator.customer("1") == {"a": 1}

    def test_timeout_after_commit_records_but_answers_late(self, cio_simulator):
        """The send is recorded, the answer comes after the client timeout: a ConnectionError."""
        cio_simulator.faults.add("send_email", timeout_after_commit=0.6)
        client = APIClient(**cio_simulator.api_client_kwargs(), retries=0, timeout=0.2)
        body = {"transactional_message_id": "1", "identifiers": {"id": "1"}}
        cause = cause_of(lambda: client.send_email(body))
        assert isinstance(cause, requests.exceptions.ConnectionError)
        assert "timed out" in str(cause)
        assert len(cio_simulator.deliveries()) == 1
        assert cio_simulator.requests[0].status == 200


class TestConnectionFaults:
    def test_reset_before_is_not_applied(self, cio_simulator):
        """reset="before" drops the connection and the call has no effect."""
        cio_simulator.faults.add("identify", reset="before")
        cause = cause_of(lambda: track_client(cio_simulator).identify("1", a=1))
        assert isinstance(cause, requests.exceptions.ConnectionError)
        assert cio_simulator.customer("1") is None
        assert cio_simulator.requests[0].status is None

    def test_reset_after_is_applied(self, cio_simulator):
        """reset="after" drops the connection after the effect is recorded."""
        cio_simulator.faults.add("send_email", reset="after")
        client = APIClient(**cio_simulator.api_client_kwargs(), retries=0)
        body = {"transactional_message_id": "1", "identifiers": {"id": "1"}}
        cause = cause_of(lambda: client.send_email(body))
        assert isinstance(cause, requests.exceptions.ConnectionError)
        assert len(cio_simulator.deliveries()) == 1

    def test_client_retry_after_reset_duplicates_a_send(self, cio_simulator):
        """With client retries on, a reset-after send is re-posted: two deliveries."""
        cio_simulator.faults.add("send_email", reset="after", first=1)
        client = APIClient(**cio_simulator.api_client_kwargs(), retries=1, backoff_factor=0)
        client.send_email({"transactional_message_id": "1", "identifiers": {"id": "1"}})
        assert len(cio_simulator.deliveries()) == 2

    def test_dropped_idle_connection_is_replaced_transparently(self, cio_simulator):
        """After the server drops an idle keep-alive connection, the pooled client reconnects."""
        cio_simulator.faults.drop_idle = 0.1
        cio = track_client(cio_simulator)
        cio.identify("1")
        time.sleep(0.3)
        cio.identify("2")
        assert cio_simulator.stats()["connections"] == 2
        assert [r.status for r in cio_simulator.requests] == [200, 200]


class TestWindows:
    def test_outage_window_answers_503(self, make_simulator, clock):
        """Inside the outage window every request gets 503; before and after it is normal."""
        sim = make_simulator(clock=clock.monotonic, faults=Faults(outage=(10.0, 20.0)))
        cio = track_client(sim)
        cio.identify("a")
        clock.advance(15)
        with pytest.raises(CustomerIOException):
            cio.identify("b")
        clock.advance(10)
        cio.identify("c")
        assert [(r.status, r.fault) for r in sim.requests] == [
            (200, None),
            (503, "outage"),
            (200, None),
        ]

    def test_outage_with_resets(self, make_simulator, clock):
        """outage_reset=True resets connections during the outage instead of answering."""
        sim = make_simulator(
            clock=clock.monotonic, faults=Faults(outage=(0.0, 5.0), outage_reset=True)
        )
        cause = cause_of(lambda: track_client(sim).identify("a"))
        assert isinstance(cause, requests.exceptions.ConnectionError)
        assert sim.requests[0].status is None

    def test_rule_time_window(self, make_simulator, clock):
        """A rule with start/end fires only inside its window of simulator time."""
        sim = make_simulator(clock=clock.monotonic)
        sim.faults.add("identify", status=500, start=1.0, end=2.0)
        cio = track_client(sim)
        statuses = []
        for _ in range(3):
            with contextlib.suppress(CustomerIOException):
                cio.identify("a")
            statuses.append(sim.requests[-1].status)
            clock.advance(1.0)
        assert statuses == [200, 500, 200]

    @pytest.mark.parametrize(("retry_after", "header"), [(1, "1"), (None, None)])
    def test_rate_limit_per_second(self, make_simulator, clock, retry_after, header):
        """rate_limit=2 answers 429 (with or without Retry-After) past 2 requests a second."""
        faults = Faults(rate_limit=2, rate_limit_retry_after=retry_after)
        sim = make_simulator(clock=clock.monotonic, faults=faults)
        session = requests.Session()
        url = sim.track_url + "/customers/1"
        auth = (sim.site_id, sim.api_key)
        statuses = [session.put(url, json={}, auth=auth, timeout=5) for _ in range(3)]
        clock.advance(1.0)
        statuses.append(session.put(url, json={}, auth=auth, timeout=5))
        assert [r.status_code for r in statuses] == [200, 200, 429, 200]
        assert statuses[2].headers.get("Retry-After") == header


class TestFaultPlan:
    def test_probability_is_reproducible_with_a_seed(self):
        """Two plans with the same seed fire on the same requests."""

        def pattern(seed: int) -> list[bool]:
            faults = Faults(seed=seed)
            faults.add("*", status=500, probability=0.5)
            return [
                faults.decide(name="track", family="track_api", method="POST", path="/", elapsed=0)
                is not None
                for _ in range(40)
            ]

        assert pattern(3) == pattern(3)
        assert 5 < sum(pattern(3)) < 35

    def test_family_selector(self):
        """The "app_api" selector matches sends and not Track calls."""
        rule = FaultRule(endpoint="app_api")
        assert rule.matches("send_sms", "app_api", "POST", "/v1/send/sms")
        assert not rule.matches("identify", "track_api", "PUT", "/api/v1/customers/1")

    def test_invalid_rule_is_rejected(self):
        """A status outside 100-599 is rejected when the rule is built."""
        with pytest.raises(ValueError, match="status"):
            FaultRule(status=700)

    def test_clear_removes_everything(self, cio_simulator):
        """clear() removes rules, outage and rate limit so requests succeed again."""
        cio_simulator.faults.add("*", status=500)
        cio_simulator.faults.rate_limit = 0
        cio_simulator.faults.clear()
        track_client(cio_simulator).identify("1")
        assert cio_simulator.requests[0].status == 200
