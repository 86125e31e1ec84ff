"""Tests of the generated JSON Schema: dialect, policy types (plugins too), option shapes."""

from __future__ import annotations

import json

import resilio
from resilio.config import json_schema, load_config


def test_schema_dialect_and_sections() -> None:
    """The schema is draft 2020-12 with every top-level section and no others."""
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["properties"]) == {
        "version",
        "defaults",
        "stores",
        "outbox",
        "policies",
        "pipelines",
    }
    assert schema["additionalProperties"] is False
    json.dumps(schema)  # serialisable


def test_builtin_policy_options_described() -> None:
    """A built-in policy's options appear with types, defaults and descriptions."""
    retry = json_schema()["$defs"]["policy.retry"]
    props = retry["properties"]
    assert props["attempts"]["anyOf"][0] == {"type": "integer"}
    assert props["attempts"]["default"] == 3
    assert props["attempts"]["description"].startswith("Attempts in all")
    assert props["max_delay"]["$ref"] == "#/$defs/duration"
    assert retry["additionalProperties"] is False
    backoff_kinds = (
        {ref["$ref"].rsplit(".", 1)[-1] for ref in props["backoff"]["anyOf"][0]["oneOf"]}
        if "anyOf" in props["backoff"]
        else {ref["$ref"].rsplit(".", 1)[-1] for ref in props["backoff"]["oneOf"]}
    )
    assert backoff_kinds == {"Constant", "Linear", "Exponential", "DecorrelatedJitter"}


def test_plugin_policy_appears(dummy_plugin: object) -> None:
    """A plugin's policy type is in the schema, with its enum and literal options."""
    schema = load_config({"pipelines": {}}, telemetry=False).json_schema()
    dummy = schema["$defs"]["policy.dummy"]["properties"]
    assert dummy["mode"] == {
        "enum": ["fast", "slow"],
        "default": "fast",
        "description": "One of two literals.",
    }
    assert dummy["color"]["enum"] == ["red", "blue"]
    kinds = [next(iter(e["properties"])) for e in schema["$defs"]["entry"]["oneOf"]]
    assert "dummy" in kinds
    assert "counter" in kinds


def test_scalar_form_is_allowed() -> None:
    """A timeout entry may be a bare duration (its first option)."""
    entry = next(
        e for e in json_schema()["$defs"]["entry"]["oneOf"] if "timeout" in e["properties"]
    )
    forms = entry["properties"]["timeout"]["anyOf"]
    assert {"$ref": "#/$defs/duration"} in forms
    assert callable(resilio.load_config)  # exported


def test_store_kinds_and_their_options_appear() -> None:
    """Each store kind is one alternative listing its options; durations use the duration type."""
    stores = json_schema()["properties"]["stores"]["additionalProperties"]["oneOf"]
    by_kind = {s["properties"]["kind"]["const"]: s for s in stores}
    assert set(by_kind) == {"memory", "sqlite", "redis"}
    assert set(by_kind["redis"]["properties"]) == {
        "kind",
        "url",
        "prefix",
        "socket_timeout",
        "cooldown",
    }
    assert by_kind["redis"]["properties"]["cooldown"] == {"$ref": "#/$defs/duration"}
    assert by_kind["memory"]["additionalProperties"] is False
