"""Building stores from configuration mappings."""

from __future__ import annotations

from pathlib import Path

import pytest

from resilio.errors import ConfigError
from resilio.stores import BreakerStore, IdempotencyStore, RateLimitStore
from resilio.stores.factory import MemoryStore, make_store, register_store_kind, store_kinds
from resilio.stores.redis import RedisStore
from resilio.stores.sqlite import SQLiteStore


def test_builtin_kinds() -> None:
    """memory, sqlite and redis are registered."""
    assert {"memory", "sqlite", "redis"} <= set(store_kinds())


def test_memory_store_implements_every_protocol() -> None:
    """A memory store from a mapping is a breaker, limiter and idempotency store at once."""
    store = make_store({"kind": "memory"})
    assert isinstance(store, MemoryStore)
    for proto in (BreakerStore, RateLimitStore, IdempotencyStore):
        assert isinstance(store, proto)
    store.record("b", successes=0, failures=2, slow=0, trailing_failures=0, window=0)  # type: ignore[attr-defined]
    assert store.load("b").consecutive_failures == 2  # type: ignore[attr-defined]


def test_sqlite_store(tmp_path: Path) -> None:
    """{kind: sqlite, path} makes a SQLite store on that file, created on first use."""
    store = make_store({"kind": "sqlite", "path": str(tmp_path / "s.db")})
    assert isinstance(store, SQLiteStore)
    assert not (tmp_path / "s.db").exists()
    store.load("b")
    assert (tmp_path / "s.db").exists()


def test_redis_store_options() -> None:
    """{kind: redis, url, ...} makes a Redis store with those options (no connection yet)."""
    store = make_store(
        {"kind": "redis", "url": "redis://127.0.0.1:1/0", "prefix": "app", "cooldown": 5}
    )
    assert isinstance(store, RedisStore)
    assert (store.prefix, store.cooldown) == ("app", 5.0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "needs a 'kind'"),
        ({"kind": "etcd"}, "unknown store kind 'etcd'"),
        ({"kind": "redis"}, "missing option 'url'"),
        ({"kind": "sqlite", "paht": "x"}, "unknown option 'paht'"),
    ],
)
def test_bad_specs(spec: dict[str, str], message: str) -> None:
    """Bad mappings raise ConfigError naming the problem."""
    with pytest.raises(ConfigError, match=message):
        make_store(spec)


def test_register_kind() -> None:
    """A registered kind is built by its factory; registering it twice is refused."""
    sentinel = object()
    register_store_kind("custom-test", lambda options: (sentinel, dict(options)))
    assert make_store({"kind": "custom-test", "x": 1}) == (sentinel, {"x": 1})
    with pytest.raises(ValueError, match="already registered"):
        register_store_kind("custom-test", lambda options: None)


def test_register_store_kinds_into_a_catalog(tmp_path: Path) -> None:
    """register_store_kinds adds sqlite and redis to a catalog called as factory(**options)."""
    from resilio.plugins.catalog import StoreKindRegistry
    from resilio.stores.factory import register_store_kinds

    registry = StoreKindRegistry()
    register_store_kinds(registry)
    store = registry.get("sqlite")(path=str(tmp_path / "c.db"))
    assert isinstance(store, SQLiteStore)
    assert isinstance(registry.get("redis")(url="redis://127.0.0.1:1/0"), RedisStore)


def test_a_directory_is_not_a_sqlite_store(tmp_path: Path) -> None:
    """A path naming a directory is refused at construction, before any use."""
    with pytest.raises(ValueError, match="is a directory, not a SQLite file"):
        SQLiteStore(tmp_path)


def test_missing_directories_are_made_on_first_use(tmp_path: Path) -> None:
    """Construction creates nothing; the first call makes the directories and the file."""
    path = tmp_path / "a" / "b" / "state.sqlite3"
    store = SQLiteStore(path)
    assert not (tmp_path / "a").exists()
    store.load("b")
    assert path.exists()
    store.close()
