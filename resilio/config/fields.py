"""What a policy's options look like: attrs fields, their types, defaults and descriptions.

The configuration loader and the JSON Schema generator both read policy options through this
module, so a plugin's policy type is declarable in YAML as soon as it follows the policy
convention (a frozen attrs ``options_class``). A plain class whose ``__init__`` parameters are
all annotated (like :class:`resilio.RetryBudget`) is described by its signature, so its mapping
form gets the same conversions (durations), errors and schema as an attrs class.
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
import typing
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs

__all__ = [
    "NO_DEFAULT",
    "OptionField",
    "concrete_kinds",
    "field_docs",
    "has_options",
    "is_duration_field",
    "option_fields",
]

NO_DEFAULT: Any = attrs.NOTHING
"""The default of a required field."""

# Float fields are durations unless their name says they are a rate, a ratio or a factor.
_NOT_DURATION = {
    "rate",
    "ratio",
    "fraction",
    "factor",
    "multiplier",
    "percent",
    "percentage",
    "jitter",
    "weight",
    "tokens",
    "burst",
    "capacity",
    "permits",
}


@attrs.frozen
class OptionField:
    """One option of a policy (or of a nested value such as a backoff).

    Attributes:
        name: The parameter name, the same in code and in YAML.
        type: The resolved type annotation (``Any`` if it cannot be resolved).
        default: The default value, or :data:`NO_DEFAULT` if the option is required.
        description: The option's description from the class docstring, if any.
    """

    name: str
    type: Any
    default: Any
    description: str = ""

    @property
    def required(self) -> bool:
        """Whether the option has no default."""
        return self.default is NO_DEFAULT


def is_duration_field(name: str, tp: Any) -> bool:
    """Whether a field accepts duration strings (``10s``): a float or timedelta not named a rate."""
    if _mentions(tp, timedelta):
        return True
    if not _mentions(tp, float):
        return False
    if "_per_" in name:  # retries_per_second: a rate
        return False
    return not (set(name.split("_")) & _NOT_DURATION)


def _mentions(tp: Any, target: type) -> bool:
    if tp is target:
        return True
    return any(_mentions(arg, target) for arg in typing.get_args(tp))


def field_docs(cls: type) -> dict[str, str]:
    """Return the descriptions of the ``Attributes:``/``Args:`` entries of a class docstring."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        text = klass.__doc__ or ""
        section = False
        current: str | None = None
        for line in text.splitlines():
            stripped = line.strip()
            if stripped in ("Attributes:", "Args:", "Arguments:", "Parameters:"):
                section = True
                current = None
                continue
            if section and re.match(r"^[A-Z][A-Za-z ]*:$", stripped):
                section = False
                continue
            if not section:
                continue
            match = re.match(r"^(\w+)(?: \([^)]*\))?: (.*)$", stripped)
            if match and line.startswith(" " * 4) and not line.startswith(" " * 9):
                current = match.group(1)
                docs[current] = match.group(2)
            elif current and stripped:
                docs[current] += " " + stripped
    return docs


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:
        hints: dict[str, Any] = {}
        module = sys.modules.get(cls.__module__)
        namespace = dict(vars(module)) if module is not None else {}
        for field in attrs.fields(cls):
            tp = field.type
            if isinstance(tp, str):
                try:
                    tp = eval(tp, namespace)  # noqa: S307 - an annotation of a registered class
                except Exception:
                    tp = Any
            hints[field.name] = tp if tp is not None else Any
        return hints


@functools.cache
def option_fields(cls: type) -> tuple[OptionField, ...]:
    """Return the options of an attrs class (or of a plain class's ``__init__``), in order.

    Private fields (``_x``) and fields with ``init=False`` are not options.

    Args:
        cls: A (frozen) attrs class, or a class for which :func:`has_options` is true.

    Returns:
        One :class:`OptionField` per option.
    """
    if not attrs.has(cls):
        return _init_fields(cls)
    hints = _hints(cls)
    docs = field_docs(cls)
    out = []
    for field in attrs.fields(cls):
        if not field.init or field.name.startswith("_"):
            continue
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            factory: Callable[..., Any] = default.factory
            default = factory() if not default.takes_self else NO_DEFAULT
        name = field.alias or field.name
        out.append(OptionField(name, hints.get(field.name, Any), default, docs.get(name, "")))
    return tuple(out)


def _init_parameters(cls: type) -> list[inspect.Parameter] | None:
    init = getattr(cls, "__init__", object.__init__)
    if init is object.__init__ or not inspect.isfunction(init):
        return None
    try:
        params = list(inspect.signature(init).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if not params or any(
        p.kind not in plain or p.annotation is inspect.Parameter.empty for p in params
    ):
        return None
    return params


def has_options(cls: Any) -> bool:
    """Whether a mapping can describe ``cls``.

    True for an attrs class, and for a class whose ``__init__`` takes only annotated, named
    parameters.
    """
    if not isinstance(cls, type):
        return False
    return attrs.has(cls) or _init_parameters(cls) is not None


def _init_fields(cls: type) -> tuple[OptionField, ...]:
    params = _init_parameters(cls) or []
    try:
        hints = typing.get_type_hints(cls.__init__)  # type: ignore[misc]
    except Exception:
        hints = {}
    docs = field_docs(cls)
    return tuple(
        OptionField(
            p.name,
            hints.get(p.name, Any),
            NO_DEFAULT if p.default is inspect.Parameter.empty else p.default,
            docs.get(p.name, ""),
        )
        for p in params
        if not p.name.startswith("_")
    )


def concrete_kinds(base: type) -> dict[str, type]:
    """Return the attrs subclasses of ``base`` (itself included) that declare a ``kind``.

    This is how a mapping form like ``{kind: exponential, ...}`` finds its class.
    """
    found: dict[str, type] = {}
    pending = [base]
    while pending:
        cls = pending.pop()
        kind = cls.__dict__.get("kind")
        if isinstance(kind, str) and attrs.has(cls) and kind not in found:
            found[kind] = cls
        pending.extend(cls.__subclasses__())
    return found
