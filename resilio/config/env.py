"""``${VAR}`` and ``${VAR:-default}`` references to environment variables in configuration."""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["has_reference", "substitute"]

_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{([^}]*)\}?")


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
