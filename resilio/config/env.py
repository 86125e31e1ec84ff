"""``${VAR}`` and ``${VAR:-default}`` references to environment variables in configuration.

A quoted YAML scalar that is exactly one reference (``"${ATTEMPTS:-3}"``) becomes an
:class:`EnvText`: a string that the loader converts to the option's type with the YAML 1.2 core
scalar rules (:func:`core_scalar`) when the option is not a string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["EnvText", "core_scalar", "has_reference", "is_single_reference", "substitute"]

_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{([^}]*)\}?")
_SINGLE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}")

_NULL = re.compile(r"null|Null|NULL|~|")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+")
_OCT = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_INF = re.compile(r"([-+]?)\.(?:inf|Inf|INF)")
_NAN = re.compile(r"\.(?:nan|NaN|NAN)")


class EnvText(str):
    """The text of a quoted scalar that was exactly one environment reference, substituted.

    Where an option expects a string it is that string; where it expects anything else it is
    read with :func:`core_scalar` first, so ``attempts: "${ATTEMPTS:-3}"`` is the integer 3.
    """

    __slots__ = ()


def is_single_reference(text: str) -> bool:
    """Whether ``text`` is exactly one ``${NAME}`` or ``${NAME:-default}`` reference."""
    return _SINGLE.fullmatch(text) is not None


def core_scalar(text: str) -> Any:
    """Read a plain scalar with the YAML 1.2 core schema's rules.

    ``null``/``Null``/``NULL``/``~``/empty is ``None``; ``true``/``false`` (also capitalised or
    upper case) are booleans; ``[-+]?[0-9]+``, ``0o17`` and ``0x1F`` are integers; decimal and
    exponent forms (``1.5``, ``1e3``), ``.inf`` and ``.nan`` are floats; anything else is the
    string itself.

    Args:
        text: The scalar's text.

    Returns:
        The value.
    """
    if _NULL.fullmatch(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.fullmatch(text):
        return int(text)
    if _OCT.fullmatch(text):
        return int(text[2:], 8)
    if _HEX.fullmatch(text):
        return int(text[2:], 16)
    if _FLOAT.fullmatch(text):
        return float(text)
    inf = _INF.fullmatch(text)
    if inf:
        return -math.inf if inf.group(1) == "-" else math.inf
    if _NAN.fullmatch(text):
        return math.nan
    return str(text)


def has_reference(text: str) -> bool:
    """Whether ``text`` contains a ``$`` that substitution would look at."""
    return "$" in text


def substitute(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Replace environment references in ``text``.

    ``${VAR}`` is the variable's value, ``${VAR:-default}`` the value or ``default`` when the
    variable is unset or empty, and ``$$`` a literal ``$``.

    Args:
        text: The string from the configuration.
        environ: The environment to read.

    Returns:
        The new text and a list of problems (a missing variable, a malformed reference).
    """
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$$":
            return "$"
        name, default, bad = match.group(1), match.group(2), match.group(3)
        if name is None:
            problems.append(
                f"malformed environment reference {'${' + (bad or '')!s}..., expected "
                "${NAME} or ${NAME:-default}"
            )
            return whole
        value = environ.get(name)
        if value:
            return value
        if default is not None:
            return default
        if value is None:
            problems.append(
                f"environment variable {name} is not set (use ${{{name}:-default}} for a default)"
            )
        return ""

    return _REFERENCE.sub(replace, text), problems
