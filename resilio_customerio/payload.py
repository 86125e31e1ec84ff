"""Payload hygiene: normalise values to JSON and check Customer.io's size limits before sending.

The ``customerio`` client converts datetimes and ``NaN`` but sends ``date``, ``Decimal``,
``UUID`` and infinity to ``json.dumps``, which fails after the client already announced a retry
loop. The adapter normalises every payload once, before the first attempt, so what is stored in
an outbox is exactly what is sent, and checks the documented limits so a request bound to fail
never makes a round trip. Errors name the limit that was exceeded, never the value.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import re
import uuid
from collections.abc import Mapping
from typing import Any

from resilio_customerio.errors import InvalidRequest, PayloadTooLarge

__all__ = [
    "MAX_ATTRIBUTE_NAME_BYTES",
    "MAX_ATTRIBUTES",
    "MAX_ATTRIBUTE_VALUE_BYTES",
    "MAX_BATCH_BYTES",
    "MAX_EVENT_DATA_BYTES",
    "MAX_EVENT_NAME_BYTES",
    "MAX_ID_BYTES",
    "MAX_TIMESTAMP",
    "MAX_TRANSACTIONAL_BYTES",
    "MAX_V2_OP_BYTES",
    "check_attributes",
    "check_event",
    "check_id",
    "check_size",
    "normalise",
    "size",
    "to_timestamp",
]

MAX_ID_BYTES = 150
"""Identifiers (customer, device, anonymous ids)."""
MAX_ATTRIBUTE_NAME_BYTES = 150
"""Attribute names."""
MAX_ATTRIBUTE_VALUE_BYTES = 1000
"""One attribute's value (strings by UTF-8 bytes, other values by their JSON text)."""
MAX_ATTRIBUTES = 300
"""Unique attributes of one person: a single call with more is bound to be refused."""
MAX_EVENT_NAME_BYTES = 100
"""Event names."""
MAX_EVENT_DATA_BYTES = 100_000
"""An event's data object, as JSON."""
MAX_V2_OP_BYTES = 32 * 1024
"""One v2 operation (``/api/v2/entity`` or one item of a batch)."""
MAX_BATCH_BYTES = 500 * 1024
"""One ``/api/v2/batch`` request."""
MAX_TRANSACTIONAL_BYTES = 2048 * 1024
"""One transactional send request."""
MAX_TIMESTAMP = 4_102_444_800
"""2100-01-01T00:00:00Z in epoch seconds: later timestamps are refused as implausible."""

_EPOCH_DATE = dt.date(1970, 1, 1)
_RESERVED_ATTRIBUTES = frozenset({"cio_relationships"})


def to_timestamp(value: dt.datetime | dt.date) -> int:
    """Return integer epoch seconds for a datetime or date.

    Naive datetimes are taken as UTC (as the client does); aware ones are converted. A date is
    midnight UTC of that day.

    Args:
        value: The datetime or date.

    Returns:
        Seconds since the epoch.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return math.floor(value.timestamp())
    return (value - _EPOCH_DATE).days * 86_400


def normalise(value: Any, operation: str, where: str = "payload") -> Any:
    """Return a JSON-ready copy of ``value``.

    Datetimes and dates at any depth become integer epoch seconds; ``Decimal`` becomes ``int``
    or ``float``; ``UUID`` becomes ``str``; ``NaN`` and infinities become ``None``; sets and
    tuples become lists (sets sorted when their items allow); enums become their value; mapping
    keys become strings.

    Args:
        value: The value to normalise.
        operation: The operation's name, for errors.
        where: Where the value sits, for errors (a field path, never a value).

    Returns:
        The normalised copy.

    Raises:
        InvalidRequest: If a value has a type JSON cannot represent (bytes, objects).
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date):
        return to_timestamp(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return normalise(value.value, operation, where)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) or isinstance(key, enum.Enum):
                raise InvalidRequest(operation, None, f"a key in {where} is not a string")
            name = key if isinstance(key, str) else json.dumps(key)
            out[name] = normalise(item, operation, f"{where}.{_label(name)}")
        return out
    if isinstance(value, list | tuple):
        return [normalise(item, operation, f"{where}[]") for item in value]
    if isinstance(value, set | frozenset):
        items = [normalise(item, operation, f"{where}[]") for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    raise InvalidRequest(
        operation, None, f"{where} holds a {type(value).__name__}, which JSON cannot represent"
    )


_SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,40}")


def is_safe_name(name: str) -> bool:
    """Whether a name from the input may be shown in an error or report: a short identifier.

    Keys of a payload are data too: one that is an email address, a phone number or free text
    may be personal, so only names like ``plan`` or ``user.plan_2`` are ever echoed.

    Args:
        name: A field, attribute, data key or operation name read from the input.

    Returns:
        ``True`` if it matches ``[A-Za-z_][A-Za-z0-9_.-]{0,40}``.
    """
    return _SAFE_NAME.fullmatch(name) is not None


def _label(name: str) -> str:
    return name if is_safe_name(name) else "<key not shown>"


def size(value: Any) -> int:
    """Return a value's size as Customer.io counts it.

    Strings count their UTF-8 bytes; anything else counts its JSON text as ``requests`` sends
    it (``json.dumps`` defaults), so a request's size is what goes over the wire.

    Args:
        value: A normalised (JSON-ready) value.

    Returns:
        The size in bytes.
    """
    if isinstance(value, str):
        return len(value.encode())
    return len(json.dumps(value).encode())


def check_id(value: Any, operation: str, field: str = "id") -> None:
    """Check an identifier: not ``None`` or ``""``, a string or integer, at most 150 bytes.

    ``0`` and other falsy but real ids are valid.

    Args:
        value: The identifier.
        operation: The operation's name, for errors.
        field: The argument's name, for errors.

    Raises:
        InvalidRequest: If the id is blank or has the wrong type.
        PayloadTooLarge: If it is longer than 150 bytes.
    """
    if value is None or value == "":
        raise InvalidRequest(operation, None, f"{field} cannot be blank")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidRequest(operation, None, f"{field} must be a string or an integer")
    if len(str(value).encode()) > MAX_ID_BYTES:
        raise PayloadTooLarge(operation, f"{field} <= {MAX_ID_BYTES} bytes")


def check_attributes(attributes: Mapping[str, Any], operation: str) -> None:
    """Check the attribute count (300), names (150 bytes) and values (1000 bytes).

    Args:
        attributes: Normalised attributes.
        operation: The operation's name, for errors.

    Raises:
        PayloadTooLarge: Naming the limit (and the attribute when its name is within limits).
    """
    if len(attributes) > MAX_ATTRIBUTES:
        raise PayloadTooLarge(operation, f"at most {MAX_ATTRIBUTES} attributes per person")
    for name, value in attributes.items():
        if len(name.encode()) > MAX_ATTRIBUTE_NAME_BYTES:
            raise PayloadTooLarge(operation, f"attribute names <= {MAX_ATTRIBUTE_NAME_BYTES} bytes")
        if name in _RESERVED_ATTRIBUTES or value is None:
            continue
        if size(value) > MAX_ATTRIBUTE_VALUE_BYTES:
            shown = f" ({name!r})" if is_safe_name(name) else ""
            raise PayloadTooLarge(
                operation, f"attribute values <= {MAX_ATTRIBUTE_VALUE_BYTES} bytes{shown}"
            )


def check_event(name: Any, data: Any, operation: str) -> None:
    """Check an event's name (required, 100 bytes) and data (an object, 100,000 bytes).

    Args:
        name: The event name.
        data: The normalised event data.
        operation: The operation's name, for errors.

    Raises:
        InvalidRequest: If the name is blank or the data is not an object.
        PayloadTooLarge: If the name or the data is over its limit.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest(operation, None, "event name cannot be blank")
    if len(name.strip().encode()) > MAX_EVENT_NAME_BYTES:
        raise PayloadTooLarge(operation, f"event names <= {MAX_EVENT_NAME_BYTES} bytes")
    if not isinstance(data, dict):
        raise InvalidRequest(operation, None, "event data must be a mapping")
    if size(data) > MAX_EVENT_DATA_BYTES:
        raise PayloadTooLarge(operation, f"event data <= {MAX_EVENT_DATA_BYTES} bytes")


def check_size(value: Any, limit: int, what: str, operation: str) -> int:
    """Check a whole request against a byte limit.

    Args:
        value: The normalised request body.
        limit: The limit in bytes.
        what: What the limit applies to, e.g. ``"transactional requests"``.
        operation: The operation's name, for errors.

    Returns:
        The size in bytes.

    Raises:
        PayloadTooLarge: If the body is larger than ``limit``.
    """
    n = size(value)
    if n > limit:
        raise PayloadTooLarge(operation, f"{what} <= {limit} bytes")
    return n
