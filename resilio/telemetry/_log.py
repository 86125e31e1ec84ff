"""Where resilio's log lines go: structlog when the application configured it, else ``logging``.

resilio never configures logging. When the application has configured structlog
(``structlog.is_configured()``, checked at every line: log lines are on the slow path), lines go
to ``structlog.get_logger("resilio")``. Otherwise they go to the standard library logger
``"resilio"``, so they follow the application's ``logging`` configuration (without one, Python's
last-resort handler prints warnings and errors to stderr); structlog's unconfigured default
would print them to stdout. Either way a line is an event name and key-value fields (names,
numbers, states), never payloads.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["STDLIB_LOGGER", "log", "log_listener_error"]

_structlog = structlog.get_logger("resilio")

STDLIB_LOGGER = logging.getLogger("resilio")
"""The standard library logger used while structlog is not configured."""

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _text(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '="' for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def log(level: str, event: str, **fields: Any) -> None:
    """Log one line named ``event`` with key-value ``fields`` at ``level``.

    Args:
        level: ``"debug"``, ``"info"``, ``"warning"``, ``"error"`` or ``"critical"``.
        event: The line's name (``"resilio.retry.scheduled"``).
        fields: Names, numbers and states only; never arguments, results or messages.

    Through ``logging`` the message reads ``event key=value ...``; the record also carries
    ``resilio_event`` (the name) and ``resilio_fields`` (the dict) for structured handlers.
    """
    if structlog.is_configured():
        getattr(_structlog, level)(event, **fields)
        return
    number = _LEVELS[level]
    if not STDLIB_LOGGER.isEnabledFor(number):
        return
    pairs = " ".join(f"{key}={_text(value)}" for key, value in fields.items())
    STDLIB_LOGGER.log(
        number,
        "%s %s" if pairs else "%s%s",
        event,
        pairs,
        extra={"resilio_event": event, "resilio_fields": fields},
    )


def log_listener_error(listener: Any, event: Any) -> None:
    """Log that a listener raised while handling an event.

    Only names are logged (the listener, the event, the error's type), never values or messages,
    which may hold payloads.
    """
    error = sys.exc_info()[1]
    log(
        "error",
        "resilio.listener.failed",
        listener=getattr(listener, "__qualname__", type(listener).__qualname__),
        event_name=getattr(event, "name", type(event).__name__),
        error_type=type(error).__qualname__ if error is not None else None,
    )
