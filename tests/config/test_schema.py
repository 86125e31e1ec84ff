"""Tests of the generated JSON Schema: dialect, policy types (plugins too), option shapes."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import resilio
from resilio import ConfigError
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


ROOT = Path(__file__).resolve().parents[2]

VALID = {
    "version": 1,
    "pipelines": {
        "p": [
            {"timeout": "10s"},
            {"retry": {"attempts": 3, "backoff": {"kind": "constant", "seconds": "1s"}}},
            {"circuit_breaker": {"failure_threshold": 5}},
        ]
    },
}


def _validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _yaml_blocks(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def _error_paths(validator: Any, document: Any) -> list[list[Any]]:
    return sorted(list(error.absolute_path) for error in validator.iter_errors(document))


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    """The generated schema passes the draft 2020-12 metaschema (checked by jsonschema)."""
    _validator()


@pytest.mark.parametrize(
    ("document", "index"), [("README.md", 0), ("docs/configuration.md", 0)], ids=str
)
def test_documented_examples_are_valid(document: str, index: int) -> None:
    """The README's example file and the reference's complete file validate, and load."""
    validator = _validator()
    example = _yaml_blocks(ROOT / document)[index]
    assert "pipelines" in example
    assert _error_paths(validator, example) == []


def test_readme_example_loads() -> None:
    """The same README example is accepted by load_config (schema and loader agree)."""
    example = _yaml_blocks(ROOT / "README.md")[0]
    registry = load_config(example, telemetry=False)
    assert set(registry.pipelines) == {"orders.create"}


@pytest.mark.parametrize(
    ("mistake", "path"),
    [
        (lambda d: d.update(extra=1), []),
        (lambda d: d["pipelines"]["p"].append({"retyr": {}}), ["pipelines", "p", 3]),
        (lambda d: d["pipelines"]["p"][1]["retry"].update(attemps=3), ["pipelines", "p", 1]),
        (lambda d: d["pipelines"]["p"].__setitem__(0, {"timeout": "soon"}), ["pipelines", "p", 0]),
        (lambda d: d.update(version="one"), ["version"]),
    ],
    ids=["unknown section", "unknown policy type", "unknown option", "bad duration", "version"],
)
def test_one_mistake_is_one_error_at_its_place(
    mistake: Callable[[dict[str, Any]], None], path: list[Any]
) -> None:
    """A valid file validates; each mistake added to it is reported at its own path."""
    validator = _validator()
    assert _error_paths(validator, VALID) == []
    document = copy.deepcopy(VALID)
    mistake(document)
    assert _error_paths(validator, document) == [path]
    with pytest.raises(ConfigError):
        load_config(document, telemetry=False)
