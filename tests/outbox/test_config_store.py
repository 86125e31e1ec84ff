"""The configuration's ``outbox: {store: NAME}``: the outbox kept where a ``stores:`` entry is."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest

from resilio import ConfigError
from resilio.config import json_schema, load_config
from resilio.outbox import Outbox
from resilio.outbox.redis import RedisBackend
from resilio.outbox.sqlite import SQLiteBackend
from resilio.stores.redis import RedisStore


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "resilio.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, telemetry=False)
    return info.value.problems


def test_outbox_in_a_sqlite_store(tmp_path: Path) -> None:
    """outbox: {store: state} keeps the outbox in the SQLite file of the store 'state'."""
    db = tmp_path / "state.sqlite3"
    path = _write(
        tmp_path,
        f"""
        stores:
          state: {{kind: sqlite, path: {db}}}
        outbox: {{store: state, name: jobs, synchronous: full}}
        pipelines:
          p:
            - fallback: {{enqueue: outbox}}
            - circuit_breaker: {{store: state}}
        """,
    )
    registry = load_config(path, telemetry=False)
    outbox = registry.outbox
    assert isinstance(outbox, Outbox)
    assert isinstance(outbox.backend, SQLiteBackend)
    assert (outbox.backend.path, outbox.name) == (str(db), "jobs")
    assert registry.pipeline("p").policies[0].options.enqueue is outbox
    outbox.enqueue(operation="send", payload={"n": 1}, idempotency_key="k1")
    outbox.close()
    registry.store("state").load("b")  # the store makes its tables on first use
    again = Outbox.sqlite(db, create=False)
    assert [i.idempotency_key for i in again.items("pending")] == ["k1"]
    again.close()
    with sqlite3.connect(db) as conn:  # one file: the store's tables and the outbox's
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"breakers", "idempotency", "outbox_items"} <= tables


@pytest.mark.redis
def test_outbox_in_a_redis_store(tmp_path: Path, redis_url: str) -> None:
    """outbox: {store: shared} keeps the outbox on the Redis server of the store 'shared'."""
    path = _write(
        tmp_path,
        f"""
        stores:
          shared: {{kind: redis, url: "{redis_url}", socket_timeout: 0.5}}
        outbox: {{store: shared, name: mail}}
        pipelines:
          p:
            - fallback: {{enqueue: outbox}}
        """,
    )
    registry = load_config(path, telemetry=False)
    outbox = registry.outbox
    assert isinstance(outbox.backend, RedisBackend)
    assert outbox.name == "mail"
    outbox.enqueue(operation="send", payload={"n": 1}, idempotency_key="k1")
    other = Outbox.redis(redis_url, name="mail")
    assert other.stats().pending == 1
    assert [i.idempotency_key for i in other.items("pending")] == ["k1"]
    other.close()
    outbox.close()


def test_unknown_store_is_reported_with_file_line_and_key_path(tmp_path: Path) -> None:
    """A store name that is not under 'stores' is one problem at outbox.store, with a hint."""
    path = _write(
        tmp_path,
        f"""
        stores:
          state: {{kind: sqlite, path: {tmp_path / "s.db"}}}
        outbox:
          store: stat
        pipelines: {{}}
        """,
    )
    assert _problems(path) == [
        f"{path}:4:10: outbox.store: unknown store 'stat' (did you mean 'state'?) (see 'stores')"
    ]


def test_memory_store_cannot_hold_an_outbox(tmp_path: Path) -> None:
    """A memory store is refused: an outbox must outlive the process."""
    path = _write(
        tmp_path,
        """
        stores:
          mem: {kind: memory}
        outbox: {store: mem}
        pipelines: {}
        """,
    )
    assert _problems(path) == [
        f"{path}:3:17: outbox.store: store 'mem' is a memory store; the outbox needs a sqlite "
        "or redis store"
    ]


def test_store_with_kind_is_refused(tmp_path: Path) -> None:
    """'store' with 'kind' (or 'path', 'url') is ambiguous: a problem at that key."""
    path = _write(
        tmp_path,
        f"""
        stores:
          state: {{kind: sqlite, path: {tmp_path / "s.db"}}}
        outbox:
          store: state
          path: other.db
        pipelines: {{}}
        """,
    )
    assert _problems(path) == [
        f"{path}:5:3: outbox.path: give either 'store' or 'path': with 'store' the outbox is "
        "kept where that store keeps its data"
    ]
    assert not (tmp_path / "other.db").exists()


@pytest.mark.redis
def test_synchronous_needs_a_sqlite_store(tmp_path: Path, redis_url: str) -> None:
    """'synchronous' with a Redis store is a problem at outbox.synchronous."""
    path = _write(
        tmp_path,
        f"""
        stores:
          shared: {{kind: redis, url: "{redis_url}"}}
        outbox: {{store: shared, synchronous: full}}
        pipelines: {{}}
        """,
    )
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:3:")
    assert problem.endswith(
        "outbox.synchronous: 'synchronous' is for a sqlite store; 'shared' is a redis store"
    )


def test_reload_keeps_the_outbox_until_its_store_changes(tmp_path: Path) -> None:
    """Reloading the same file keeps the outbox object; a changed store path makes a new one."""
    text = """
        stores:
          state: {{kind: sqlite, path: {db}}}
        outbox: {{store: state}}
        pipelines: {{}}
        """
    path = _write(tmp_path, text.format(db=tmp_path / "a.db"))
    registry = load_config(path, telemetry=False)
    first = registry.outbox
    registry.reload()
    assert registry.outbox is first
    _write(tmp_path, text.format(db=tmp_path / "b.db"))
    registry.reload()
    assert registry.outbox is not first
    assert registry.outbox.backend.path == str(tmp_path / "b.db")


def test_from_mapping_with_a_store(tmp_path: Path) -> None:
    """Outbox.from_mapping({"store": NAME}, stores=...) makes the outbox in that store."""
    from resilio.stores.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "s.db")
    outbox = Outbox.from_mapping({"store": "s", "name": "jobs"}, stores={"s": store})
    assert (outbox.backend.path, outbox.name) == (str(tmp_path / "s.db"), "jobs")
    outbox.close()
    with pytest.raises(ValueError, match="unknown store 'x'"):
        Outbox.from_mapping({"store": "x"}, stores={"s": store})
    with pytest.raises(TypeError, match="needs a sqlite or redis store, got object"):
        Outbox.from_store(object())


@pytest.mark.redis
def test_from_store_uses_a_redis_store_client_when_it_has_no_url(redis_url: str) -> None:
    """A RedisStore made from a client gives an outbox on that very client."""
    import redis

    client = redis.Redis.from_url(redis_url)
    outbox = Outbox.from_store(RedisStore(client=client), name="x")
    assert outbox.backend.client is client
    outbox.close()
    client.close()


def test_schema_allows_the_store_form() -> None:
    """The JSON Schema's outbox section has a form with a required 'store' name."""
    forms = json_schema()["properties"]["outbox"]["oneOf"]
    by_store = [f for f in forms if "store" in f["properties"]]
    assert len(by_store) == 1
    assert by_store[0]["required"] == ["store"]
    assert set(by_store[0]["properties"]) == {"store", "name", "synchronous"}
    (plain,) = [f for f in forms if "store" not in f["properties"]]
    assert "kind" in plain["properties"]


def test_a_store_that_failed_is_reported_once(tmp_path: Path) -> None:
    """An outbox naming a declared store that could not be built adds no second problem."""
    path = _write(
        tmp_path,
        f"""
        stores:
          state: {{kind: sqlite, path: {tmp_path / "s.db"}, bogus: 1}}
        outbox: {{store: state}}
        pipelines: {{}}
        """,
    )
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:2:")
    assert "stores.state" in problem
