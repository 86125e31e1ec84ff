"""The built-in plugin: registers resilio's own policy types and store kinds.

The core registers its policies through the same hook as any plugin does, so a configuration
file sees built-in and plugin policy types alike.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from resilio.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from resilio.plugins.catalog import PolicyTypeRegistry, StoreKindRegistry

__all__ = [
    "BUILTIN_POLICIES",
    "MemoryStores",
    "resilio_register_policies",
    "resilio_register_stores",
]

BUILTIN_POLICIES: dict[str, tuple[str, str]] = {
    "fallback": ("resilio.policies.fallback", "Fallback"),
    "timeout": ("resilio.policies.timeout", "Timeout"),
    "retry": ("resilio.policies.retry", "Retry"),
    "circuit_breaker": ("resilio.policies.circuit_breaker", "CircuitBreaker"),
    "rate_limiter": ("resilio.policies.rate_limiter", "RateLimiter"),
    "bulkhead": ("resilio.policies.bulkhead", "Bulkhead"),
    "idempotency": ("resilio.policies.idempotency", "Idempotency"),
}
"""YAML type name → (module, class) of every built-in policy."""


def _optional_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None  # not part of this build
        raise


@hookimpl
def resilio_register_policies(registry: PolicyTypeRegistry) -> None:
    """Register the built-in policy types under their YAML names."""
    for kind, (module_name, class_name) in BUILTIN_POLICIES.items():
        module = _optional_module(module_name)
        if module is not None:
            registry.add(getattr(module, class_name), kind=kind)


_MEMORY_CLASSES = {
    "circuit_breaker": "MemoryBreakerStore",
    "rate_limiter": "MemoryRateLimitStore",
    "idempotency": "MemoryIdempotencyStore",
}


class MemoryStores:
    """The ``memory`` store kind: in-process state, shared by the policies that name it.

    Each policy type gets its own in-memory store (breaker, rate limiter, idempotency) from
    :meth:`for_policy`; policies of one type naming the same store share it.
    """

    def for_policy(self, kind: str) -> Any:
        """Return a new in-memory store for policies of ``kind``.

        Raises:
            ValueError: If no in-memory store exists for that policy type.
        """
        memory = _optional_module("resilio.stores.memory")
        class_name = _MEMORY_CLASSES.get(kind)
        factory = getattr(memory, class_name, None) if memory and class_name else None
        if factory is None:
            raise ValueError(f"there is no in-memory store for {kind} policies")
        return factory()


def _memory_store(**options: Any) -> Any:
    if options:
        raise TypeError(f"a memory store takes no options, found {', '.join(sorted(options))}")
    factory = _optional_module("resilio.stores.factory")
    store_class = getattr(factory, "MemoryStore", None) if factory is not None else None
    return store_class() if store_class is not None else MemoryStores()


_STORE_OPTIONS: dict[str, dict[str, Any]] = {
    "memory": {},
    "sqlite": {"path": str, "busy_timeout": float},
    "redis": {"url": str, "prefix": str, "socket_timeout": float, "cooldown": float},
}
"""The options of the built-in store kinds, for conversions, errors and the schema."""


@hookimpl
def resilio_register_stores(registry: StoreKindRegistry) -> None:
    """Register the store kinds that ship with resilio.

    ``resilio.stores.factory`` contributes its kinds (``sqlite``, ``redis``) through its
    ``register_store_kinds(registry)`` function; ``memory`` (in-process state) is always there.
    """
    stores = _optional_module("resilio.stores.factory")
    register = getattr(stores, "register_store_kinds", None) if stores is not None else None
    if register is not None:
        register(registry)
    if "memory" not in registry:
        registry.add("memory", _memory_store)
    from resilio.plugins.catalog import StoreKindRegistry

    if not isinstance(registry, StoreKindRegistry):
        return  # a registry that only takes factories
    for kind, options in _STORE_OPTIONS.items():
        if kind in registry and registry.options(kind) is None:
            registry.describe(kind, options)
