"""Requests the real client sends, and routes the simulator serves, checked against the specs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

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
    operations: list[tuple[str, re.Pattern[str]]] = []
    for template, item in spec["paths"].items():
        pattern = re.compile("^" + prefix + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")
        operations.extend(
            (method.upper(), pattern) for method in item if method not in ("parameters",)
        )
    return operations


def in_spec(operations: list[tuple[str, re.Pattern[str]]], method: str, path: str) -> bool:
    return any(m == method and p.match(path) for m, p in operations)


def test_real_client_track_requests_match_the_track_spec(cio_simulator: Any) -> None:
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


def test_real_client_sends_match_the_app_spec(cio_simulator: Any) -> None:
    """Transactional sends the real client makes use paths and methods the App spec lists."""
    operations = spec_operations(APP_SPEC, prefix="/v1")
    client = APIClient(**cio_simulator.api_client_kwargs(), retries=0)
    body = {"transactional_message_id": "1", "identifiers": {"id": "1"}}
    client.send_email(body)
    client.send_push(body)
    assert [in_spec(operations, r.method, r.path) for r in cio_simulator.requests] == [True, True]


def test_every_simulated_track_endpoint_is_in_the_spec() -> None:
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


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def shape_errors(
    spec: dict[str, Any], schema: dict[str, Any], value: Any, at: str = "$"
) -> list[str]:
    """Where ``value`` departs from ``schema``: a wrong type, or a declared property missing."""
    schema = _resolve(spec, schema)
    kinds = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool}
    kind = schema.get("type")
    if kind in kinds and not isinstance(value, kinds[kind]):
        return [f"{at}: expected {kind}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{at}: {value!r} not in {schema['enum']}"]
    problems = []
    if kind == "object":
        for name, sub in schema.get("properties", {}).items():
            if name not in value:
                problems.append(f"{at}.{name}: missing")
            else:
                problems += shape_errors(spec, sub, value[name], f"{at}.{name}")
    if kind == "array":
        for index, item in enumerate(value):
            problems += shape_errors(spec, schema.get("items", {}), item, f"{at}[{index}]")
    return problems


def response_schema(spec: dict[str, Any], path: str, method: str, status: int) -> Any:
    answer = _resolve(spec, spec["paths"][path][method]["responses"][str(status)])
    return answer.get("content", {}).get("application/json", {}).get("schema")


@pytest.fixture
def track_spec() -> dict[str, Any]:
    if not TRACK_SPEC.exists():
        pytest.skip(f"spec not available: {TRACK_SPEC.name}")
    spec: dict[str, Any] = json.loads(TRACK_SPEC.read_text())
    return spec


def _answer(sim: Any, method: str, path: str, body: Any = None, auth: Any = None) -> Any:
    import requests

    auth = auth or (sim.site_id, sim.api_key)
    url = f"https://{sim.host}:{sim.port}{path}"
    return requests.request(method, url, json=body, auth=auth, verify=sim.ca_path, timeout=5)


ULID = "01J0000000000000000000000A"
BAD_OP = {"type": "person", "action": "event", "identifiers": {"id": "1"}, "name": ""}
GOOD_OP = {"type": "person", "action": "event", "identifiers": {"id": "1"}, "name": "e", "id": ULID}
ERROR_CASES = [
    (
        "v1 400",
        "post",
        "/api/v1/customers/{identifier}/events",
        "/api/v1/customers/1/events",
        {"name": "n" * 101},
        400,
    ),
    (
        "merge 400",
        "post",
        "/api/v1/merge_customers",
        "/api/v1/merge_customers",
        {"primary": {"id": "1", "email": "a@b.c"}, "secondary": {"id": "2"}},
        400,
    ),
    ("entity 400", "post", "/api/v2/entity", "/api/v2/entity", BAD_OP, 400),
    ("batch 400", "post", "/api/v2/batch", "/api/v2/batch", {"batch": []}, 400),
    ("batch 207", "post", "/api/v2/batch", "/api/v2/batch", {"batch": [GOOD_OP, BAD_OP]}, 207),
]


@pytest.mark.parametrize(
    ("case", "method", "template", "path", "body", "status"),
    ERROR_CASES,
    ids=[case[0] for case in ERROR_CASES],
)
def test_answers_have_the_shape_the_spec_documents(
    cio_simulator: Any,
    track_spec: dict[str, Any],
    case: str,
    method: str,
    template: str,
    path: str,
    body: Any,
    status: int,
) -> None:
    """Each documented answer (v1 meta.errors, merge meta.error, v2 errors, 207) fits its schema."""
    answer = _answer(cio_simulator, method.upper(), path, body)
    assert answer.status_code == status, case
    schema = response_schema(track_spec, template, method, status)
    assert schema is not None, case
    assert shape_errors(track_spec, schema, answer.json()) == [], case


def test_real_client_sees_the_207_errors_the_spec_documents(
    cio_simulator: Any, track_spec: dict[str, Any]
) -> None:
    """The real client's batch() gets a 207 whose body lists the refused operation by index."""
    cio = CustomerIO(**cio_simulator.client_kwargs(), retries=0)
    response = cio.batch([GOOD_OP, BAD_OP])
    assert response.status_code == 207
    schema = response_schema(track_spec, "/api/v2/batch", "post", 207)
    assert shape_errors(track_spec, schema, response.json()) == []
    assert [e["batch_index"] for e in response.json()["errors"]] == [1]


def test_wrong_credentials_get_the_documented_401(
    cio_simulator: Any, track_spec: dict[str, Any]
) -> None:
    """A wrong Track key gets 401 on every endpoint the spec documents 401 for, with no body."""
    answer = _answer(cio_simulator, "PUT", "/api/v1/customers/1", {}, auth=("site", "wrong"))
    assert answer.status_code == 401
    assert "401" in track_spec["paths"]["/api/v1/customers/{identifier}"]["put"]["responses"]
    assert response_schema(track_spec, "/api/v1/customers/{identifier}", "put", 401) is None


def test_region_answer_has_the_documented_fields(
    cio_simulator: Any, track_spec: dict[str, Any]
) -> None:
    """/accounts/region answers url, region and environment_id; url is the simulator's own."""
    answer = _answer(cio_simulator, "GET", "/api/v1/accounts/region")
    schema = dict(response_schema(track_spec, "/api/v1/accounts/region", "get", 200))
    body = answer.json()
    assert shape_errors(track_spec, schema, {**body, "url": "https://track.customer.io"}) == []
    assert body["url"] == f"https://{cio_simulator.host}:{cio_simulator.port}"
