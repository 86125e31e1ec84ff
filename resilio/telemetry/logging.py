"""Structured logs of policy events, through structlog or the standard library's ``logging``.

Events are logged on the ``"resilio"`` logger: ``structlog.get_logger("resilio")`` when the
application has configured structlog, else the standard library logger ``"resilio"`` (see
:mod:`resilio.telemetry._log`; resilio configures neither). Each log line is named
``resilio.<event name>`` (``resilio.retry.scheduled``, ``resilio.circuit.opened``, ...) and carries
the event's fields as key-value pairs: pipeline, policy, operation, attempt and the event's own
fields. Events never hold arguments, results, payloads or exception messages, so neither do logs.

Levels: warning for scheduled retries, retries that gave up and circuits that opened; info for
circuits that closed; debug for everything else. A first-try success logs nothing (no event is
emitted for it).
"""

from __future__ import annotations

from typing import Any

import attrs

from resilio.events import CircuitClosed, CircuitOpened, Event, RetryGaveUp, RetryScheduled
from resilio.telemetry._log import log
from resilio.telemetry._settings import SWITCHES

__all__ = ["LEVELS", "log_event"]

LEVELS: dict[type[Event], str] = {
    RetryScheduled: "warning",
    RetryGaveUp: "warning",
    CircuitOpened: "warning",
    CircuitClosed: "info",
}
"""Log level per event class; classes not listed (and their subclasses' parents) log at debug."""

_FIELDS: dict[type, tuple[str, ...]] = {}


def _level(cls: type) -> str:
    for klass in cls.__mro__:
        level = LEVELS.get(klass)
        if level is not None:
            return level
    return "debug"


def event_fields(event: Event) -> dict[str, Any]:
    """Return an event's fields as a dict (``None`` values dropped)."""
    cls = type(event)
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in attrs.fields(cls))
        _FIELDS[cls] = names
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(event, name)
        if value is not None:
            out[name] = value
    return out


def log_event(event: Event) -> None:
    """Log one policy event at its level (a listener; off with ``configure(logging=False)``)."""
    if not SWITCHES.logging:
        return
    log(_level(type(event)), "resilio." + event.name, **event_fields(event))
