"""The plugin manager: built lazily on first use from the built-in plugin and entry points.

External plugins are published under the ``resilio`` entry-point group::

    [project.entry-points.resilio]
    acme = "acme_resilio.plugin"

``RESILIO_DISABLE_PLUGINS=acme,other`` blocks plugins by entry-point name. A plugin that fails to
import, implements an unknown hook, raises in a register hook or registers a name another plugin
took is dropped on its own: the built system keeps every other plugin (their hooks, policy types,
operations and store kinds), and remembers the problems. :func:`plugin_system` (what
configuration loading and the ``resilio`` command use) then raises one :class:`resilio.PluginError`
naming every faulty plugin; pipelines built in code use the system without the faulty plugins.
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
        plugins: Every working plugin, built-in first, then entry points, then ones registered in
            code (a dropped plugin is not listed).
        problems: Every problem found, in full (what :class:`resilio.PluginError` lists).
        failed: The dropped plugins: name → what went wrong, names only (no error messages,
            which may hold data), for log lines.
    """

    def __init__(
        self,
        manager: pluggy.PluginManager,
        catalog: Catalog,
        plugins: list[PluginInfo],
        problems: list[str] | None = None,
        failed: dict[str, tuple[str, ...]] | None = None,
    ):
        self.manager = manager
        self.catalog = catalog
        self.plugins = plugins
        self.problems = problems or []
        self.failed = failed or {}


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


class _Problems:
    """The problems of one build, each charged to the plugin that caused it."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.failed: dict[str, list[str]] = {}
        self.to_drop: set[str] = set()

    def add(self, plugin: str, message: str, reason: str, *, registered: bool = True) -> None:
        """Record ``message`` (full) and ``reason`` (names only) against ``plugin``.

        ``registered=False`` for a plugin that never got into the manager: nothing to drop (and
        another plugin registered under the same name must stay).
        """
        self.messages.append(message)
        self.failed.setdefault(plugin, []).append(reason)
        if registered:
            self.to_drop.add(plugin)


def _register(pm: pluggy.PluginManager, plugin: object, name: str, problems: _Problems) -> bool:
    try:
        pm.register(plugin, name=name)
    except ValueError as exc:
        message = f"plugin {name!r} could not be registered: {exc}"
        problems.add(name, message, "not registered", registered=False)
        return False
    except pluggy.PluginValidationError as exc:
        message = f"plugin {name!r} has an invalid hook: {exc}"
        problems.add(name, message, "invalid hook", registered=False)
        return False
    return True


def _hooks_of(pm: pluggy.PluginManager, plugin: object) -> tuple[str, ...]:
    callers = pm.get_hookcallers(plugin) or []
    return tuple(sorted(c.name for c in callers))


def _unknown_hooks(pm: pluggy.PluginManager, problems: _Problems) -> None:
    for name, caller in vars(pm.hook).items():
        if name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if not impl.optionalhook:
                problems.add(
                    impl.plugin_name,
                    f"plugin {impl.plugin_name!r} implements unknown hook {name!r}",
                    f"unknown hook {name}",
                )


def _fill(pm: pluggy.PluginManager, problems: _Problems) -> Catalog:
    result = Catalog()
    for hook_name, attr in _REGISTER_HOOKS.items():
        registry = getattr(result, attr)
        caller = getattr(pm.hook, hook_name)
        # The built-in plugin registers first whatever other plugins' tryfirst/trylast say, so
        # a plugin taking a built-in name is the one charged with the clash (and dropped).
        impls = sorted(caller.get_hookimpls(), key=lambda impl: impl.plugin_name != BUILTIN)
        for impl in impls:
            registry.current_plugin = impl.plugin_name
            try:
                impl.function(**dict.fromkeys(impl.argnames, registry))
            except PluginError as exc:
                for message in exc.problems:
                    problems.add(impl.plugin_name, message, f"refused in {hook_name}")
            except Exception as exc:  # any plugin bug is reported by name
                problems.add(
                    impl.plugin_name,
                    f"plugin {impl.plugin_name!r} failed in {hook_name}: "
                    f"{type(exc).__name__}: {exc}",
                    f"{type(exc).__qualname__} in {hook_name}",
                )
        registry.current_plugin = "code"
    return result


def _drop(pm: pluggy.PluginManager, filled: Catalog, name: str) -> None:
    """Remove a faulty plugin: its hooks and whatever it registered before failing."""
    if pm.get_plugin(name) is not None:
        pm.unregister(name=name)
    for registry in (filled.policy_types, filled.operations, filled.store_kinds):
        registry.drop_provider(name)


def _build() -> PluginSystem:
    from resilio.plugins import builtin

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    problems = _Problems()
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
            problems.add(
                ep.name,
                f"plugin {ep.name!r} ({ep.value}{where}) failed to load: "
                f"{type(exc).__name__}: {exc}; set {DISABLE_ENV}={ep.name} to skip it",
                f"{type(exc).__qualname__} on import",
                registered=False,
            )
            continue
        if _register(pm, plugin, ep.name, problems):
            infos.append(PluginInfo(ep.name, ep.value, dist, False, _hooks_of(pm, plugin)))
    for name, plugin in _extra.items():
        if _register(pm, plugin, name, problems):
            infos.append(PluginInfo(name, "code", None, False, _hooks_of(pm, plugin)))
    _unknown_hooks(pm, problems)
    filled = _fill(pm, problems)
    for name in problems.to_drop:
        _drop(pm, filled, name)
    infos = [info for info in infos if info.name not in problems.to_drop]
    failed = {name: tuple(reasons) for name, reasons in problems.failed.items()}
    return PluginSystem(pm, filled, infos, problems.messages, failed)


def _error(system: PluginSystem) -> PluginError:
    problems = system.problems
    return PluginError(f"{len(problems)} plugin problem(s): " + "; ".join(problems), problems)


def plugin_system(*, strict: bool = True) -> PluginSystem:
    """Return the plugin system, building it on first use.

    A faulty plugin is dropped on its own; the others keep working. The build is kept until
    :func:`reset`, so the problems are found (and faulty plugins imported) once.

    Args:
        strict: Raise if any plugin was dropped (default). ``False`` returns the system without
            the faulty plugins; its ``problems`` and ``failed`` say what went wrong.

    Returns:
        The plugin manager, the catalog and the plugin list.

    Raises:
        PluginError: If ``strict`` and a plugin failed to load or to register (every problem is
            listed).
    """
    global _system
    system = _system
    if system is None:
        with _lock:
            if _system is None:
                _system = _build()
                from resilio.plugins import _runtime

                _runtime.install(_system)
            system = _system
    if strict and system.problems:
        raise _error(system)
    return system


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
