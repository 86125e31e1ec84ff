"""The stores package's public names, and the store kinds they bring to configurations."""

from __future__ import annotations

from pathlib import Path

import resilio.stores
from resilio.config import load_config
from resilio.plugins.builtin import resilio_register_stores
from resilio.plugins.catalog import StoreKindRegistry
from resilio.stores import factory


def test_register_store_kinds_is_exported() -> None:
    """resilio.stores re-exports register_store_kinds from the factory module."""
    assert resilio.stores.register_store_kinds is factory.register_store_kinds
    assert "register_store_kinds" in resilio.stores.__all__


def test_builtin_plugin_registers_sqlite_and_redis() -> None:
    """The built-in plugin's store hook adds sqlite, redis and memory to a catalog's registry."""
    registry = StoreKindRegistry()
    resilio_register_stores(registry)
    assert sorted(registry) == ["memory", "redis", "sqlite"]


def test_yaml_stores_section_declares_sqlite_and_redis(tmp_path: Path) -> None:
    """A YAML file's stores: section builds sqlite and redis stores that policies reference."""
    config = tmp_path / "resilio.yaml"
    config.write_text(
        "stores:\n"
        f"  local: {{kind: sqlite, path: {tmp_path / 'state.sqlite3'}}}\n"
        "  fleet: {kind: redis, url: 'redis://127.0.0.1:1/0', prefix: 'app:'}\n"
        "pipelines:\n"
        "  a:\n"
        "    - circuit_breaker: {store: local}\n"
        "  b:\n"
        "    - circuit_breaker: {store: fleet, name: b}\n",
        encoding="utf-8",
    )
    registry = load_config(config, telemetry=False)
    local, fleet = registry.store("local"), registry.store("fleet")
    assert type(local).__name__ == "SQLiteStore"
    assert type(fleet).__name__ == "RedisStore"
    assert registry.pipeline("a").policies[0].options.store is local
    assert registry.pipeline("b").policies[0].options.store is fleet
