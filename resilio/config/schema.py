"""The JSON Schema (draft 2020-12) of configuration files, generated from the policy types.

Plugin policy types appear as soon as they are registered. Point an editor's YAML support at the
output of ``resilio schema`` for completion and checking as you type.
"""

from __future__ import annotations

import enum
import types
import typing
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from resilio.config.durations import DURATION_PATTERN
from resilio.config.fields import (
    NO_DEFAULT,
    concrete_kinds,
    field_docs,
    has_options,
    is_duration_field,
    option_fields,
)

if TYPE_CHECKING:
    from resilio.plugins.catalog import Catalog

__all__ = ["SCHEMA_DIALECT", "json_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The JSON Schema dialect of the generated schema."""

_ENV = {"type": "string", "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"}


class _Schemas:
    def __init__(self) -> None:
        self.defs: dict[str, Any] = {
            "duration": {
                "description": "Seconds, or a string with a unit: 200ms, 10s, 5m, 1h, 7d.",
                "anyOf": [
                    {"type": "number", "minimum": 0},
                    {"type": "string", "pattern": DURATION_PATTERN},
                    _ENV,
                ],
            },
        }

    def type_schema(self, tp: Any, name: str) -> dict[str, Any]:
        if tp is Any or tp is object:
            return {}
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            parts = [self.type_schema(a, name) for a in args]
            return {} if {} in parts else {"anyOf": parts}
        if origin is typing.Literal:
            return {"enum": list(args)}
        if tp is type(None):
            return {"type": "null"}
        if tp is bool:
            return {"anyOf": [{"type": "boolean"}, _ENV]}
        if tp is int:
            return {"anyOf": [{"type": "integer"}, _ENV]}
        if tp is float or tp is timedelta:
            if is_duration_field(name, tp):
                return {"$ref": "#/$defs/duration"}
            return {"anyOf": [{"type": "number"}, _ENV]}
        if tp is str:
            return {"type": "string"}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return {"enum": [m.value for m in tp]}
        if origin is not None:
            module = getattr(origin, "__module__", "")
            if origin is type or getattr(origin, "__name__", "") == "Callable":
                return {"type": "string", "description": "An import path, module:name."}
            if origin is dict or getattr(origin, "__name__", "").endswith("Mapping"):
                value = self.type_schema(args[1], name) if len(args) == 2 else {}
                return {"type": "object", "additionalProperties": value}
            if origin in (list, tuple, set, frozenset) or module == "collections.abc":
                item = self.type_schema(args[0], name) if args else {}
                return {"type": "array", "items": item}
            return {}
        if isinstance(tp, type):
            kinds = concrete_kinds(tp)
            if kinds:
                return {
                    "oneOf": [self.object_ref(k, c, discriminated=True) for k, c in kinds.items()]
                }
            if has_options(tp):
                return self.object_ref(tp.__name__, tp, discriminated=False)
        return {}

    def object_ref(self, label: str, cls: type, *, discriminated: bool) -> dict[str, Any]:
        key = f"{cls.__module__}.{cls.__qualname__}"
        if key not in self.defs:
            self.defs[key] = {}  # placeholder against recursion
            extra = {"kind": {"const": label}} if discriminated else {}
            self.defs[key] = self.options(cls, extra, required_extra=list(extra))
        return {"$ref": f"#/$defs/{key}"}

    def options(
        self,
        cls: type,
        extra: dict[str, Any],
        required_extra: list[str],
        more_docs: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        properties: dict[str, Any] = dict(extra)
        required = list(required_extra)
        for f in option_fields(cls):
            prop = dict(self.type_schema(f.type, f.name))
            description = f.description or (more_docs or {}).get(f.name, "")
            if description:
                prop["description"] = " ".join(description.split())
            if f.default is not NO_DEFAULT and _json_value(f.default):
                prop["default"] = f.default
            properties[f.name] = prop
            if f.required:
                required.append(f.name)
        schema: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        if cls.__doc__:
            schema["description"] = cls.__doc__.strip().splitlines()[0]
        if required:
            schema["required"] = required
        return schema


def _json_value(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_json_value(v) for v in value)
    return False


def json_schema(catalog: Catalog | None = None) -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of a configuration file.

    Args:
        catalog: The registered policy types and store kinds (default: from the plugins).

    Returns:
        The schema, as JSON-serialisable data.
    """
    if catalog is None:
        from resilio.plugins.manager import catalog as _catalog

        catalog = _catalog()
    schemas = _Schemas()
    entries = []
    defaults: dict[str, Any] = {}
    for kind, cls in sorted(catalog.policy_types.items().items()):
        options_class: type = cls.options_class  # type: ignore[attr-defined]
        body = schemas.options(options_class, {"name": {"type": "string"}}, [], field_docs(cls))
        fields = option_fields(options_class)
        schemas.defs[f"policy.{kind}"] = body
        forms: list[dict[str, Any]] = [
            {"$ref": f"#/$defs/policy.{kind}"},
            {"type": "null"},
            {
                "type": "object",
                "properties": {"ref": {"type": "string"}},
                "required": ["ref"],
                "additionalProperties": False,
            },
        ]
        if fields:
            forms.insert(
                1,
                schemas.type_schema(fields[0].type, fields[0].name) or {"not": {"type": "object"}},
            )
        entries.append(
            {
                "type": "object",
                "properties": {kind: {"anyOf": forms}},
                "required": [kind],
                "additionalProperties": False,
            }
        )
        relaxed = dict(body)
        relaxed.pop("required", None)
        defaults[kind] = relaxed
    schemas.defs["entry"] = {
        "description": "One policy: its type name, then its options (or {ref: shared-name}).",
        "oneOf": entries,
    }
    stores = []
    for kind in sorted(catalog.store_kinds):
        described = catalog.store_kinds.options(kind)
        properties: dict[str, Any] = {"kind": {"const": kind}}
        if described is not None:
            properties.update((k, schemas.type_schema(tp, k)) for k, tp in described.items())
        stores.append(
            {
                "type": "object",
                "properties": properties,
                "required": ["kind"],
                "additionalProperties": described is None,
            }
        )
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "https://resilio.readthedocs.io/schema/config.json",
        "title": "resilio configuration",
        "type": "object",
        "additionalProperties": False,
        "required": ["pipelines"],
        "properties": {
            "version": {"const": 1},
            "defaults": {
                "description": "Options merged into every policy of that type.",
                "type": "object",
                "properties": defaults,
                "additionalProperties": False,
            },
            "stores": {
                "description": "Named stores that policies refer to with store: <name>.",
                "type": "object",
                "additionalProperties": {"oneOf": stores},
            },
            "outbox": {
                "description": "The durable queue for fallback: {enqueue: outbox}.",
                "type": "object",
                "oneOf": [
                    {
                        "properties": {
                            "kind": {"enum": ["sqlite", "redis"]},
                            "path": {"type": "string"},
                            "synchronous": {"enum": ["normal", "full"]},
                            "url": {"type": "string"},
                            "name": {"type": "string"},
                        },
                        "additionalProperties": False,
                    },
                    {
                        "properties": {
                            "store": {
                                "description": "A sqlite or redis entry of 'stores' to keep "
                                "the outbox in.",
                                "type": "string",
                            },
                            "synchronous": {"enum": ["normal", "full"]},
                            "name": {"type": "string"},
                        },
                        "required": ["store"],
                        "additionalProperties": False,
                    },
                ],
            },
            "policies": {
                "description": "Shared policy instances, referred to with {ref: <name>}.",
                "type": "object",
                "additionalProperties": {"$ref": "#/$defs/entry"},
            },
            "pipelines": {
                "description": "Pipelines by name: their policies, outermost first.",
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"$ref": "#/$defs/entry"}},
            },
        },
        "$defs": schemas.defs,
    }
