"""The plugin system as the pipeline's hot code sees it: cheap when nobody registered anything.

The plugin manager is built when the first :class:`resilio.Pipeline` is constructed
(:func:`prepare`), never when resilio is imported: discovering entry points and importing plugins
takes tens to hundreds of milliseconds, which a first failure must not pay (on an event loop it
would block every task). The other functions are called only on the failure path
(classification) or when an event happens; they build the manager themselves if it was reset
since. A broken plugin is dropped on its own: the other plugins keep classifying, observing and
providing operations; each dropped plugin is logged once per build (``resilio.plugins.failed``,
names only), and configuration loading and the ``resilio`` command report the error itself. Log
lines go
through :func:`resilio.telemetry._log.log` (structlog if the application configured it, else the
standard ``logging`` logger ``"resilio"``), never to stdout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from resilio._context import Context
    from resilio._operation import Operation
    from resilio.classify import Classification
    from resilio.events import Event, Listener
    from resilio.plugins.manager import PluginSystem

__all__ = [
    "add_global_listener",
    "apply_operation",
    "classify_operation",
    "classify_with_plugins",
    "emit_event",
    "install",
    "prepare",
    "remove_global_listener",
    "subscribe",
    "uninstall",
]

_global_listeners: list[Listener] = []

# Filled by install() when the plugin system is built; _loaded is False until then.
_loaded = False
_operations: Mapping[str, Operation] = {}
_classify_hook: Callable[..., Any] | None = None
_event_impls: tuple[tuple[str, Callable[..., Any]], ...] = ()
# The dropped plugins of the installed build not yet logged: plugin name → names-only reasons.
_unreported: Mapping[str, tuple[str, ...]] = {}
# True while _load() builds the plugin system: a plugin that constructs a pipeline while it is
# being imported must not start a second, nested build.
_preparing = False


def add_global_listener(listener: Listener) -> None:
    """Send every event of every pipeline to ``listener`` too."""
    _global_listeners.append(listener)


def remove_global_listener(listener: Listener) -> None:
    """Stop sending events to a listener added with :func:`add_global_listener`."""
    _global_listeners.remove(listener)


def subscribe(listener: Listener) -> Callable[[], None]:
    """Send every event of every pipeline to ``listener`` until the returned function is called.

    Events come only when something happens (a retry, a breaker transition, a rejection), never
    on a first-try success. A listener that raises is logged as ``resilio.observer.failed`` at
    error level (its name, the event's name and the error's type; never the error's message);
    the call goes on.

    Args:
        listener: Called with each :class:`resilio.events.Event`.

    Returns:
        ``unsubscribe()``: stops the events; calling it again does nothing.
    """
    _global_listeners.append(listener)

    def unsubscribe() -> None:
        if listener in _global_listeners:  # not yet unsubscribed
            _global_listeners.remove(listener)

    return unsubscribe


def install(system: PluginSystem) -> None:
    """Make the hot path use a freshly built plugin system (called by the manager)."""
    global _loaded, _operations, _classify_hook, _event_impls, _unreported
    hook = system.manager.hook
    _operations = system.catalog.operations.items()
    _classify_hook = hook.resilio_classify if hook.resilio_classify.get_hookimpls() else None
    # Called one by one (in pluggy's order), so one failing observer does not silence others.
    _event_impls = tuple(
        (impl.plugin_name, impl.function) for impl in reversed(hook.resilio_event.get_hookimpls())
    )
    # Logged on the call path (prepare, or the first failure), not here: the ``resilio`` command
    # builds the system too, and reports the problems itself.
    _unreported = dict(system.failed)
    _loaded = True


def uninstall() -> None:
    """Forget the plugin system; the next failure or event builds it again."""
    global _loaded, _operations, _classify_hook, _event_impls, _unreported
    _loaded = False
    _unreported = {}
    _operations = {}
    _classify_hook = None
    _event_impls = ()


def prepare() -> None:
    """Build the plugin system now unless it is built (called when a pipeline is constructed).

    Pipelines call this from their constructor so that plugin discovery happens once, up front,
    rather than inside the first failing call. Nothing happens if the system is already built or
    being built; a broken plugin is dropped and logged, and pipelines run with the others.
    """
    if not _loaded:
        _load()
    elif _unreported:
        _report()


def _load() -> None:
    global _preparing
    if _preparing:  # a plugin builds a pipeline while it is imported: no nested build
        return
    from resilio.plugins import manager

    _preparing = True
    try:
        manager.plugin_system(strict=False)  # drops faulty plugins instead of raising
    finally:
        _preparing = False
    _report()


def _report() -> None:
    """Log each plugin the installed build dropped, once: its name and what failed, no message."""
    global _unreported
    failed, _unreported = _unreported, {}
    if not failed:
        return
    from resilio.telemetry._log import log

    for plugin, reasons in failed.items():
        log("warning", "resilio.plugins.failed", plugin=plugin, reason="; ".join(reasons))


def apply_operation(error: BaseException, context: Context) -> None:
    """Fill ``context.idempotent`` from the context's registered operation; classify nothing.

    The pipeline runs this first of its classifiers, so a failure's context knows whether the
    operation may be repeated (what the retry policy asks of an AMBIGUOUS failure) whichever
    classifier then answers. Runs only when a call fails; a caller's explicit value is kept.
    """
    if context.idempotent is None and context.operation:
        if not _loaded:
            _load()
        operation = _operations.get(context.operation)
        if operation is not None:
            context.idempotent = operation.idempotent


def classify_operation(error: BaseException, context: Context) -> Classification | None:
    """Classify with the classifier of the context's registered operation, if it has one."""
    if not _loaded:
        _load()
    operation = _operations.get(context.operation) if context.operation else None
    if operation is None or operation.classifier is None:
        return None
    return operation.classifier(error, context)


def classify_with_plugins(error: BaseException, context: Context) -> Classification | None:
    """Ask the ``resilio_classify`` hook; the first non-``None`` answer wins."""
    if not _loaded:
        _load()
    hook = _classify_hook
    if hook is None:
        return None
    result: Classification | None = hook(error=error, context=context)
    return result


def emit_event(event: Event) -> None:
    """Send an event to global listeners and the ``resilio_event`` hook implementations.

    A listener or hook implementation that raises is logged as ``resilio.observer.failed`` (names
    and the error's type only); the call goes on.
    """
    if not _loaded:
        _load()
    for listener in tuple(_global_listeners):
        try:
            listener(event)
        except Exception as exc:  # a listener must never break a call
            name = getattr(listener, "__qualname__", None) or type(listener).__qualname__
            _log_failure("listener", name, event, exc)
    for plugin, function in _event_impls:
        try:
            function(event=event)
        except Exception as exc:  # a plugin must never break a call
            _log_failure("plugin", plugin, event, exc)


def _log_failure(what: str, who: str, event: Event, error: Exception) -> None:
    # Names only: the error's message and traceback may hold the event's or the call's data.
    from resilio.telemetry._log import log

    log(
        "error",
        "resilio.observer.failed",
        observer=what,
        name=who,
        event_name=event.name,
        error_type=type(error).__qualname__,
    )
