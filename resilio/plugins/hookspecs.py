"""The hooks a resilio plugin can implement.

A plugin is a module or object whose functions are decorated with :data:`resilio.hookimpl` and
named after these specifications. Hooks are always called with keyword arguments, so an
implementation may accept only the arguments it needs. Plugins are found through the
``resilio`` entry-point group; see ``docs/plugins.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from resilio._context import Context
    from resilio.classify import Classification
    from resilio.events import Event
    from resilio.plugins.catalog import OperationRegistry, PolicyTypeRegistry, StoreKindRegistry

__all__ = [
    "PROJECT",
    "hookimpl",
    "hookspec",
    "resilio_classify",
    "resilio_event",
    "resilio_register_operations",
    "resilio_register_policies",
    "resilio_register_stores",
]

PROJECT = "resilio"
"""The pluggy project name, also the entry-point group plugins are published under."""

hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks a function as a resilio hook specification."""

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin function as the implementation of a resilio hook."""


@hookspec
def resilio_register_policies(registry: PolicyTypeRegistry) -> None:
    """Register policy types, so configuration files can declare them by their YAML name.

    Call ``registry.add(PolicyClass)``; the class's ``kind`` is its YAML name. A name that
    another plugin already registered is a :class:`resilio.PluginError`.

    Args:
        registry: Where policy classes are registered.
    """


@hookspec
def resilio_register_operations(registry: OperationRegistry) -> None:
    """Register the named operations an adapter offers (``"customerio.track"``).

    Call ``registry.add(resilio.Operation(...))`` for each. Operations give classifiers and
    idempotency to pipelines that run them, and handlers to replay queued work by name.

    Args:
        registry: Where operations are registered.
    """


@hookspec
def resilio_register_stores(registry: StoreKindRegistry) -> None:
    """Register store kinds that a configuration's ``stores:`` section can declare.

    Call ``registry.add("redis", factory)``; ``factory(**options)`` receives the options of a
    store entry (every key but ``kind``) and returns the store.

    Args:
        registry: Where store kinds are registered.
    """


@hookspec(firstresult=True)
def resilio_classify(error: BaseException, context: Context) -> Classification | None:
    """Classify a failure that neither the pipeline's nor the operation's classifier claimed.

    Called only when a call fails. The first implementation that returns a
    :class:`resilio.Classification` wins (``firstresult``); return ``None`` to pass.

    Args:
        error: The exception the call failed with.
        context: The execution context (``context.operation`` names the operation).

    Returns:
        The classification, or ``None`` to let the next plugin or the default decide.
    """


@hookspec
def resilio_event(event: Event) -> None:
    """Observe every event of every pipeline (retries, breaker transitions, rejections...).

    Called only when an event happens, never on a first-try success. An exception raised here
    is logged and dropped; it never breaks the call.

    Args:
        event: The event.
    """
