"""Building each operation's payload: check, normalise, and give events their ULID once.

The payload is what one attempt sends and what the outbox stores, so it is built once per
logical call, before the first attempt: every retry and every replay sends the same bytes and
the same event ``id``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from customerio.constants import CIOID, EMAIL, ID

from resilio_customerio.errors import InvalidRequest
from resilio_customerio.payload import (
    MAX_TIMESTAMP,
    MAX_TRANSACTIONAL_BYTES,
    check_attributes,
    check_event,
    check_id,
    check_size,
    normalise,
    to_timestamp,
)
from resilio_customerio.ulid import new_ulid

__all__ = [
    "batch_operations",
    "customer",
    "device",
    "event",
    "identify",
    "merge",
    "pageview",
    "send",
    "v2_event",
    "v2_identifiers",
    "v2_identify",
]

_EVENT_ACTIONS = frozenset({"event", "page", "screen"})


def _event_id(given: Any, op: str) -> str:
    if given is None:
        return new_ulid()
    if not isinstance(given, str) or not given:
        raise InvalidRequest(op, None, "event id must be a non-empty string (a ULID)")
    return given


def _timestamp(value: Any, op: str, *, required: bool) -> int | None:
    if value is None:
        if required:
            raise InvalidRequest(op, None, "timestamp is required")
        return None
    what = "timestamp must be a datetime, epoch seconds or an ISO 8601 date-time with a zone"
    if isinstance(value, str) and not value.strip().isdigit():
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidRequest(op, None, what) from None
        if value.tzinfo is None:
            raise InvalidRequest(op, None, "timestamp must name its time zone (e.g. Z or +02:00)")
    if isinstance(value, dt.datetime | dt.date):
        seconds = to_timestamp(value)
    elif isinstance(value, bool):
        raise InvalidRequest(op, None, what)
    else:
        try:
            seconds = int(value)
        except (TypeError, ValueError, OverflowError):
            raise InvalidRequest(op, None, what) from None
    if not 0 <= seconds < MAX_TIMESTAMP:
        raise InvalidRequest(
            op, None, "timestamp must be from 1970 to 2099 (epoch seconds, not milliseconds)"
        )
    return seconds


def identify(op: str, id: Any, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Payload of ``identify(id, **attributes)``."""
    check_id(id, op, "id")
    attrs = normalise(dict(attributes), op, "attributes")
    check_attributes(attrs, op)
    return {"id": id, "attributes": attrs}


def event(
    op: str,
    who_field: str,
    who: Any,
    name: Any,
    data: Any,
    id: Any,
    timestamp: Any,
    *,
    timestamp_required: bool = False,
) -> dict[str, Any]:
    """Payload of ``track``, ``track_anonymous`` and ``backfill``, with its ULID."""
    if who_field == "customer_id" or (who is not None and who != ""):
        check_id(who, op, who_field)
    normalised = normalise(dict(data or {}), op, "data")
    check_event(name, normalised, op)
    payload: dict[str, Any] = {
        who_field: who,
        "name": name,
        "data": normalised,
        "id": _event_id(id, op),
    }
    stamp = _timestamp(timestamp, op, required=timestamp_required)
    if stamp is not None:
        payload["timestamp"] = stamp
    return payload


def pageview(op: str, customer_id: Any, page: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """Payload of ``pageview(customer_id, page, **data)``, with its ULID."""
    check_id(customer_id, op, "customer_id")
    normalised = normalise(dict(data), op, "data")
    check_event(page, normalised, op)
    return {"customer_id": customer_id, "page": page, "data": normalised, "id": new_ulid()}


def customer(op: str, customer_id: Any) -> dict[str, Any]:
    """Payload of ``delete``, ``suppress`` and ``unsuppress``."""
    check_id(customer_id, op, "customer_id")
    return {"customer_id": customer_id}


def device(
    op: str, customer_id: Any, device_id: Any, platform: Any = None, data: Any = None
) -> dict[str, Any]:
    """Payload of ``add_device`` (with ``platform``) and ``delete_device``."""
    check_id(customer_id, op, "customer_id")
    check_id(device_id, op, "device_id")
    payload: dict[str, Any] = {"customer_id": customer_id, "device_id": device_id}
    if data is not None:
        if platform is None or platform == "":
            raise InvalidRequest(op, None, "platform cannot be blank")
        payload["platform"] = platform
        attrs = normalise(dict(data), op, "data")
        check_attributes(attrs, op)
        payload["data"] = attrs
    return payload


def merge(
    op: str, primary_type: Any, primary_id: Any, secondary_type: Any, secondary_id: Any
) -> dict[str, Any]:
    """Payload of ``merge_customers``."""
    for which, kind, ident in (
        ("primary", primary_type, primary_id),
        ("secondary", secondary_type, secondary_id),
    ):
        if kind not in (ID, EMAIL, CIOID):
            raise InvalidRequest(op, None, f"invalid {which} id type (id, email or cio_id)")
        check_id(ident, op, f"{which}_id")
    return {
        "primary_id_type": primary_type,
        "primary_id": primary_id,
        "secondary_id_type": secondary_type,
        "secondary_id": secondary_id,
    }


def batch_operations(op: str, operations: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Normalise v2 operations; event, page and screen operations get a ULID ``id`` if missing."""
    if isinstance(operations, Mapping | str | bytes) or not operations:
        raise InvalidRequest(op, None, "operations cannot be empty in batch")
    result: list[dict[str, Any]] = []
    for i, raw in enumerate(operations):
        if not isinstance(raw, Mapping):
            raise InvalidRequest(op, None, f"batch operation [{i}] is not a mapping")
        item = normalise(dict(raw), op, f"batch[{i}]")
        if not item.get("type") or not item.get("action"):
            raise InvalidRequest(op, None, f"batch operation [{i}] needs 'type' and 'action'")
        attributes = item.get("attributes")
        if item["action"] == "identify" and isinstance(attributes, Mapping):
            check_attributes(attributes, op)  # the per-field limits, as v1 identify checks them
        elif item["action"] == "event":
            check_event(item.get("name"), attributes if attributes is not None else {}, op)
        if item.get("action") in _EVENT_ACTIONS and not item.get("id"):
            item["id"] = new_ulid()
        result.append(item)
    return result


def v2_identifiers(value: Any) -> dict[str, Any]:
    """The v2 ``identifiers`` of a v1 customer id, typed as the v1 path reads it.

    The v1 API takes an id, an email address, or ``cio_<id>`` in the same place; a v2
    operation must say which one it is.

    Args:
        value: A checked customer id (a string or an integer).

    Returns:
        ``{"cio_id": ...}`` for ``cio_``-prefixed values, ``{"email": ...}`` for values with an
        ``@``, else ``{"id": ...}``.
    """
    if isinstance(value, str):
        if value.startswith("cio_") and len(value) > 4:
            return {CIOID: value[4:]}
        if "@" in value:
            return {EMAIL: value}
    return {ID: value}


def v2_identify(op: str, id: Any, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A v2 ``person identify`` operation for the buffered mode."""
    payload = identify(op, id, attributes)
    return {
        "type": "person",
        "action": "identify",
        "identifiers": v2_identifiers(payload["id"]),
        "attributes": payload["attributes"],
    }


def v2_event(
    op: str, customer_id: Any, name: Any, data: Any, id: Any, timestamp: Any
) -> dict[str, Any]:
    """A v2 ``person event`` operation for the buffered mode."""
    payload = event(op, "customer_id", customer_id, name, data, id, timestamp)
    result = {
        "type": "person",
        "action": "event",
        "identifiers": v2_identifiers(payload["customer_id"]),
        "name": payload["name"],
        "id": payload["id"],
        "attributes": payload["data"],
    }
    if "timestamp" in payload:
        result["timestamp"] = payload["timestamp"]
    return result


def send(op: str, request: Any) -> dict[str, Any]:
    """Payload of a transactional send: a request object or a dict, normalised and sized."""
    to_dict = getattr(request, "_to_dict", None)
    body = to_dict() if callable(to_dict) else request
    if not isinstance(body, Mapping):
        raise InvalidRequest(op, None, "the request must be a Send*Request or a mapping")
    normalised = normalise(dict(body), op, "request")
    check_size(normalised, MAX_TRANSACTIONAL_BYTES, "transactional requests", op)
    return {"request": normalised}
