"""Requests the real client sends, and routes the simulator serves, checked against the specs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from customerio import APIClient, CustomerIO

from resilio_customerio.testing import ENDPOINTS
from resilio_customerio.testing._routes import route

SPECS = Path(__file__).parents[2] / "../shared/specs"
TRACK_SPEC = SPECS / "customerio-track-openapi.json"
APP_SPEC = SPECS / "customerio-transactional-openapi.yml"


def spec_operations(path: Path, prefix: str = "") -> list[tuple[str, re.Pattern[str]]]:
    if not path.exists():
        pytest.skip(f"spec not available: {path.name}")
    text = path.read_text()
    spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    operations = []
    for template, item in spec["paths"].items():
        pattern = re.compile("^" + prefix + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")
        operations.extend(
            (method.upper(), pattern) for method in item if method not in ("parameters",)
        )
    return operations


def in_spec(operations: list[tuple[str, re.Pattern[str]]], method: str, path: str) -> bool:
    return any(m == method and p.match(path) for m, p in operations)


def test_real_client_track_requests_match_the_track_spec(cio_simulator):
    """Every Track request the real client sends uses a path and method from the spec."""
    operations = spec_operations(TRACK_SPEC)
    cio = CustomerIO(**cio_simulator.client_kwargs(), retries=0)
    cio.identify("u 1/é", a=1)
    cio.track("u 1/é", "e", data={"x": 1})
    cio.track_anonymous("anon", "e")
    cio.pageview("1", "/home")
    cio.backfill("1", "e", 1_700_000_000)
    cio.add_device("1", "d/1", "ios")
    cio.delete_device("1", "d/1")
    cio.suppress("1")
    cio.unsuppress("1")
    cio.merge_customers("id", "1", "id", "2")
    cio.delete("1")
    cio.batch([{"type": "person", "identifiers": {"id": "1"}, "action": "identify"}])
    recorded = cio_simulator.requests
    assert len(recorded) == 12
    assert {r.status for r in recorded} == {200}
    assert [(r.method, r.path) for r in recorded if not in_spec(operations, r.method, r.path)] == []


def test_real_client_sends_match_the_app_spec(cio_simulator):
    """Transactional sends the real client makes use paths and methods the App spec lists."""
    operations = spec_operations(APP_SPEC, prefix="/v1")
    client = APIClient(**cio_simulator.api_client_kwargs(), retries=0)
    body = {"transactional_message_id": "1", "identifiers": {"id": "1"}}
    client.send_email(body)
    client.send_push(body)
    assert [in_spec(operations, r.method, r.path) for r in cio_simulator.requests] == [True, True]


def test_every_simulated_track_endpoint_is_in_the_spec():
    """Each Track route the simulator serves corresponds to an operation in the spec."""
    operations = spec_operations(TRACK_SPEC)
    samples = {
        "region": ("GET", "/api/v1/accounts/region"),
        "identify": ("PUT", "/api/v1/customers/x"),
        "delete": ("DELETE", "/api/v1/customers/x"),
        "track": ("POST", "/api/v1/customers/x/events"),
        "add_device": ("PUT", "/api/v1/customers/x/devices"),
        "delete_device": ("DELETE", "/api/v1/customers/x/devices/d"),
        "suppress": ("POST", "/api/v1/customers/x/suppress"),
        "unsuppress": ("POST", "/api/v1/customers/x/unsuppress"),
        "track_anonymous": ("POST", "/api/v1/events"),
        "merge_customers": ("POST", "/api/v1/merge_customers"),
        "entity": ("POST", "/api/v2/entity"),
        "batch": ("POST", "/api/v2/batch"),
    }
    assert set(samples) == {name for name in ENDPOINTS if not name.startswith("send_")}
    for name, (method, path) in samples.items():
        assert route(method, path).name == name
        assert in_spec(operations, method, path), name
