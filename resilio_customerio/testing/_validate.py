"""Size limits and body checks of the Track API, shared by v1 and v2."""

from __future__ import annotations

import json
import time
from typing import Any

from resilio_customerio.testing._ulid import is_ulid

MAX_IDENTIFIER_BYTES = 150
MAX_ATTRIBUTE_NAME_BYTES = 150
MAX_ATTRIBUTE_VALUE_BYTES = 1000
MAX_EVENT_NAME_BYTES = 100
MAX_EVENT_DATA_BYTES = 100_000
MAX_V2_OP_BYTES = 32 * 1024
MAX_V2_BATCH_BYTES = 500 * 1024
MAX_SEND_BYTES = 2048 * 1024

_COMPACT = json.JSONEncoder(separators=(",", ":")).encode  # built once: dumps() builds one per call

EVENT_TYPES = ("event", "page", "screen")
DEVICE_PLATFORMS = ("ios", "android")


def size(value: Any) -> int:
    """Return the size in bytes of a value as the limits count it.

    Strings count their UTF-8 bytes; anything else counts its compact JSON text.

    Args:
        value: Any JSON-compatible value.

    Returns:
        The size in bytes.
    """
    if isinstance(value, str):
        return len(value.encode())
    return len(_COMPACT(value).encode())


def _label(name: str) -> str:
    return name if len(name) <= 40 else name[:37] + "..."


def check_identifier(value: Any, field: str) -> str | None:
    """Check one identifier value.

    Args:
        value: The identifier.
        field: Name used in the message.

    Returns:
        An error message, or None when valid.
    """
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return f"{field} must be a non-empty string or integer"
    if size(str(value)) > MAX_IDENTIFIER_BYTES:
        return f"{field} must be {MAX_IDENTIFIER_BYTES} bytes or less"
    return None


def check_attributes(attributes: Any, field: str = "attributes") -> list[str]:
    """Check attribute names and values against the per-attribute limits.

    Args:
        attributes: The attributes object.
        field: Name used in messages.

    Returns:
        Error messages (empty when valid).
    """
    if not isinstance(attributes, dict):
        return [f"{field} must be an object"]
    errors = []
    for name, value in attributes.items():
        if size(name) > MAX_ATTRIBUTE_NAME_BYTES:
            errors.append(
                f"attribute name '{_label(name)}' is longer than {MAX_ATTRIBUTE_NAME_BYTES} bytes"
            )
        elif size(value) > MAX_ATTRIBUTE_VALUE_BYTES:
            errors.append(
                f"attribute '{_label(name)}' value is larger than {MAX_ATTRIBUTE_VALUE_BYTES} bytes"
            )
    return errors


def check_event(
    body: dict[str, Any], data_field: str, *, within: int | None = None
) -> list[tuple[str, str]]:
    """Check an event body (v1 event or v2 event/page/screen operation).

    Args:
        body: The event object.
        data_field: ``"data"`` for v1, ``"attributes"`` for v2 (where ``type`` is the entity
            type, not the event type, and is checked elsewhere).
        within: The whole body's size limit, if it was already checked (a v2 operation's 32 KB);
            the data is then not measured again when that limit is below the data's.

    Returns:
        ``(field, message)`` pairs (empty when valid).
    """
    errors: list[tuple[str, str]] = []
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.append(("name", "name is required"))
    elif size(name.strip()) > MAX_EVENT_NAME_BYTES:
        errors.append(("name", f"event name must be {MAX_EVENT_NAME_BYTES} bytes or less"))
    if "id" in body and not is_ulid(body["id"]):
        errors.append(("id", "id must be a valid ULID"))
    if data_field == "data" and "type" in body and body["type"] not in EVENT_TYPES:
        errors.append(("type", "type must be one of event, page, screen"))
    stamp = body.get("timestamp")
    if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, int)):
        errors.append(("timestamp", "timestamp must be an integer unix timestamp"))
    data = body.get(data_field)
    if data is not None:
        if not isinstance(data, dict):
            errors.append((data_field, f"{data_field} must be an object"))
        elif (within is None or within > MAX_EVENT_DATA_BYTES) and (
            size(data) > MAX_EVENT_DATA_BYTES
        ):
            errors.append(
                (data_field, f"event {data_field} must be {MAX_EVENT_DATA_BYTES} bytes or less")
            )
    return errors


def normalise_event(body: dict[str, Any], data_field: str, kind: str | None) -> dict[str, Any]:
    """Build the recorded form of a checked event.

    Args:
        body: The event object, already checked.
        data_field: ``"data"`` for v1, ``"attributes"`` for v2.
        kind: Event type forced by a v2 action, or None to read ``type``.

    Returns:
        ``{"name", "id", "type", "timestamp", "data"}`` (plus ``anonymous_id`` when given);
        ``timestamp`` defaults to the time of receipt, as the real service does.
    """
    event: dict[str, Any] = {
        "name": body["name"].strip(),
        "id": body.get("id"),
        "type": kind or body.get("type") or "event",
        "timestamp": body.get("timestamp", int(time.time())),
        "data": body.get(data_field) or {},
    }
    if body.get("anonymous_id") not in (None, ""):
        event["anonymous_id"] = body["anonymous_id"]
    return event


def check_device(device: Any, id_field: str) -> list[tuple[str, str]]:
    """Check a device object.

    Args:
        device: The device object.
        id_field: ``"id"`` for v1, ``"token"`` for v2.

    Returns:
        ``(field, message)`` pairs (empty when valid).
    """
    if not isinstance(device, dict):
        return [("device", "device must be an object")]
    errors = []
    token = device.get(id_field)
    if not isinstance(token, str) or not token:
        errors.append((f"device.{id_field}", f"device {id_field} is required"))
    if device.get("platform") not in DEVICE_PLATFORMS:
        errors.append(("device.platform", "device platform must be ios or android"))
    return errors


def merge_party(value: Any, field: str) -> tuple[tuple[str, str] | None, str | None]:
    """Parse a merge ``primary``/``secondary`` object.

    Args:
        value: The object, which must hold exactly one of ``id``, ``email`` or ``cio_id``.
        field: ``"primary"`` or ``"secondary"``.

    Returns:
        ``(identifier, None)`` when valid, else ``(None, message)``.
    """
    if not isinstance(value, dict) or len(value) != 1:
        return None, f"{field} must contain exactly one of id, email or cio_id"
    ((kind, ident),) = value.items()
    if kind not in ("id", "email", "cio_id"):
        return None, f"{field} must contain exactly one of id, email or cio_id"
    problem = check_identifier(ident, f"{field}.{kind}")
    if problem:
        return None, problem
    return (kind, str(ident)), None
