"""Durations in configuration: numbers of seconds, or strings with a unit (``200ms``, ``10s``)."""

from __future__ import annotations

import math
import re
from datetime import timedelta

__all__ = ["DURATION_PATTERN", "parse_duration"]

DURATION_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*(ms|s|m|h|d)\s*$"
"""The pattern a duration string matches (also used in the JSON Schema)."""

_DURATION = re.compile(DURATION_PATTERN)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Return a duration in seconds.

    Args:
        value: A non-negative number of seconds, a :class:`~datetime.timedelta`, or a string
            ``"<number><unit>"`` with unit ``ms``, ``s``, ``m``, ``h`` or ``d`` (``"1.5s"``,
            ``"200ms"``, ``"7d"``).

    Returns:
        The duration in seconds.

    Raises:
        ValueError: If ``value`` is not a finite non-negative duration.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"expected a duration like 200ms, 10s, 5m, 1h or a number of seconds, "
                f"found {value!r}"
            )
        number = value.strip().removesuffix(match.group(2)).strip()
        seconds = float(number) * _UNITS[match.group(2)]
    else:
        raise ValueError(  # noqa: TRY004 - configuration errors are ValueErrors
            f"expected a duration, found {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a non-negative duration, found {value!r}")
    return seconds
