"""Policies back to configuration: the mapping form of a policy's options.

``policy_to_config(policy)`` gives the ``{kind: {option: value}}`` entry that builds an equal
policy, for options that have a configuration form (numbers, strings, flags, enums, lists,
backoffs, retry budgets and other attrs values or classes whose ``__init__`` parameters are
stored under the same names). Callables become ``module:name`` import paths.
"""

from __future__ import annotations

import enum
import importlib
from typing import Any

import attrs

from resilio.config.fields import has_options, option_fields
from resilio.policies._base import Policy

__all__ = ["UnrepresentableError", "policy_to_config", "value_to_config"]


class UnrepresentableError(ValueError):
    """An option value has no configuration form (a client object, a lambda)."""


def value_to_config(value: Any) -> Any:
    """Return the configuration form of one option value.

    Raises:
        UnrepresentableError: If the value has none.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple | frozenset | set):
        return [value_to_config(v) for v in value]
    if isinstance(value, dict):
        return {str(k): value_to_config(v) for k, v in value.items()}
    value_type: type = type(value)
    fields = option_fields(value_type) if has_options(value_type) else ()
    if attrs.has(value_type) or (fields and all(hasattr(value, f.name) for f in fields)):
        out: dict[str, Any] = {}
        kind = value_type.__dict__.get("kind")
        if isinstance(kind, str):
            out["kind"] = kind
        for f in fields:
            out[f.name] = value_to_config(getattr(value, f.name))
        return out
    if isinstance(value, type) or callable(value):
        module = getattr(value, "__module__", None)
        qualname = getattr(value, "__qualname__", "")
        if module and qualname and "<" not in qualname:
            target: Any = importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part, None)
            if target is value:
                return f"{module}:{qualname}"
    raise UnrepresentableError(f"{type(value).__name__} has no configuration form")


def policy_to_config(policy: Policy, *, include_defaults: bool = False) -> dict[str, Any]:
    """Return the configuration entry (``{kind: {...}}``) that builds an equal policy.

    Args:
        policy: A policy following the policy convention.
        include_defaults: Also list options left at their default.

    Returns:
        The entry; ``name`` is included when it differs from the kind.

    Raises:
        UnrepresentableError: If an option that is not at its default has no configuration
            form.
    """
    body: dict[str, Any] = {}
    options = policy.options
    options_type: type = type(options)
    for f in option_fields(options_type):
        value = getattr(options, f.name)
        if not include_defaults and f.default is not attrs.NOTHING and value == f.default:
            continue
        body[f.name] = value_to_config(value)
    if policy.name != policy.kind:
        body["name"] = policy.name
    return {policy.kind: body}
