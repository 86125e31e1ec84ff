"""The plugin manager: built lazily on first use from the built-in plugin and entry points.

External plugins are published under the ``resilio`` entry-point group::

    [project.entry-points.resilio]
    acme = "acme_resilio.plugin"

``RESILIO_DISABLE_PLUGINS=acme,other`` blocks plugins by entry-point name. A plugin that fails to
import, implements an unknown hook or registers a name another plugin took makes the whole build
fail with one :class:`resilio.PluginError` naming every faulty plugin.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy
from attrs import frozen

from resilio.errors import PluginError
from resilio.plugins import hookspecs
from resilio.plugins.catalog import Catalog

__all__ = [
    "BUILTIN",
    "DISABLE_ENV",
    "PluginInfo",
    "PluginSystem",
    "catalog",
    "get_plugin_manager",
    "plugin_system",
    "register",
    "reset",
    "unregister",
]

BUILTIN = "resilio.builtin"
"""The name the built-in plugin is registered under."""

DISABLE_ENV = "RESILIO_DISABLE_PLUGINS"
"""Environment variable: comma-separated entry-point names of plugins not to load."""

_REGISTER_HOOKS = {
    "resilio_register_policies": "policy_types",
    "resilio_register_operations": "operations",
    "resilio_register_stores": "store_kinds",
}


@frozen
class PluginInfo:
    """One plugin as ``resilio plugins`` shows it.

    Attributes:
        name: The entry-point name (or the name given to :func:`register`).
        source: Where it came from: the entry point's target, ``"builtin"`` or ``"code"``.
        distribution: The distribution that declares the entry point, if any.
        blocked: Whether ``RESILIO_DISABLE_PLUGINS`` blocked it.
        hooks: The hooks it implements.
    """

    name: str
    source: str
    distribution: str | None = None
    blocked: bool = False
    hooks: tuple[str, ...] = ()


class PluginSystem:
    """A built plugin manager and what its plugins registered.

    Attributes:
        manager: The pluggy plugin manager.
        catalog: Policy types, operations and store kinds.
        plugins: Every plugin, built-in first, then entry points, then ones registered in code.
    """

    def __init__(self, manager: pluggy.PluginManager, catalog: Catalog, plugins: list[PluginInfo]):
        self.manager = manager
        self.catalog = catalog
        self.plugins = plugins


_lock = threading.RLock()
_system: PluginSystem | None = None
_extra: dict[str, object] = {}


def _blocked_names() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _entry_points() -> list[EntryPoint]:
    seen: dict[str, EntryPoint] = {}
    found: list[EntryPoint] = []
    for ep in entry_points(group=hookspecs.PROJECT):
        if ep.name in seen and seen[ep.name].value == ep.value:
            continue  # the same distribution found twice on sys.path
        seen[ep.name] = ep
        found.append(ep)
    return found


def _dist_name(ep: EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return None if dist is None else str(dist.metadata["Name"] or "") or None


def _register(pm: pluggy.PluginManager, plugin: object, name: str, problems: list[str]) -> bool:
    try:
        pm.register(plugin, name=name)
    except ValueError as exc:
        problems.append(f"plugin {name!r} could not be registered: {exc}")
        return False
    except pluggy.PluginValidationError as exc:
        problems.append(f"plugin {name!r} has an invalid hook: {exc}")
        return False
    return True


def _hooks_of(pm: pluggy.PluginManager, plugin: object) -> tuple[str, ...]:
    callers = pm.get_hookcallers(plugin) or []
    return tuple(sorted(c.name for c in callers))


def _unknown_hooks(pm: pluggy.PluginManager) -> list[str]:
    found = []
    for name, caller in vars(pm.hook).items():
        if name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if not impl.optionalhook:
                found.append(f"plugin {impl.plugin_name!r} implements unknown hook {name!r}")
    return found


def _fill(pm: pluggy.PluginManager, problems: list[str]) -> Catalog:
    result = Catalog()
    for hook_name, attr in _REGISTER_HOOKS.items():
        registry = getattr(result, attr)
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            registry.current_plugin = impl.plugin_name
            try:
                impl.function(**dict.fromkeys(impl.argnames, registry))
            except PluginError as exc:
                problems.extend(exc.problems)
            except Exception as exc:  # any plugin bug is reported by name
                problems.append(
                    f"plugin {impl.plugin_name!r} failed in {hook_name}: "
                    f"{type(exc).__name__}: {exc}"
                )
        registry.current_plugin = "code"
    return result


def _build() -> PluginSystem:
    from resilio.plugins import builtin

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    problems: list[str] = []
    infos: list[PluginInfo] = []
    pm.register(builtin, name=BUILTIN)
    infos.append(PluginInfo(BUILTIN, "builtin", None, False, _hooks_of(pm, builtin)))
    blocked = _blocked_names()
    for ep in _entry_points():
        dist = _dist_name(ep)
        if ep.name in blocked:
            pm.set_blocked(ep.name)
            infos.append(PluginInfo(ep.name, ep.value, dist, True))
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # reported with the plugin's name
            where = f" from distribution {dist!r}" if dist else ""
            problems.append(
                f"plugin {ep.name!r} ({ep.value}{where}) failed to load: "
                f"{type(exc).__name__}: {exc}; set {DISABLE_ENV}={ep.name} to skip it"
            )
            continue
        if _register(pm, plugin, ep.name, problems):
            infos.append(PluginInfo(ep.name, ep.value, dist, False, _hooks_of(pm, plugin)))
    for name, plugin in _extra.items():
        if _register(pm, plugin, name, problems):
            infos.append(PluginInfo(name, "code", None, False, _hooks_of(pm, plugin)))
    problems.extend(_unknown_hooks(pm))
    filled = _fill(pm, problems)
    if problems:
        raise PluginError(f"{len(problems)} plugin problem(s): " + "; ".join(problems), problems)
    return PluginSystem(pm, filled, infos)


def plugin_system() -> PluginSystem:
    """Return the plugin system, building it on first use.

    Returns:
        The plugin manager, the catalog and the plugin list.

    Raises:
        PluginError: If a plugin failed to load or to register (every problem is listed).
    """
    global _system
    system = _system
    if system is not None:
        return system
    with _lock:
        if _system is None:
            _system = _build()
            from resilio.plugins import _runtime

            _runtime.install(_system)
        return _system


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the pluggy plugin manager, building it on first use.

    Raises:
        PluginError: If a plugin failed to load or to register.
    """
    return plugin_system().manager


def catalog() -> Catalog:
    """Return what the plugins registered, building the plugin manager on first use.

    Raises:
        PluginError: If a plugin failed to load or to register.
    """
    return plugin_system().catalog


def register(plugin: object, name: str | None = None) -> str:
    """Register a plugin object from code (an application's own adapter, a test's plugin).

    The plugin system is rebuilt on next use, so the plugin's policy types and operations appear.

    Args:
        plugin: A module, class or object with :data:`resilio.hookimpl` functions.
        name: Its name in errors and listings (default: the module or class name).

    Returns:
        The name it was registered under.
    """
    if name is None:
        name = str(getattr(plugin, "__name__", None) or type(plugin).__qualname__)
    with _lock:
        _extra[name] = plugin
        reset(keep_registered=True)
    return name


def unregister(name: str) -> None:
    """Remove a plugin added with :func:`register`; unknown names are ignored."""
    with _lock:
        _extra.pop(name, None)
        reset(keep_registered=True)


def reset(*, keep_registered: bool = False) -> None:
    """Forget the built plugin system so the next use discovers plugins again.

    Args:
        keep_registered: Keep the plugins added with :func:`register` (default: drop them).
    """
    global _system
    with _lock:
        _system = None
        if not keep_registered:
            _extra.clear()
        from resilio.plugins import _runtime

        _runtime.uninstall()


def hook_caller(name: str) -> Callable[..., Any] | None:
    """Return ``manager.hook.<name>`` if any plugin implements it, else ``None``."""
    caller = getattr(plugin_system().manager.hook, name)
    return caller if caller.get_hookimpls() else None
