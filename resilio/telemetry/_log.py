"""Logging of resilio's own troubles (a listener that raised)."""

from __future__ import annotations

import sys
from typing import Any

import structlog

_logger = structlog.get_logger("resilio")


def log_listener_error(listener: Any, event: Any) -> None:
    """Log that a listener raised while handling an event.

    Only names are logged (the listener, the event, the error's type), never values or messages,
    which may hold payloads.
    """
    error = sys.exc_info()[1]
    _logger.error(
        "resilio.listener.failed",
        listener=getattr(listener, "__qualname__", type(listener).__qualname__),
        event_name=getattr(event, "name", type(event).__name__),
        error_type=type(error).__qualname__ if error is not None else None,
    )
