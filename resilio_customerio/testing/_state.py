"""The simulator's workspace: people, events, devices, deliveries and the request log."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from attrs import frozen

Identifier = tuple[str, str]
"""An identifier kind (``id``, ``email``, ``phone`` or ``cio_id``) and its value."""


@frozen
class RecordedRequest:
    """One request as the simulator received it.

    Attributes:
        method: HTTP method.
        path: Raw request path, percent-encoding kept, query string included.
        headers: Request headers (names as sent).
        body: Parsed JSON body; None when empty or not JSON.
        status: Status code answered; None when the connection was reset instead.
        time: Seconds since simulator start, from the simulator's clock.
        endpoint: Endpoint name the router gave the request (``"unknown"`` if none).
        fault: Source of the injected fault (``"rule"``, ``"outage"``, ``"rate_limit"``) or None.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int | None
    time: float
    endpoint: str
    fault: str | None = None


@frozen
class Delivery:
    """One accepted transactional send.

    Attributes:
        kind: ``email``, ``push``, ``sms``, ``in_app``, ``inbox_message`` or ``whatsapp``.
        body: The JSON body as sent.
        delivery_id: The id answered to the client.
        queued_at: The epoch seconds answered to the client.
    """

    kind: str
    body: dict[str, Any]
    delivery_id: str
    queued_at: int


def v1_identifier(value: str) -> Identifier:
    """Classify a v1 path identifier: ``cio_<id>``, an email address, or an id.

    Args:
        value: The percent-decoded path segment.

    Returns:
        The identifier kind and value.
    """
    if value.startswith("cio_") and len(value) > 4:
        return ("cio_id", value[4:])
    if "@" in value:
        return ("email", value)
    return ("id", value)


class Workspace:
    """Thread-safe in-memory model of one Customer.io workspace.

    People are keyed by the identifier value that first created them. Attributes ``email`` and
    ``phone`` are indexed so later calls can address the same person by them, and each person
    gets a ``cio_id``.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded so far."""
        with self.lock:
            self.people: dict[str, dict[str, Any]] = {}
            self.by_attr: dict[tuple[str, str], str] = {}
            self.cio_ids: dict[str, str] = {}
            self.attr_times: dict[str, int] = {}
            self.events: dict[str, list[dict[str, Any]]] = {}
            self.anonymous: list[dict[str, Any]] = []
            self.devices: dict[str, dict[str, dict[str, Any]]] = {}
            self.suppressed: set[str] = set()
            self.event_ids: set[str] = set()
            self.objects: dict[tuple[str, str], dict[str, Any]] = {}
            self.delivery_metrics: list[dict[str, Any]] = []
            self.deliveries: list[Delivery] = []
            self.requests: list[RecordedRequest] = []
            self.statuses: Counter[int | None] = Counter()
            self.accepted_events = 0
            self.duplicates = 0
            self.connections = 0
            self._next_cio = 1

    # -- people ---------------------------------------------------------------------------

    def resolve(self, ident: Identifier) -> str | None:
        """Return the key of the existing person an identifier names, or None.

        Args:
            ident: Identifier kind and value.

        Returns:
            The person's key, or None when nobody matches.
        """
        kind, value = ident
        if kind == "cio_id":
            return next((k for k, c in self.cio_ids.items() if c == value), None)
        if kind in ("email", "phone"):
            key = self.by_attr.get((kind, value.lower()))
            if key is not None:
                return key
        return value if value in self.people else None

    def _key(self, ident: Identifier) -> str | None:
        key = self.resolve(ident)
        if key is None and ident[0] != "cio_id":
            key = ident[1]
        return key

    def identify(self, ident: Identifier, attributes: dict[str, Any]) -> None:
        """Create or update a person (an upsert), honouring ``_update`` and ``_timestamp``.

        Args:
            ident: Who to identify.
            attributes: Attributes to set; ``_update`` and ``_timestamp`` are not stored.
        """
        with self.lock:
            key = self._key(ident)
            if key is None or key in self.suppressed:
                return
            exists = key in self.people
            if attributes.get("_update") is True and not exists:
                return
            stamp = attributes.get("_timestamp")
            if isinstance(stamp, int) and not isinstance(stamp, bool):
                if stamp < self.attr_times.get(key, stamp):
                    return
                self.attr_times[key] = stamp
            person = self.people.setdefault(key, {})
            if not exists:
                self.cio_ids[key] = f"{self._next_cio:x}"
                self._next_cio += 1
            for name, value in attributes.items():
                if name in ("_update", "_timestamp"):
                    continue
                person[name] = value
                if name in ("email", "phone") and isinstance(value, str):
                    self.by_attr[(name, value.lower())] = key

    def delete(self, ident: Identifier) -> None:
        """Delete a person and their devices; a missing person is not an error.

        Args:
            ident: Who to delete.
        """
        with self.lock:
            key = self.resolve(ident)
            if key is not None:
                self._drop(key)

    def _drop(self, key: str) -> None:
        self.people.pop(key, None)
        self.devices.pop(key, None)
        self.cio_ids.pop(key, None)
        self.attr_times.pop(key, None)
        for index_key in [k for k, v in self.by_attr.items() if v == key]:
            del self.by_attr[index_key]

    def suppress(self, ident: Identifier, *, on: bool) -> None:
        """Suppress (delete and ignore from now on) or unsuppress a person.

        Args:
            ident: Who to suppress or unsuppress.
            on: True to suppress, False to unsuppress.
        """
        with self.lock:
            key = self._key(ident)
            if key is None:
                return
            if on:
                self._drop(key)
                self.suppressed.add(key)
            else:
                self.suppressed.discard(key)

    def merge(self, primary: Identifier, secondary: Identifier) -> None:
        """Merge ``secondary`` into ``primary`` and delete it; no-op when either is missing.

        Args:
            primary: The person who remains.
            secondary: The person merged away.
        """
        with self.lock:
            keep, gone = self.resolve(primary), self.resolve(secondary)
            if keep is None or gone is None or keep == gone:
                return
            target = self.people[keep]
            for name, value in self.people[gone].items():
                if target.get(name) in (None, ""):
                    target[name] = value
            self.events.setdefault(keep, []).extend(self.events.pop(gone, []))
            self.devices.setdefault(keep, {}).update(self.devices.get(gone, {}))
            self._drop(gone)

    # -- events and devices ---------------------------------------------------------------

    def add_event(self, ident: Identifier | None, event: dict[str, Any]) -> bool:
        """Record an event unless its ``id`` was seen before in the workspace.

        Args:
            ident: The person, or None for an anonymous event.
            event: The normalised event (``name``, ``id``, ``type``, ``timestamp``, ``data``).

        Returns:
            True when accepted, False when dropped as a duplicate or for a suppressed person.
        """
        with self.lock:
            event_id = event.get("id")
            if event_id is not None:
                if event_id in self.event_ids:
                    self.duplicates += 1
                    return False
                self.event_ids.add(event_id)
            if ident is None:
                self.anonymous.append(event)
            else:
                key = self._key(ident)
                if key is None or key in self.suppressed:
                    return False
                self.events.setdefault(key, []).append(event)
            self.accepted_events += 1
            return True

    def add_device(self, ident: Identifier, device: dict[str, Any]) -> None:
        """Add or update a device, keyed by its id or token.

        Args:
            ident: The device's owner.
            device: Device fields; must carry ``id``.
        """
        with self.lock:
            key = self._key(ident)
            if key is None or key in self.suppressed:
                return
            self.devices.setdefault(key, {})[str(device["id"])] = device

    def delete_device(self, ident: Identifier, device_id: str) -> None:
        """Remove a device; a missing device is not an error.

        Args:
            ident: The device's owner.
            device_id: The device id (token).
        """
        with self.lock:
            key = self.resolve(ident)
            if key is not None:
                self.devices.get(key, {}).pop(device_id, None)
