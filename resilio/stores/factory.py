"""Build stores from configuration mappings such as ``{"kind": "redis", "url": "redis://..."}``.

The YAML ``stores:`` section names stores; each entry is a mapping with a ``kind`` and that
kind's options. Built-in kinds:

* ``memory`` - this process only (no options);
* ``sqlite`` - processes of one host: ``path`` (default ``resilio-state.sqlite3``);
* ``redis`` - processes on many machines: ``url`` (required), ``prefix``, ``socket_timeout``,
  ``cooldown``.

Every store made here implements the breaker, rate-limiter and idempotency protocols. Plugins
and applications may add kinds with :func:`register_store_kind`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from resilio.errors import ConfigError
from resilio.stores.memory import MemoryBreakerStore, MemoryIdempotencyStore, MemoryRateLimitStore

__all__ = [
    "MemoryStore",
    "StoreFactory",
    "make_store",
    "register_store_kind",
    "register_store_kinds",
    "store_kinds",
]

StoreFactory = Callable[[Mapping[str, Any]], object]
"""Makes a store from the options of its mapping (everything but ``kind``)."""


class MemoryStore:
    """The three in-memory stores as one object, for configurations that name a memory store.

    Attributes:
        breakers: The breaker store.
        limiters: The rate-limit store.
        idempotency: The idempotency store.
    """

    def __init__(self) -> None:
        self.breakers = MemoryBreakerStore()
        self.limiters = MemoryRateLimitStore()
        self.idempotency = MemoryIdempotencyStore()
        b, r, i = self.breakers, self.limiters, self.idempotency
        self.load, self.load_async = b.load, b.load_async
        self.record, self.record_async = b.record, b.record_async
        self.transition, self.transition_async = b.transition, b.transition_async
        self.acquire, self.acquire_async = r.acquire, r.acquire_async
        self.reserve, self.reserve_async = i.reserve, i.reserve_async
        self.complete, self.complete_async = i.complete, i.complete_async
        self.release, self.release_async = i.release, i.release_async


def _check(kind: str, options: Mapping[str, Any], allowed: set[str], required: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    missing = sorted(required - set(options))
    problems = [f"store (kind {kind}): unknown option {k!r}" for k in unknown]
    problems += [f"store (kind {kind}): missing option {k!r}" for k in missing]
    if problems:
        raise ConfigError(problems[0], problems)


def _memory(options: Mapping[str, Any]) -> object:
    _check("memory", options, set(), set())
    return MemoryStore()


def _sqlite(options: Mapping[str, Any]) -> object:
    from resilio.stores.sqlite import DEFAULT_PATH, SQLiteStore

    _check("sqlite", options, {"path", "busy_timeout"}, set())
    return SQLiteStore(
        options.get("path", DEFAULT_PATH), busy_timeout=float(options.get("busy_timeout", 5.0))
    )


def _redis(options: Mapping[str, Any]) -> object:
    from resilio.stores.redis import RedisStore

    _check("redis", options, {"url", "prefix", "socket_timeout", "cooldown"}, {"url"})
    return RedisStore(
        str(options["url"]),
        prefix=str(options.get("prefix", "resilio")),
        socket_timeout=float(options.get("socket_timeout", 0.25)),
        cooldown=float(options.get("cooldown", 1.0)),
    )


_KINDS: dict[str, StoreFactory] = {"memory": _memory, "sqlite": _sqlite, "redis": _redis}


def register_store_kind(kind: str, factory: StoreFactory, *, replace: bool = False) -> None:
    """Add a store kind usable in configuration mappings.

    Args:
        kind: The ``kind`` value that selects it.
        factory: Called with the mapping's other keys; returns the store.
        replace: Allow replacing an existing kind.

    Raises:
        ValueError: If ``kind`` exists and ``replace`` is false.
    """
    if kind in _KINDS and not replace:
        raise ValueError(f"store kind {kind!r} is already registered")
    _KINDS[kind] = factory


def store_kinds() -> list[str]:
    """Return the registered store kinds, sorted."""
    return sorted(_KINDS)


def make_store(spec: Mapping[str, Any]) -> object:
    """Build a store from a mapping with a ``kind`` and that kind's options.

    Args:
        spec: For example ``{"kind": "redis", "url": "redis://cache:6379/0"}``.

    Returns:
        The store (implementing the breaker, rate-limiter and idempotency protocols).

    Raises:
        ConfigError: If ``kind`` is missing or unknown, or an option is unknown or missing.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"a store must be a mapping with a 'kind', got {type(spec).__name__}")
    options = dict(spec)
    kind = options.pop("kind", None)
    if kind is None:
        raise ConfigError(f"store needs a 'kind' (one of {', '.join(store_kinds())})")
    factory = _KINDS.get(str(kind))
    if factory is None:
        raise ConfigError(f"unknown store kind {kind!r} (known: {', '.join(store_kinds())})")
    return factory(options)


def register_store_kinds(registry: Any) -> None:
    """Add the ``sqlite`` and ``redis`` kinds to a plugin catalog's store-kind registry.

    The catalog calls factories as ``factory(**options)``; ``memory`` is registered by the
    built-in plugin itself.
    """
    for kind in ("sqlite", "redis"):
        if kind not in registry:
            factory = _KINDS[kind]
            registry.add(kind, lambda _f=factory, **options: _f(options))
