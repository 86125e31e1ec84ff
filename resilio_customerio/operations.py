"""The operation table: every Customer.io call the adapter offers, as a named resilio operation.

Each operation has a name (``customerio.<method>``), says whether repeating it is harmless, and
has a handler that performs one attempt from the JSON payload the adapter stores in
``context.payload``. The outbox's drainer replays queued work through these handlers; they use
the client registered with :func:`set_replay_client` (every :class:`ResilientCustomerIO`
registers itself when it is built, unless told not to).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import frozen

from resilio._operation import Operation
from resilio_customerio.classify import PREFIX, classify

if TYPE_CHECKING:
    from resilio_customerio.client import ResilientCustomerIO

__all__ = [
    "APP_OPERATIONS",
    "SPECS",
    "TRACK_OPERATIONS",
    "OperationSpec",
    "operations",
    "replay_client",
    "set_replay_client",
]

Call = Callable[["ResilientCustomerIO", dict[str, Any]], Any]


@frozen
class OperationSpec:
    """One adapter operation.

    Attributes:
        method: The client method's name (``"track"``).
        api: ``"track"`` (Track API, Basic auth) or ``"app"`` (App API, Bearer key).
        idempotent: Whether repeating it is harmless.
        call: Performs one attempt from a payload with a given adapter's clients.
        description: One line for listings and the docs.
    """

    method: str
    api: str
    idempotent: bool
    call: Call
    description: str

    @property
    def name(self) -> str:
        """The registered operation name, ``customerio.<method>``."""
        return PREFIX + self.method


def _track(cio: ResilientCustomerIO) -> Any:
    return cio.track_client


def _app(cio: ResilientCustomerIO) -> Any:
    return cio.require_api_client()


def _event_kwargs(p: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"data": p.get("data") or {}, "id": p.get("id")}
    if p.get("timestamp") is not None:
        kwargs["timestamp"] = p["timestamp"]
    return kwargs


def _pageview(cio: ResilientCustomerIO, p: dict[str, Any]) -> Any:
    # The client's pageview() cannot send an event id; send the same request with one.
    client = _track(cio)
    body = {"type": "page", "name": p["page"], "data": p.get("data") or {}}
    if p.get("id"):
        body["id"] = p["id"]
    return client.send_request("POST", client.get_event_query_string(p["customer_id"]), body)


def _send(kind: str) -> Call:
    def call(cio: ResilientCustomerIO, p: dict[str, Any]) -> Any:
        return getattr(_app(cio), f"send_{kind}")(p["request"])

    return call


_TRACK: tuple[OperationSpec, ...] = (
    OperationSpec(
        "identify",
        "track",
        True,
        lambda cio, p: _track(cio).identify(p["id"], **(p.get("attributes") or {})),
        "Create or update a person (an upsert).",
    ),
    OperationSpec(
        "track",
        "track",
        True,
        lambda cio, p: _track(cio).track(p["customer_id"], p["name"], **_event_kwargs(p)),
        "Track a person's event; deduplicated by its ULID id.",
    ),
    OperationSpec(
        "track_anonymous",
        "track",
        True,
        lambda cio, p: _track(cio).track_anonymous(
            p.get("anonymous_id"), p["name"], **_event_kwargs(p)
        ),
        "Track an anonymous event; deduplicated by its ULID id.",
    ),
    OperationSpec(
        "pageview",
        "track",
        True,
        _pageview,
        "Track a page view (type=page) with a ULID id.",
    ),
    OperationSpec(
        "backfill",
        "track",
        True,
        lambda cio, p: _track(cio).track(p["customer_id"], p["name"], **_event_kwargs(p)),
        "Track a past event (with timestamp) with a ULID id.",
    ),
    OperationSpec(
        "delete",
        "track",
        True,
        lambda cio, p: _track(cio).delete(p["customer_id"]),
        "Delete a person.",
    ),
    OperationSpec(
        "add_device",
        "track",
        True,
        lambda cio, p: _track(cio).add_device(
            p["customer_id"], p["device_id"], p["platform"], **(p.get("data") or {})
        ),
        "Add or update a person's device.",
    ),
    OperationSpec(
        "delete_device",
        "track",
        True,
        lambda cio, p: _track(cio).delete_device(p["customer_id"], p["device_id"]),
        "Remove a person's device.",
    ),
    OperationSpec(
        "suppress",
        "track",
        True,
        lambda cio, p: _track(cio).suppress(p["customer_id"]),
        "Suppress a person.",
    ),
    OperationSpec(
        "unsuppress",
        "track",
        True,
        lambda cio, p: _track(cio).unsuppress(p["customer_id"]),
        "Unsuppress a person.",
    ),
    OperationSpec(
        "merge_customers",
        "track",
        True,
        lambda cio, p: _track(cio).merge_customers(
            p["primary_id_type"], p["primary_id"], p["secondary_id_type"], p["secondary_id"]
        ),
        "Merge a secondary person into a primary one.",
    ),
    OperationSpec(
        "batch",
        "track",
        True,
        lambda cio, p: _track(cio).batch(p["operations"]),
        "Send v2 operations in one request (event operations carry ULID ids).",
    ),
)

_APP: tuple[OperationSpec, ...] = tuple(
    OperationSpec(
        f"send_{kind}",
        "app",
        False,
        _send(kind),
        f"Send a transactional {label} (not idempotent: never repeated when it may have gone).",
    )
    for kind, label in (
        ("email", "email"),
        ("push", "push notification"),
        ("sms", "SMS"),
        ("whatsapp", "WhatsApp message"),
        ("inbox_message", "inbox message"),
        ("in_app", "in-app message"),
    )
)

TRACK_OPERATIONS: tuple[str, ...] = tuple(spec.method for spec in _TRACK)
"""The Track API methods, in the client's order."""

APP_OPERATIONS: tuple[str, ...] = tuple(spec.method for spec in _APP)
"""The App API send methods."""

SPECS: dict[str, OperationSpec] = {spec.name: spec for spec in (*_TRACK, *_APP)}
"""Every operation by its registered name."""

_replay_lock = threading.Lock()
_replay: ResilientCustomerIO | None = None


def set_replay_client(client: ResilientCustomerIO | None) -> None:
    """Make ``client`` the one outbox replays (handlers) use; ``None`` forgets it.

    Args:
        client: The adapter whose Customer.io clients perform replayed work.
    """
    global _replay
    with _replay_lock:
        _replay = client


def replay_client() -> ResilientCustomerIO:
    """Return the adapter registered for replays.

    Returns:
        The adapter.

    Raises:
        RuntimeError: If no adapter was built (or one was closed) in this process.
    """
    client = _replay
    if client is None:
        raise RuntimeError(
            "no ResilientCustomerIO is registered for replaying customerio operations: build "
            "one in the process that drains the outbox"
        )
    return client


def _handler(spec: OperationSpec) -> Callable[[Any], Any]:
    def handler(payload: Any) -> Any:
        return replay_client().attempt(spec.name, payload)

    handler.__name__ = handler.__qualname__ = f"replay_{spec.method}"
    return handler


def operations() -> list[Operation]:
    """Return every adapter operation as a :class:`resilio.Operation`.

    Each has its idempotency, the adapter's classifier, a replay handler and its default
    pipeline (named like the operation, defined in the packaged ``pipelines.yaml``).

    Returns:
        The operations, Track API first.
    """
    return [
        Operation(
            name=spec.name,
            idempotent=spec.idempotent,
            classifier=classify,
            handler=_handler(spec),
            pipeline=spec.name,
            description=spec.description,
        )
        for spec in SPECS.values()
    ]
