"""The JSONL operations format read by ``resilio-customerio send``.

Each non-blank line of the input is one JSON object with an ``"op"`` field naming the operation
and the operation's own fields (see ``docs/customerio/jsonl.md``). :func:`parse_line` turns a
line into a :class:`Line`, or raises :class:`InvalidLineError` naming what is wrong, never
quoting the payload. Size limits of the Track and App APIs are checked here, so an oversize
line is reported with its line number before anything is sent.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from attrs import frozen

from resilio_customerio import payload
from resilio_customerio.ulid import is_ulid, new_ulid

__all__ = [
    "OPERATIONS",
    "InvalidLineError",
    "Line",
    "OpSpec",
    "is_safe_name",
    "is_ulid",
    "new_ulid",
    "parse_line",
]

MAX_IDENTIFIER_BYTES = payload.MAX_ID_BYTES
MAX_ATTRIBUTE_NAME_BYTES = payload.MAX_ATTRIBUTE_NAME_BYTES
MAX_ATTRIBUTE_VALUE_BYTES = payload.MAX_ATTRIBUTE_VALUE_BYTES
MAX_ATTRIBUTES = payload.MAX_ATTRIBUTES
MAX_EVENT_NAME_BYTES = payload.MAX_EVENT_NAME_BYTES
MAX_EVENT_DATA_BYTES = payload.MAX_EVENT_DATA_BYTES
MAX_V2_OP_BYTES = payload.MAX_V2_OP_BYTES
MAX_V2_BATCH_BYTES = payload.MAX_BATCH_BYTES
MAX_SEND_BYTES = payload.MAX_TRANSACTIONAL_BYTES

_ID_TYPES = ("id", "email", "cio_id")
_PLATFORMS = ("ios", "android")


class InvalidLineError(ValueError):
    """A line of the input is not a valid operation; the message names the field or limit."""


_COMPACT = json.JSONEncoder(separators=(",", ":"), default=str).encode  # one encoder, reused


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    return len(_COMPACT(value).encode())


@frozen
class OpSpec:
    """How one JSONL operation is checked, called and batched.

    Attributes:
        name: The ``op`` value.
        required: Fields that must be present.
        optional: Fields that may be present.
        event: Whether the operation records an event deduplicated by its ``event_id``.
        idempotent: Whether repeating it has no further effect (upserts, ULID-keyed events).
        app_api: Whether it goes to the App API (needs an App key).
    """

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    event: bool = False
    idempotent: bool = True
    app_api: bool = False


_SEND_KINDS = ("email", "push", "sms", "in_app", "inbox_message", "whatsapp")

OPERATIONS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec("identify", ("id",), ("attributes",)),
        OpSpec("track", ("id", "name"), ("data", "event_id", "timestamp"), event=True),
        OpSpec(
            "track_anonymous",
            ("anonymous_id", "name"),
            ("data", "event_id", "timestamp"),
            event=True,
        ),
        OpSpec("pageview", ("id", "page"), ("data", "event_id", "timestamp"), event=True),
        OpSpec("backfill", ("id", "name", "timestamp"), ("data", "event_id"), event=True),
        OpSpec("delete", ("id",)),
        OpSpec("add_device", ("id", "device_id", "platform"), ("data",)),
        OpSpec("delete_device", ("id", "device_id")),
        OpSpec("suppress", ("id",)),
        OpSpec("unsuppress", ("id",)),
        OpSpec("merge_customers", ("primary", "secondary")),
        OpSpec("batch", ("operations",)),
        *(
            OpSpec(f"send_{kind}", ("message",), idempotent=False, app_api=True)
            for kind in _SEND_KINDS
        ),
    )
}
"""Every operation the format knows, by ``op`` name."""


@frozen
class Line:
    """One valid line of the input.

    Attributes:
        number: The 1-based line number in the file.
        spec: The operation.
        fields: The line's fields (without ``op``), normalised (timestamps as epoch seconds).
    """

    number: int
    spec: OpSpec
    fields: Mapping[str, Any]

    @property
    def event_id(self) -> str | None:
        """The ``event_id`` given in the line, if any."""
        value = self.fields.get("event_id")
        return value if isinstance(value, str) else None

    def call(
        self, event_ids: list[str] | None = None
    ) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        """Return the client method, positional and keyword arguments for this line.

        Args:
            event_ids: For events, the one ULID to send; for ``batch``, the ULIDs assigned to
                its event operations that had none, in order.

        Returns:
            ``(method name, args, kwargs)`` for a ``customerio``-style client.
        """
        return _CALLS[self.spec.name](self.fields, event_ids or [])

    def v2(self, event_id: str | None) -> dict[str, Any] | None:
        """Return this line as one v2 batch operation, or None if it has no v2 form.

        Args:
            event_id: The ULID of an event line.

        Returns:
            The operation object.
        """
        build = _V2.get(self.spec.name)
        return None if build is None else build(self.fields, event_id)

    def batch_events_missing_id(self) -> int:
        """Return how many event operations of a ``batch`` line carry no ``id``."""
        if self.spec.name != "batch":
            return 0
        return sum(1 for op in self.fields["operations"] if _v2_event_without_id(op))


def _v2_event_without_id(op: Mapping[str, Any]) -> bool:
    return op.get("action") in ("event", "page", "screen") and not op.get("id")


# -- parsing ------------------------------------------------------------------------------------


def parse_line(raw: bytes, number: int) -> Line | None:
    """Parse and check one line of the input.

    Args:
        raw: The line's bytes (trailing newline allowed).
        number: Its 1-based line number.

    Returns:
        The line, or None for a blank line.

    Raises:
        InvalidLineError: When the line is not valid; the message never quotes the payload.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidLineError("not valid UTF-8") from None
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise InvalidLineError(f"not valid JSON (column {getattr(exc, 'colno', '?')})") from None
    if not isinstance(obj, dict):
        raise InvalidLineError("a line must be a JSON object")
    op = obj.pop("op", None)
    if not isinstance(op, str):
        raise InvalidLineError('missing "op" (the operation name)')
    spec = OPERATIONS.get(op)
    if spec is None:
        shown = f'"{op}"' if is_safe_name(op) else "(not shown: not an identifier)"
        raise InvalidLineError(f"unknown op {shown}; known: {', '.join(OPERATIONS)}")
    missing = [f for f in spec.required if obj.get(f) is None]
    if missing:
        raise InvalidLineError(f"{op}: missing field(s): {', '.join(missing)}")
    unknown = sorted(set(obj) - set(spec.required) - set(spec.optional))
    if unknown:
        raise InvalidLineError(f"{op}: {_unknown_fields(unknown)}")
    _CHECKS[op if op in _CHECKS else ("send" if spec.app_api else "")](obj)
    if "timestamp" in obj:
        obj["timestamp"] = _timestamp(obj["timestamp"])
    return Line(number, spec, obj)


_SHOWN_NAMES = 5
is_safe_name = payload.is_safe_name


def _unknown_fields(unknown: list[str]) -> str:
    """Describe unknown fields, naming only those with identifier-like names (at most five)."""
    safe = [u for u in unknown if is_safe_name(u)][:_SHOWN_NAMES]
    hidden = len(unknown) - len(safe)
    if not safe:
        return f"{hidden} unknown field{'s' if hidden != 1 else ''} (names not shown)"
    text = f"unknown field(s): {', '.join(safe)}"
    if hidden:
        text += f" and {hidden} more (names not shown)"
    return text


def _identifier(fields: Mapping[str, Any], name: str) -> None:
    value = fields.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise InvalidLineError(f"{name} must be a non-empty string or integer")
    if _size(str(value)) > MAX_IDENTIFIER_BYTES:
        raise InvalidLineError(f"{name} is larger than the {MAX_IDENTIFIER_BYTES}-byte limit")


def _object(fields: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = fields.get(name, {})
    if not isinstance(value, dict):
        raise InvalidLineError(f"{name} must be an object")
    return value


def _attributes(fields: Mapping[str, Any], name: str) -> None:
    attributes = _object(fields, name)
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidLineError(f"{name} has more than the {MAX_ATTRIBUTES}-attribute limit")
    for key, value in attributes.items():
        if _size(key) > MAX_ATTRIBUTE_NAME_BYTES:
            raise InvalidLineError(
                f"{name}: an attribute name is larger than the "
                f"{MAX_ATTRIBUTE_NAME_BYTES}-byte limit"
            )
        if _size(value) > MAX_ATTRIBUTE_VALUE_BYTES:
            which = f"attribute '{key}'" if is_safe_name(key) else "an attribute"
            raise InvalidLineError(
                f"{name}: the value of {which} is larger than the "
                f"{MAX_ATTRIBUTE_VALUE_BYTES}-byte limit"
            )


def _event(fields: Mapping[str, Any], name_field: str = "name") -> None:
    name = fields.get(name_field)
    if not isinstance(name, str) or not name.strip():
        raise InvalidLineError(f"{name_field} must be a non-empty string")
    if _size(name.strip()) > MAX_EVENT_NAME_BYTES:
        raise InvalidLineError(f"{name_field} is larger than the {MAX_EVENT_NAME_BYTES}-byte limit")
    data = _object(fields, "data")
    if _size(data) > MAX_EVENT_DATA_BYTES:
        raise InvalidLineError(
            f"data is larger than the {MAX_EVENT_DATA_BYTES}-byte event data limit"
        )
    event_id = fields.get("event_id")
    if event_id is not None and not is_ulid(event_id):
        raise InvalidLineError("event_id must be a ULID (26 characters of Crockford base32)")


MAX_TIMESTAMP = payload.MAX_TIMESTAMP


def _timestamp(value: Any) -> int:
    seconds = _epoch(value)
    if seconds < 0:
        raise InvalidLineError("timestamp must not be before 1970 (negative epoch seconds)")
    if seconds >= MAX_TIMESTAMP:
        raise InvalidLineError(
            "timestamp must be before the year 2100 (epoch seconds, not milliseconds)"
        )
    return int(seconds)


def _epoch(value: Any) -> int | float:
    if isinstance(value, bool):
        raise InvalidLineError("timestamp must be epoch seconds or an ISO 8601 date-time")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                raise InvalidLineError("timestamp must name its time zone (e.g. Z or +02:00)")
            return moment.timestamp()
    raise InvalidLineError("timestamp must be epoch seconds or an ISO 8601 date-time")


def _reserved(f: Mapping[str, Any], name: str, reserved: tuple[str, ...]) -> None:
    clash = sorted(set(_object(f, name)) & set(reserved))
    if clash:
        raise InvalidLineError(f"{name} must not contain {', '.join(clash)} (a field of the line)")


def _check_identify(f: Mapping[str, Any]) -> None:
    _identifier(f, "id")
    _attributes(f, "attributes")
    _reserved(f, "attributes", ("id",))


def _check_track(f: Mapping[str, Any]) -> None:
    _identifier(f, "id")
    _event(f)


def _check_anonymous(f: Mapping[str, Any]) -> None:
    _identifier(f, "anonymous_id")
    _event(f)


def _check_pageview(f: Mapping[str, Any]) -> None:
    _identifier(f, "id")
    _event(f, "page")


def _check_device(f: Mapping[str, Any]) -> None:
    _identifier(f, "id")
    _identifier(f, "device_id")
    if "platform" in f and f["platform"] not in _PLATFORMS:
        raise InvalidLineError("platform must be ios or android")
    _attributes(f, "data")
    _reserved(f, "data", ("customer_id", "device_id", "platform"))


def _check_id(f: Mapping[str, Any]) -> None:
    _identifier(f, "id")


def _check_merge(f: Mapping[str, Any]) -> None:
    for side in ("primary", "secondary"):
        party = f[side]
        if not isinstance(party, dict) or len(party) != 1 or next(iter(party)) not in _ID_TYPES:
            raise InvalidLineError(f"{side} must hold exactly one of id, email or cio_id")
        _identifier(party, next(iter(party)))


def _check_batch(f: Mapping[str, Any]) -> None:
    ops = f["operations"]
    if not isinstance(ops, list) or not ops:
        raise InvalidLineError("operations must be a non-empty array of v2 operations")
    for index, op in enumerate(ops):
        if not isinstance(op, dict):
            raise InvalidLineError(f"operations[{index}] must be an object")
        if _size(op) > MAX_V2_OP_BYTES:
            raise InvalidLineError(
                f"operations[{index}] is larger than the {MAX_V2_OP_BYTES}-byte limit"
            )
        if op.get("id") is not None and not is_ulid(op["id"]):
            raise InvalidLineError(f"operations[{index}].id must be a ULID")
    if _size(ops) > MAX_V2_BATCH_BYTES:
        raise InvalidLineError(
            f"operations are larger than the {MAX_V2_BATCH_BYTES}-byte batch limit"
        )


def _check_send(f: Mapping[str, Any]) -> None:
    message = _object(f, "message")
    if _size(message) > MAX_SEND_BYTES:
        raise InvalidLineError(f"message is larger than the {MAX_SEND_BYTES}-byte request limit")


_CHECKS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "identify": _check_identify,
    "track": _check_track,
    "track_anonymous": _check_anonymous,
    "pageview": _check_pageview,
    "backfill": _check_track,
    "delete": _check_id,
    "add_device": _check_device,
    "delete_device": _check_device,
    "suppress": _check_id,
    "unsuppress": _check_id,
    "merge_customers": _check_merge,
    "batch": _check_batch,
    "send": _check_send,
}


# -- calls -------------------------------------------------------------------------------------

_Call = tuple[str, tuple[Any, ...], dict[str, Any]]


def _event_kwargs(f: Mapping[str, Any], ids: list[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"name": f["name"], "data": dict(f.get("data") or {})}
    if ids:
        kwargs["id"] = ids[0]
    if f.get("timestamp") is not None:
        kwargs["timestamp"] = f["timestamp"]
    return kwargs


def _merge_args(f: Mapping[str, Any]) -> tuple[Any, ...]:
    ((p_type, p_id),) = f["primary"].items()
    ((s_type, s_id),) = f["secondary"].items()
    return (p_type, str(p_id), s_type, str(s_id))


def _batch_ops(f: Mapping[str, Any], ids: list[str]) -> list[dict[str, Any]]:
    pending = iter(ids)
    ops = []
    for op in f["operations"]:
        if _v2_event_without_id(op):
            op = {**op, "id": next(pending)}
        ops.append(op)
    return ops


_CALLS: dict[str, Callable[[Mapping[str, Any], list[str]], _Call]] = {
    "identify": lambda f, _: ("identify", (str(f["id"]),), dict(f.get("attributes") or {})),
    "track": lambda f, ids: ("track", (str(f["id"]),), _event_kwargs(f, ids)),
    "track_anonymous": lambda f, ids: (
        "track_anonymous",
        (str(f["anonymous_id"]),),
        _event_kwargs(f, ids),
    ),
    # The client's pageview() cannot carry an event id: send it as a v2 "page" operation.
    "pageview": lambda f, ids: (
        "batch",
        ([_v2_event(f, ids[0] if ids else None, "page", f["page"])],),
        {},
    ),
    "backfill": lambda f, ids: ("track", (str(f["id"]),), _event_kwargs(f, ids)),
    "delete": lambda f, _: ("delete", (str(f["id"]),), {}),
    "add_device": lambda f, _: (
        "add_device",
        (str(f["id"]), str(f["device_id"]), f["platform"]),
        dict(f.get("data") or {}),
    ),
    "delete_device": lambda f, _: ("delete_device", (str(f["id"]), str(f["device_id"])), {}),
    "suppress": lambda f, _: ("suppress", (str(f["id"]),), {}),
    "unsuppress": lambda f, _: ("unsuppress", (str(f["id"]),), {}),
    "merge_customers": lambda f, _: ("merge_customers", _merge_args(f), {}),
    "batch": lambda f, ids: ("batch", (_batch_ops(f, ids),), {}),
}
for _kind in _SEND_KINDS:
    _CALLS[f"send_{_kind}"] = functools.partial(
        lambda f, _, method: (method, (dict(f["message"]),), {}), method=f"send_{_kind}"
    )


# -- v2 batch forms -------------------------------------------------------------------------------


def _person(f: Mapping[str, Any], action: str, **extra: Any) -> dict[str, Any]:
    return {"type": "person", "action": action, "identifiers": {"id": str(f["id"])}, **extra}


def _v2_event(f: Mapping[str, Any], event_id: str | None, action: str, name: str) -> dict[str, Any]:
    op = _person(f, action, name=name, attributes=dict(f.get("data") or {}))
    if event_id:
        op["id"] = event_id
    if f.get("timestamp") is not None:
        op["timestamp"] = f["timestamp"]
    return op


_V2: dict[str, Callable[[Mapping[str, Any], str | None], dict[str, Any]]] = {
    "identify": lambda f, _: _person(f, "identify", attributes=dict(f.get("attributes") or {})),
    "track": lambda f, eid: _v2_event(f, eid, "event", f["name"]),
    "backfill": lambda f, eid: _v2_event(f, eid, "event", f["name"]),
    "pageview": lambda f, eid: _v2_event(f, eid, "page", f["page"]),
    "delete": lambda f, _: _person(f, "delete"),
    "add_device": lambda f, _: _person(
        f,
        "add_device",
        device={
            "token": str(f["device_id"]),
            "platform": f["platform"],
            **({"attributes": dict(f["data"])} if f.get("data") else {}),
        },
    ),
    "delete_device": lambda f, _: _person(
        f, "delete_device", device={"token": str(f["device_id"])}
    ),
    "suppress": lambda f, _: _person(f, "suppress"),
    "unsuppress": lambda f, _: _person(f, "unsuppress"),
    "merge_customers": lambda f, _: {
        "type": "person",
        "action": "merge",
        "primary": {k: str(v) for k, v in f["primary"].items()},
        "secondary": {k: str(v) for k, v in f["secondary"].items()},
    },
}
