"""ULID validation and generation (https://github.com/ulid/spec)."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALID = frozenset(_ALPHABET + _ALPHABET.lower())


def is_ulid(value: object) -> bool:
    """Return whether ``value`` is a valid ULID string.

    A ULID is 26 characters of Crockford base32 (case-insensitive). The first character encodes
    the top bits of a 48-bit timestamp, so it cannot exceed ``7``.

    Args:
        value: The candidate value, of any type.

    Returns:
        True for a well-formed ULID string, False otherwise.
    """
    return (
        isinstance(value, str)
        and len(value) == 26
        and value[0] in "01234567"
        and _VALID.issuperset(value)
    )


def new_ulid(now: float | None = None) -> str:
    """Return a new random ULID.

    Args:
        now: Wall-clock time in seconds for the timestamp part; the current time by default.

    Returns:
        A 26-character uppercase ULID.
    """
    millis = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    number = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[number & 31])
        number >>= 5
    return "".join(reversed(chars))
