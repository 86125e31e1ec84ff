"""Plugins: hook specifications, the lazily built plugin manager and the built-in plugin.

``resilio.plugins.register(plugin)`` adds a plugin from code; entry points in the ``resilio``
group are discovered on first use. See ``docs/plugins.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilio.plugins.hookspecs import hookimpl, hookspec
    from resilio.plugins.manager import register, unregister

__all__ = ["hookimpl", "hookspec", "register", "unregister"]

_LAZY = {
    "hookimpl": "resilio.plugins.hookspecs",
    "hookspec": "resilio.plugins.hookspecs",
    "register": "resilio.plugins.manager",
    "unregister": "resilio.plugins.manager",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'resilio.plugins' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
