"""The Customer.io simulator, driven by the real customerio client and raw HTTP."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
from pathlib import Path

import pytest
import requests
from customerio import APIClient, CustomerIO, CustomerIOException, SendEmailRequest

from resilio_customerio.testing import Simulator, serve_forever
from resilio_customerio.testing._ulid import is_ulid, new_ulid

ULID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def track_client(sim: Simulator, **options: object) -> CustomerIO:
    options.setdefault("retries", 0)
    return CustomerIO(**sim.client_kwargs(), **options)


def app_client(sim: Simulator, **options: object) -> APIClient:
    options.setdefault("retries", 0)
    return APIClient(**sim.api_client_kwargs(), **options)


def basic(sim: Simulator) -> dict[str, str]:
    token = base64.b64encode(f"{sim.site_id}:{sim.api_key}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def raw_post(sim: Simulator, path: str, body: object, **kwargs: object) -> requests.Response:
    headers = kwargs.pop("headers", None) or basic(sim)
    return requests.post(sim.api_url + path, json=body, headers=headers, timeout=5, **kwargs)


class TestTrackV1:
    def test_identify_records_put_with_basic_auth_and_stores_attributes(self, cio_simulator):
        """identify() sends PUT /api/v1/customers/{id} with Basic auth and upserts the person."""
        track_client(cio_simulator).identify("42", plan="pro", email="a@example.com")
        (req,) = cio_simulator.requests
        assert (req.method, req.path, req.status) == ("PUT", "/api/v1/customers/42", 200)
        assert req.headers["Authorization"] == basic(cio_simulator)["Authorization"]
        assert req.headers["User-Agent"].startswith("Customer.io Python Client/")
        assert req.body == {"plan": "pro", "email": "a@example.com"}
        assert cio_simulator.customer("42") == {"plan": "pro", "email": "a@example.com"}

    def test_identify_zero_sends_customers_0(self, cio_simulator):
        """identify(0) is a valid id and reaches PUT /api/v1/customers/0."""
        track_client(cio_simulator).identify(0, x=1)
        assert cio_simulator.requests[0].path == "/api/v1/customers/0"
        assert cio_simulator.customer("0") == {"x": 1}

    def test_percent_encoded_ids_are_decoded(self, cio_simulator):
        """An id with a space, slash and accent is sent encoded and stored decoded."""
        cio = track_client(cio_simulator)
        cio.identify("u 1/é", a=1)
        cio.track("u 1/é", "opened")
        assert cio_simulator.requests[0].path == "/api/v1/customers/u%201%2F%C3%A9"
        assert cio_simulator.customer("u 1/é") == {"a": 1}
        assert [e["name"] for e in cio_simulator.events("u 1/é")] == ["opened"]

    def test_delete_removes_the_person(self, cio_simulator):
        """delete() answers 200 and the person is gone; deleting again is still 200."""
        cio = track_client(cio_simulator)
        cio.identify("7", a=1)
        cio.delete("7")
        cio.delete("7")
        assert cio_simulator.customer("7") is None
        assert [r.method for r in cio_simulator.requests] == ["PUT", "DELETE", "DELETE"]

    def test_track_records_event_fields(self, cio_simulator):
        """track() stores name, id, type, timestamp and data for the person."""
        track_client(cio_simulator).track("42", " bought ", data={"sku": "a"}, id=ULID, timestamp=5)
        assert cio_simulator.events("42") == [
            {"name": "bought", "id": ULID, "type": "event", "timestamp": 5, "data": {"sku": "a"}}
        ]

    def test_track_anonymous_records_anonymous_id(self, cio_simulator):
        """track_anonymous() posts to /api/v1/events and keeps the anonymous_id."""
        track_client(cio_simulator).track_anonymous("anon-1", "visited", data={"p": 1})
        (event,) = cio_simulator.anonymous_events()
        assert cio_simulator.requests[0].path == "/api/v1/events"
        assert (event["name"], event["anonymous_id"], event["data"]) == (
            "visited",
            "anon-1",
            {"p": 1},
        )

    def test_pageview_is_a_page_event(self, cio_simulator):
        """pageview() is recorded as an event of type page named after the page."""
        track_client(cio_simulator).pageview("42", "/pricing", ref="x")
        (event,) = cio_simulator.events("42")
        assert (event["type"], event["name"], event["data"]) == ("page", "/pricing", {"ref": "x"})

    def test_devices_are_added_and_deleted(self, cio_simulator):
        """add_device() stores the device by id and delete_device() removes it."""
        cio = track_client(cio_simulator)
        cio.identify("42")
        cio.add_device("42", "tok 1", "ios", last_used=3)
        assert cio_simulator.devices("42") == {
            "tok 1": {"id": "tok 1", "platform": "ios", "last_used": 3}
        }
        cio.delete_device("42", "tok 1")
        assert cio_simulator.requests[-1].path == "/api/v1/customers/42/devices/tok%201"
        assert cio_simulator.devices("42") == {}

    def test_suppress_deletes_and_ignores_until_unsuppressed(self, cio_simulator):
        """A suppressed person is deleted and ignored by identify until unsuppressed."""
        cio = track_client(cio_simulator)
        cio.identify("42", a=1)
        cio.suppress("42")
        cio.identify("42", a=2)
        assert (cio_simulator.customer("42"), cio_simulator.suppressed("42")) == (None, True)
        cio.unsuppress("42")
        cio.identify("42", a=3)
        assert (cio_simulator.customer("42"), cio_simulator.suppressed("42")) == ({"a": 3}, False)

    def test_merge_customers_folds_secondary_into_primary(self, cio_simulator):
        """merge_customers() keeps primary attributes, fills gaps from secondary, deletes it."""
        cio = track_client(cio_simulator)
        cio.identify("1", plan="pro")
        cio.identify("2", plan="free", city="Oslo", email="two@example.com")
        cio.track("2", "clicked")
        cio.merge_customers("id", "1", "email", "two@example.com")
        assert cio_simulator.customer("1") == {
            "plan": "pro",
            "city": "Oslo",
            "email": "two@example.com",
        }
        assert cio_simulator.customer("2") is None
        assert [e["name"] for e in cio_simulator.events("1")] == ["clicked"]

    def test_merge_with_two_identifiers_is_400_meta_error(self, cio_simulator):
        """A merge party holding two identifiers gets 400 {"meta":{"error":...}}."""
        resp = raw_post(
            cio_simulator,
            "/api/v1/merge_customers",
            {"primary": {"id": "1", "email": "a@b.c"}, "secondary": {"id": "2"}},
        )
        assert resp.status_code == 400
        assert set(resp.json()["meta"]) == {"error"}

    @pytest.mark.parametrize("region", ["us", "eu"])
    def test_region_reports_own_url(self, make_simulator, region):
        """GET /api/v1/accounts/region reports the region and the simulator's own base URL."""
        sim = make_simulator(region=region)
        resp = requests.get(sim.track_url + "/accounts/region", headers=basic(sim), timeout=5)
        assert resp.json() == {
            "url": sim.api_url,
            "region": region,
            "environment_id": 1 if region == "us" else 2,
        }

    def test_wrong_track_credentials_get_401_without_body(self, cio_simulator):
        """A wrong api key gets 401 with an empty body, raised by the client as "401: ..."."""
        kwargs = {**cio_simulator.client_kwargs(), "api_key": "nope"}
        with pytest.raises(CustomerIOException, match=r"^401: "):
            CustomerIO(**kwargs, retries=0).identify("42")
        assert cio_simulator.customer("42") is None
        resp = requests.put(cio_simulator.track_url + "/customers/42", json={}, timeout=5)
        assert (resp.status_code, resp.content) == (401, b"")

    def test_unknown_path_is_404_and_wrong_method_is_405(self, cio_simulator):
        """Unknown paths get 404; a known path with the wrong method gets 405 and Allow."""
        missing = requests.get(cio_simulator.api_url + "/api/v1/nope", timeout=5)
        wrong = requests.get(cio_simulator.track_url + "/customers/42", timeout=5)
        assert missing.status_code == 404
        assert (wrong.status_code, wrong.headers["Allow"]) == (405, "PUT, DELETE")


class TestLimits:
    @pytest.mark.parametrize(
        ("attributes", "fragment"),
        [({"n" * 151: 1}, "longer than 150"), ({"big": "x" * 1001}, "larger than 1000")],
    )
    def test_attribute_limits_give_v1_errors(self, cio_simulator, attributes, fragment):
        """Attribute names over 150 bytes and values over 1000 bytes get 400 meta.errors."""
        resp = requests.put(
            cio_simulator.track_url + "/customers/42",
            json=attributes,
            headers=basic(cio_simulator),
            timeout=5,
        )
        assert resp.status_code == 400
        (message,) = resp.json()["meta"]["errors"]
        assert fragment in message

    def test_value_of_exactly_1000_bytes_is_accepted(self, cio_simulator):
        """A 1000-byte attribute value is at the limit and accepted."""
        track_client(cio_simulator).identify("42", v="é" * 500)
        assert cio_simulator.customer("42") == {"v": "é" * 500}

    def test_identifier_over_150_bytes_is_rejected(self, cio_simulator):
        """A path identifier over 150 bytes gets 400 and nothing is stored."""
        with pytest.raises(CustomerIOException, match=r"^400: .*150 bytes"):
            track_client(cio_simulator).identify("i" * 151)
        assert cio_simulator.customer("i" * 151) is None

    @pytest.mark.parametrize(
        ("name", "data", "event_id", "fragment"),
        [
            ("n" * 101, {}, None, "100 bytes"),
            ("ok", {"d": "x" * 100_000}, None, "100000 bytes"),
            ("ok", {}, "not-a-ulid", "ULID"),
        ],
    )
    def test_event_limits(self, cio_simulator, name, data, event_id, fragment):
        """Event names over 100 bytes, data over 100,000 bytes and bad ULIDs get 400."""
        with pytest.raises(CustomerIOException, match=rf"^400: .*{fragment}"):
            track_client(cio_simulator).track("42", name, data=data, id=event_id)
        assert cio_simulator.events("42") == []

    def test_duplicate_event_id_is_accepted_and_dropped(self, cio_simulator):
        """A repeated event id gets 200, is not stored again and is counted as a duplicate."""
        cio = track_client(cio_simulator)
        cio.track("42", "a", id=ULID)
        cio.track_anonymous("x", "a", id=ULID)
        assert len(cio_simulator.events("42")) == 1
        assert cio_simulator.anonymous_events() == []
        stats = cio_simulator.stats()
        assert (stats["accepted_events"], stats["duplicates"], stats["statuses"]) == (
            1,
            1,
            {200: 2},
        )

    def test_malformed_json_is_400(self, cio_simulator):
        """A body that is not JSON gets 400 with the v1 error envelope."""
        resp = requests.put(
            cio_simulator.track_url + "/customers/42",
            data=b"{nope",
            headers=basic(cio_simulator),
            timeout=5,
        )
        assert resp.status_code == 400
        assert resp.json()["meta"]["errors"] == ["request body must be a JSON object"]


class TestTrackV2:
    def test_batch_applies_person_operations(self, cio_simulator):
        """The client's batch() reaches /api/v2/batch and identify/event ops are applied."""
        track_client(cio_simulator).batch(
            [
                {
                    "type": "person",
                    "identifiers": {"id": "9"},
                    "action": "identify",
                    "attributes": {"a": 1},
                },
                {
                    "type": "person",
                    "identifiers": {"id": "9"},
                    "action": "event",
                    "name": "e",
                    "id": ULID,
                },
                {
                    "type": "person",
                    "identifiers": {"id": "9"},
                    "action": "add_device",
                    "device": {"token": "t", "platform": "android"},
                },
            ]
        )
        assert cio_simulator.requests[0].path == "/api/v2/batch"
        assert cio_simulator.customer("9") == {"a": 1}
        assert [(e["name"], e["id"]) for e in cio_simulator.events("9")] == [("e", ULID)]
        assert set(cio_simulator.devices("9")) == {"t"}

    def test_batch_with_invalid_ops_is_207_with_indexes(self, cio_simulator):
        """Invalid ops in a batch are reported by batch_index with 207; valid ones apply."""
        resp = track_client(cio_simulator).batch(
            [
                {
                    "type": "person",
                    "identifiers": {"id": "1", "email": "a@b.c"},
                    "action": "identify",
                },
                {
                    "type": "person",
                    "identifiers": {"id": "2"},
                    "action": "identify",
                    "attributes": {"ok": True},
                },
                {
                    "type": "person",
                    "identifiers": {"id": "3"},
                    "action": "event",
                    "name": "e",
                    "id": "bad",
                },
                {
                    "type": "person",
                    "identifiers": {"id": "4"},
                    "action": "event",
                    "name": "e",
                    "attributes": {"x": "y" * 33_000},
                },
            ]
        )
        assert resp.status_code == 207
        errors = resp.json()["errors"]
        assert [(e["batch_index"], e["field"]) for e in errors] == [
            (0, "identifiers"),
            (2, "id"),
            (3, ""),
        ]
        assert errors[2]["reason"] == "too_large"
        assert set(errors[0]) == {"batch_index", "reason", "field", "message"}
        assert cio_simulator.customer("2") == {"ok": True}

    def test_batch_over_500kb_is_400(self, cio_simulator):
        """A batch body over 500 KB is rejected whole with the v2 error envelope."""
        op = {
            "type": "person",
            "identifiers": {"id": "1"},
            "action": "identify",
            "attributes": {"a": "x" * 900},
        }
        resp = raw_post(cio_simulator, "/api/v2/batch", {"batch": [op] * 600})
        assert resp.status_code == 400
        assert resp.json()["errors"][0]["reason"] == "too_large"
        assert cio_simulator.customer("1") is None

    def test_entity_applies_one_operation(self, cio_simulator):
        """POST /api/v2/entity applies a single person operation."""
        resp = raw_post(
            cio_simulator,
            "/api/v2/entity",
            {
                "type": "person",
                "identifiers": {"id": "5"},
                "action": "identify",
                "attributes": {"p": 1},
            },
        )
        assert (resp.status_code, resp.json()) == (200, {})
        assert cio_simulator.customer("5") == {"p": 1}

    def test_invalid_entity_is_400_with_errors(self, cio_simulator):
        """An invalid entity operation gets 400 {"errors":[{reason, field, message}]}."""
        resp = raw_post(cio_simulator, "/api/v2/entity", {"type": "robot", "action": "identify"})
        assert resp.status_code == 400
        assert resp.json()["errors"] == [
            {
                "reason": "invalid",
                "field": "type",
                "message": "type must be person, object or delivery",
            }
        ]

    def test_v2_event_ids_dedupe_with_v1(self, cio_simulator):
        """An event id seen on v1 is dropped when it arrives again in a v2 event op."""
        track_client(cio_simulator).track("1", "e", id=ULID)
        raw_post(
            cio_simulator,
            "/api/v2/entity",
            {
                "type": "person",
                "identifiers": {"id": "1"},
                "action": "event",
                "name": "e",
                "id": ULID,
            },
        )
        assert len(cio_simulator.events("1")) == 1
        assert cio_simulator.stats()["duplicates"] == 1


class TestAppApi:
    @pytest.mark.parametrize(
        "kind", ["email", "push", "sms", "in_app", "inbox_message", "whatsapp"]
    )
    def test_each_send_endpoint_records_a_delivery(self, cio_simulator, kind):
        """Each send_* method posts to /v1/send/{kind} with Bearer auth and gets a delivery id."""
        body = {"transactional_message_id": "3", "identifiers": {"id": "42"}}
        answer = getattr(app_client(cio_simulator), f"send_{kind}")(body)
        (req,) = cio_simulator.requests
        (delivery,) = cio_simulator.deliveries()
        assert (req.path, req.headers["Authorization"]) == (f"/v1/send/{kind}", "Bearer appkey")
        assert answer == {"delivery_id": delivery.delivery_id, "queued_at": delivery.queued_at}
        assert (delivery.kind, delivery.body) == (kind, body)

    def test_send_email_request_object(self, cio_simulator):
        """A SendEmailRequest is accepted and its fields are recorded as sent."""
        request = SendEmailRequest(
            transactional_message_id="9", identifiers={"email": "a@b.c"}, to="a@b.c"
        )
        app_client(cio_simulator).send_email(request)
        assert cio_simulator.deliveries()[0].body["to"] == "a@b.c"

    def test_wrong_app_key_is_401_meta_error(self, cio_simulator):
        """A wrong Bearer key gets 401 {"meta":{"error":...}} and no delivery."""
        client = APIClient(key="wrong", url=cio_simulator.api_url, retries=0)
        with pytest.raises(CustomerIOException, match=r'^401: .*"meta"'):
            client.send_push({"transactional_message_id": "1", "identifiers": {"id": "1"}})
        assert cio_simulator.deliveries() == []

    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            ({"identifiers": {"id": "1"}}, "transactional_message_id"),
            ({"transactional_message_id": "1"}, "identifiers"),
            (
                {"transactional_message_id": "1", "identifiers": {"id": "1", "email": "a@b.c"}},
                "identifiers",
            ),
        ],
    )
    def test_missing_fields_are_400(self, cio_simulator, body, fragment):
        """A send without a template id or with bad identifiers gets 400 meta.error."""
        resp = raw_post(
            cio_simulator, "/v1/send/sms", body, headers={"Authorization": "Bearer appkey"}
        )
        assert resp.status_code == 400
        assert fragment in resp.json()["meta"]["error"]

    def test_body_over_2048_kb_is_400(self, cio_simulator):
        """A send body over 2048 KB gets the documented 400 message."""
        body = {
            "transactional_message_id": "1",
            "identifiers": {"id": "1"},
            "message_data": {"x": "y" * (2048 * 1024)},
        }
        resp = raw_post(
            cio_simulator, "/v1/send/email", body, headers={"Authorization": "Bearer appkey"}
        )
        assert resp.status_code == 400
        assert resp.json() == {
            "meta": {"error": "Request entity must be JSON encoded and not exceed 2048 KB."}
        }


class TestLifecycle:
    def test_stop_closes_port_threads_and_ca_file(self):
        """After stop() the port refuses connections, no threads remain, the CA file is gone."""
        before = threading.active_count()
        sim = Simulator().start()
        with sim.trust():
            track_client(sim).identify("1")
        port, ca = sim.port, sim.ca_path
        sim.stop()
        assert threading.active_count() == before
        assert not Path(ca).exists()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass

    def test_trust_sets_and_restores_requests_ca_bundle(self, monkeypatch):
        """trust() points REQUESTS_CA_BUNDLE at the CA and restores the previous value."""
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/previous.pem")
        with Simulator() as sim:
            with sim.trust() as ca:
                assert os.environ["REQUESTS_CA_BUNDLE"] == ca == sim.ca_path
            assert os.environ["REQUESTS_CA_BUNDLE"] == "/previous.pem"

    def test_plain_http_mode(self, make_simulator):
        """tls=False serves plain HTTP and has no CA."""
        sim = make_simulator(tls=False)
        resp = requests.put(
            sim.track_url + "/customers/1", json={"a": 1}, headers=basic(sim), timeout=5
        )
        assert (sim.api_url.startswith("http://"), sim.ca_path, resp.status_code) == (
            True,
            None,
            200,
        )

    def test_twenty_concurrent_identifies_all_succeed(self, cio_simulator):
        """Twenty threads identifying at once all get 200 over their own keep-alive sessions."""
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                with track_client(cio_simulator) as cio:
                    for _ in range(5):
                        cio.identify(str(n), n=n)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert cio_simulator.stats()["statuses"] == {200: 100}
        assert cio_simulator.stats()["connections"] == 20

    def test_keep_alive_reuses_one_connection(self, cio_simulator):
        """A pooled client makes many calls over a single connection."""
        cio = track_client(cio_simulator)
        for n in range(10):
            cio.identify(str(n))
        assert cio_simulator.stats()["connections"] == 1

    def test_reset_clears_recorded_state(self, cio_simulator):
        """reset() forgets people, events and requests."""
        cio = track_client(cio_simulator)
        cio.identify("1")
        cio.track("1", "e", id=ULID)
        cio_simulator.reset()
        cio.track("1", "e", id=ULID)
        assert (cio_simulator.customer("1"), len(cio_simulator.requests)) == (None, 1)
        assert len(cio_simulator.events("1")) == 1

    def test_serve_forever_announces_and_stops(self, capsys):
        """serve_forever() prints the address and credentials and returns when stopped."""
        stop = threading.Event()
        sim = Simulator(site_id="s1", tls=False)
        thread = threading.Thread(target=serve_forever, args=(sim,), kwargs={"stop": stop})
        thread.start()
        stop.set()
        thread.join(5)
        out = capsys.readouterr().out
        assert "site_id:    s1" in out
        assert f"port:       {sim.port}" in out

    def test_new_ulid_is_valid(self):
        """Generated ULIDs pass validation and invalid strings fail."""
        assert is_ulid(new_ulid())
        assert not is_ulid("8" + "0" * 25)
        assert not is_ulid("0" * 25 + "U")


def test_recorded_bodies_are_parsed_json(cio_simulator):
    """Recorded requests hold the parsed JSON body the client sent."""
    track_client(cio_simulator).track("1", "e", data={"n": [1, 2]})
    assert json.dumps(cio_simulator.requests[0].body, sort_keys=True) == json.dumps(
        {"data": {"n": [1, 2]}, "name": "e"}, sort_keys=True
    )
