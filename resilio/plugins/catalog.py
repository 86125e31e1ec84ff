"""What plugins register: policy types, operations and store kinds, each with its provider.

The registries here are what the ``resilio_register_*`` hooks receive. Every entry remembers the
plugin that added it, so a clash names both plugins.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from resilio._operation import Operation
from resilio.errors import PluginError, ResilioError
from resilio.policies._base import Policy

__all__ = [
    "Catalog",
    "NotRegisteredError",
    "OperationRegistry",
    "PolicyTypeRegistry",
    "StoreKindRegistry",
    "StoreFactory",
]

V = TypeVar("V")
StoreFactory = Callable[..., Any]
"""Builds a store from the options of a ``stores:`` entry: ``factory(**options)``."""

_KIND = re.compile(r"^[a-z][a-z0-9_]*$")


class NotRegisteredError(ResilioError, LookupError):
    """A name (pipeline, operation, policy type, store) is not registered.

    The message lists the closest registered names.
    """


def close_matches(name: str, names: list[str] | Any) -> str:
    """Return a ``" (did you mean 'x'?)"`` suffix for ``name`` among ``names``, or ``""``."""
    found = difflib.get_close_matches(name, sorted(names), n=3, cutoff=0.6)
    if not found:
        return ""
    return " (did you mean " + " or ".join(repr(f) for f in found) + "?)"


def not_registered(what: str, name: str, names: Any) -> NotRegisteredError:
    """Build the error for an unknown ``name`` of a ``what``, with close matches."""
    known = sorted(names)
    hint = close_matches(name, known)
    if not hint:
        hint = f"; registered: {', '.join(repr(n) for n in known)}" if known else "; none"
    return NotRegisteredError(f"unknown {what} {name!r}{hint}")


class _Registry(Generic[V]):
    """A name → value table that records which plugin added each entry."""

    what = "entry"

    def __init__(self) -> None:
        self._items: dict[str, V] = {}
        self._providers: dict[str, str] = {}
        self.current_plugin = "code"

    def _put(self, name: str, value: V) -> None:
        if name in self._items:
            raise PluginError(
                f"plugin {self.current_plugin!r} registers {self.what} {name!r}, which plugin "
                f"{self._providers[name]!r} already registered"
            )
        self._items[name] = value
        self._providers[name] = self.current_plugin

    def get(self, name: str) -> V:
        """Return the entry called ``name``.

        Raises:
            NotRegisteredError: If there is none; the message suggests close names.
        """
        try:
            return self._items[name]
        except KeyError:
            raise not_registered(self.what, name, self._items) from None

    def provider(self, name: str) -> str:
        """Return the name of the plugin that registered ``name``."""
        return self._providers[name]

    def drop_provider(self, plugin: str) -> list[str]:
        """Remove every entry ``plugin`` registered (a faulty plugin is dropped whole).

        Returns:
            The names removed.
        """
        names = [name for name, provider in self._providers.items() if provider == plugin]
        for name in names:
            del self._items[name]
            del self._providers[name]
        return names

    def items(self) -> Mapping[str, V]:
        """Return every entry, by name."""
        return self._items

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class PolicyTypeRegistry(_Registry[type[Policy]]):
    """Policy classes by YAML type name (``"retry"``, ``"circuit_breaker"``...)."""

    what = "policy type"

    def add(self, policy_class: type[Policy], *, kind: str | None = None) -> None:
        """Register a policy class under ``kind`` (default: the class's ``kind``).

        The class must follow the policy convention: a ``kind``, a frozen attrs
        ``options_class`` and a ``from_options(options, *, name=None)`` classmethod.

        Raises:
            PluginError: If the class breaks the convention or the name is taken.
        """
        if not (isinstance(policy_class, type) and issubclass(policy_class, Policy)):
            raise PluginError(
                f"plugin {self.current_plugin!r} registers {policy_class!r}, which is not a "
                "Policy subclass"
            )
        name = kind if kind is not None else policy_class.kind
        problems = []
        if not isinstance(name, str) or not _KIND.match(name):
            problems.append(f"kind {name!r} is not a lower_snake_case name")
        options_class = getattr(policy_class, "options_class", None)
        if not (isinstance(options_class, type) and hasattr(options_class, "__attrs_attrs__")):
            problems.append("options_class is not an attrs class")
        if not callable(getattr(policy_class, "from_options", None)):
            problems.append("from_options() is missing")
        if problems:
            raise PluginError(
                f"plugin {self.current_plugin!r} registers policy class "
                f"{policy_class.__qualname__}: " + "; ".join(problems)
            )
        self._put(name, policy_class)


class OperationRegistry(_Registry[Operation]):
    """Operations by name (``"customerio.track"``)."""

    what = "operation"

    def add(self, operation: Operation) -> None:
        """Register an operation.

        Raises:
            PluginError: If it is not an :class:`resilio.Operation` or the name is taken.
        """
        if not isinstance(operation, Operation):
            raise PluginError(
                f"plugin {self.current_plugin!r} registers {type(operation).__name__}, "
                "not a resilio.Operation"
            )
        self._put(operation.name, operation)


class StoreKindRegistry(_Registry[StoreFactory]):
    """Store factories by kind (``"memory"``, ``"sqlite"``, ``"redis"``)."""

    what = "store kind"

    def __init__(self) -> None:
        super().__init__()
        self._options: dict[str, dict[str, Any]] = {}

    def add(
        self, kind: str, factory: StoreFactory, *, options: Mapping[str, Any] | None = None
    ) -> None:
        """Register ``factory`` for stores of ``kind``; it is called as ``factory(**options)``.

        Args:
            kind: The ``kind`` value of a ``stores:`` entry.
            factory: Builds the store from the entry's other keys.
            options: The options it takes, name → type annotation (``{"url": str,
                "socket_timeout": float}``), so configuration files get conversions
                (durations), "did you mean" errors and a schema for them; ``None`` passes the
                options unchecked.

        Raises:
            PluginError: If ``kind`` is not a lower_snake_case name, ``factory`` is not
                callable, or the kind is taken.
        """
        if not isinstance(kind, str) or not _KIND.match(kind) or not callable(factory):
            raise PluginError(
                f"plugin {self.current_plugin!r} registers store kind {kind!r} with "
                f"{factory!r}: the kind must be lower_snake_case and the factory callable"
            )
        self._put(kind, factory)
        if options is not None:
            self.describe(kind, options)

    def drop_provider(self, plugin: str) -> list[str]:
        """Remove every store kind ``plugin`` registered, with its declared options.

        Returns:
            The kinds removed.
        """
        names = super().drop_provider(plugin)
        for name in names:
            self._options.pop(name, None)
        return names

    def describe(self, kind: str, options: Mapping[str, Any]) -> None:
        """Declare the options (name → type annotation) of a registered store kind.

        Raises:
            NotRegisteredError: If ``kind`` is not registered.
        """
        self.get(kind)
        self._options[kind] = dict(options)

    def options(self, kind: str) -> Mapping[str, Any] | None:
        """Return the declared options of ``kind`` (name → type), or ``None`` if undeclared."""
        return self._options.get(kind)


class Catalog:
    """Everything the plugins registered.

    Attributes:
        policy_types: Policy classes by YAML type name.
        operations: Operations by name.
        store_kinds: Store factories by kind.
    """

    def __init__(self) -> None:
        self.policy_types = PolicyTypeRegistry()
        self.operations = OperationRegistry()
        self.store_kinds = StoreKindRegistry()
