"""Logging of resilio's own troubles (a listener that raised)."""

from __future__ import annotations

from typing import Any

import structlog

_logger = structlog.get_logger("resilio")


def log_listener_error(listener: Any, event: Any) -> None:
    """Log that a listener raised while handling an event, without the event's values."""
    _logger.exception(
        "resilio.listener.failed",
        listener=getattr(listener, "__qualname__", type(listener).__qualname__),
        event=getattr(event, "name", type(event).__name__),
    )
