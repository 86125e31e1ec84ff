"""ULIDs for Customer.io's event deduplication (``id`` on events, pages and screens).

Customer.io ignores an event whose ``id`` it has already received, so an event id made once per
logical call and reused on every retry and outbox replay makes delivery exactly-once.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["is_ulid", "new_ulid"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALID = frozenset(_ALPHABET + _ALPHABET.lower())
_lock = threading.Lock()
_last = (0, 0)  # (milliseconds, 80-bit randomness) of the previous ULID


def new_ulid(now: float | None = None) -> str:
    """Return a new ULID, monotonic within this process.

    Two ULIDs made in the same millisecond differ by incrementing the random part, so they sort
    in the order they were made.

    Args:
        now: Wall-clock seconds for the timestamp part (default: :func:`time.time`).

    Returns:
        A 26-character upper-case ULID.
    """
    global _last
    millis = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    with _lock:
        last_ms, last_rand = _last
        if millis <= last_ms and last_rand < (1 << 80) - 1:
            millis, rand = last_ms, last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last = (millis, rand)
    number = (millis << 80) | rand
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[number & 31])
        number >>= 5
    return "".join(reversed(chars))


def is_ulid(value: object) -> bool:
    """Return whether ``value`` is a well-formed ULID string.

    Args:
        value: Any value.

    Returns:
        True for 26 Crockford base32 characters whose timestamp fits in 48 bits.
    """
    return (
        isinstance(value, str)
        and len(value) == 26
        and value[0] in "01234567"
        and all(char in _VALID for char in value)
    )
