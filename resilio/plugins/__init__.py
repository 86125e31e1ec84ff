"""Plugins: hook specifications, the lazily built plugin manager and the built-in plugin.

``resilio.plugins.register(plugin)`` adds a plugin from code; entry points in the ``resilio``
group are discovered on first use. ``resilio.plugins.subscribe(listener)`` sends every event of
every pipeline to a listener. See ``docs/plugins.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilio.plugins._runtime import subscribe
    from resilio.plugins.hookspecs import hookimpl, hookspec
    from resilio.plugins.manager import register, unregister

__all__ = ["hookimpl", "hookspec", "register", "subscribe", "unregister"]

_LAZY = {
    "hookimpl": "resilio.plugins.hookspecs",
    "hookspec": "resilio.plugins.hookspecs",
    "register": "resilio.plugins.manager",
    "subscribe": "resilio.plugins._runtime",
    "unregister": "resilio.plugins.manager",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'resilio.plugins' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
