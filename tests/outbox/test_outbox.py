"""The Outbox facade on every backend: enqueue, leases, finishing, dead letters, maintenance."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from resilio.classify import Classification, ErrorKind
from resilio.outbox import ItemState, Outbox, Queued
from resilio.testing import FakeClock
from tests.outbox._worker import open_outbox, spawn_worker

THROTTLED = Classification(kind=ErrorKind.THROTTLED, retry_after=30.0, reason="http 429")


class TestEnqueue:
    def test_enqueue_returns_a_receipt(self, outbox: Outbox) -> None:
        """enqueue returns a frozen Queued naming the item, operation, key and reason."""
        q = outbox.enqueue(
            operation="send",
            payload={"to": "a"},
            idempotency_key="k1",
            classification=Classification(kind=ErrorKind.TRANSIENT, reason="http 503"),
        )
        assert isinstance(q, Queued)
        assert (q.operation, q.idempotency_key, q.reason) == ("send", "k1", "http 503")
        with pytest.raises(AttributeError):
            q.reason = "x"  # type: ignore[misc]

    def test_item_is_stored_with_its_fields(self, outbox: Outbox, clock: FakeClock) -> None:
        """A stored item keeps operation, payload, key, zero attempts, times and error."""
        q = outbox.enqueue(
            operation="send",
            payload={"n": [1, 2]},
            idempotency_key="k1",
            classification=Classification(kind=ErrorKind.AMBIGUOUS, reason="read timeout"),
        )
        [item] = outbox.items("pending")
        assert item.item_id == q.item_id
        assert (item.operation, item.payload, item.idempotency_key) == ("send", {"n": [1, 2]}, "k1")
        assert item.attempts == 0
        assert item.created_at == clock.time() == item.next_run_at
        assert (item.error_kind, item.error_reason) == ("ambiguous", "read timeout")

    def test_text_round_trips_exactly(self, outbox: Outbox) -> None:
        """Non-ASCII text, quotes and control characters in keys and payloads come back as given."""
        payload = {"name": 'Zoë "🎉"\n\t\\', "tags": ["ü", None, 1.5]}
        outbox.enqueue_many(
            [
                {"operation": "sënd", "payload": payload, "idempotency_key": "clé-✓"},
                {"operation": "op", "payload": "x", "idempotency_key": 'k"\\'},
            ]
        )
        items = {i.idempotency_key: i for i in outbox.items()}
        assert set(items) == {"clé-✓", 'k"\\'}
        assert (items["clé-✓"].operation, items["clé-✓"].payload) == ("sënd", payload)

    def test_missing_key_is_generated(self, outbox: Outbox) -> None:
        """Work enqueued without an idempotency key gets a fresh one, kept by the item."""
        a = outbox.enqueue(operation="op", payload=1, idempotency_key=None)
        b = outbox.enqueue(operation="op", payload=1, idempotency_key=None)
        assert a.idempotency_key != b.idempotency_key
        assert a.idempotency_key.startswith("outbox-")
        assert {i.idempotency_key for i in outbox.items()} == {a.idempotency_key, b.idempotency_key}

    def test_key_may_be_omitted(self, outbox: Outbox) -> None:
        """enqueue() without idempotency_key= generates one, as enqueue_many does."""
        a = outbox.enqueue(operation="op", payload=1)
        b = outbox.enqueue(operation="op", payload=1)
        assert (a.duplicate, b.duplicate) == (False, False)
        assert a.idempotency_key.startswith("outbox-")
        assert a.idempotency_key != b.idempotency_key
        assert {i.idempotency_key for i in outbox.items()} == {a.idempotency_key, b.idempotency_key}

    async def test_key_may_be_omitted_async(self, outbox: Outbox) -> None:
        """enqueue_async() without idempotency_key= generates one too."""
        q = await outbox.enqueue_async(operation="op", payload=1)
        assert q.idempotency_key.startswith("outbox-")
        assert [i.idempotency_key for i in outbox.items()] == [q.idempotency_key]

    def test_unserialisable_payload_is_refused_without_content(self, outbox: Outbox) -> None:
        """A payload that is not JSON raises TypeError naming the operation, not the payload."""
        with pytest.raises(TypeError, match="'send'") as info:
            outbox.enqueue(operation="send", payload={"secret": object()}, idempotency_key="k")
        assert "secret" not in str(info.value)
        assert outbox.stats().pending == 0

    def test_retry_after_delays_the_first_run(self, outbox: Outbox, clock: FakeClock) -> None:
        """A throttled failure's retry_after delays the item's first replay."""
        outbox.enqueue(operation="op", payload=1, idempotency_key="k", classification=THROTTLED)
        assert outbox.backend.lease(10, clock.time(), 30) == []
        clock.advance(30)
        assert [i.idempotency_key for i in outbox.backend.lease(10, clock.time(), 30)] == ["k"]

    def test_enqueue_many_stores_all_in_order(self, outbox: Outbox) -> None:
        """enqueue_many stores every item and returns receipts in order."""
        receipts = outbox.enqueue_many(
            {"operation": "op", "payload": i, "idempotency_key": f"k{i}"} for i in range(50)
        )
        assert [r.idempotency_key for r in receipts] == [f"k{i}" for i in range(50)]
        assert outbox.stats().pending == 50

    async def test_enqueue_async(self, outbox: Outbox) -> None:
        """enqueue_async stores the item like enqueue."""
        q = await outbox.enqueue_async(operation="op", payload=[1], idempotency_key="a")
        assert [i.item_id for i in outbox.items()] == [q.item_id]


class TestIdempotentEnqueue:
    def test_same_key_twice_stores_one_item(self, outbox: Outbox) -> None:
        """A second enqueue with a pending item's key stores nothing and returns that item."""
        first = outbox.enqueue(
            operation="send",
            payload={"n": 1},
            idempotency_key="k",
            classification=Classification(kind=ErrorKind.TRANSIENT, reason="http 503"),
        )
        again = outbox.enqueue(operation="send", payload={"n": 2}, idempotency_key="k")
        assert (first.duplicate, again.duplicate) == (False, True)
        assert (again.item_id, again.operation, again.reason) == (first.item_id, "send", "http 503")
        [item] = outbox.items("pending")
        assert item.payload == {"n": 1}

    def test_a_leased_item_holds_its_key(self, outbox: Outbox, clock: FakeClock) -> None:
        """While the item holding a key is leased, enqueueing the key returns that item."""
        first = outbox.enqueue(operation="op", payload=1, idempotency_key="k")
        outbox.backend.lease(10, clock.time(), 30)
        again = outbox.enqueue(operation="op", payload=1, idempotency_key="k")
        assert (again.item_id, again.duplicate) == (first.item_id, True)
        assert (outbox.stats().pending, outbox.stats().leased) == (0, 1)

    def test_key_is_free_again_once_done_or_dead(self, outbox: Outbox, clock: FakeClock) -> None:
        """After the holder is delivered or dead-lettered, the same key makes a new item."""
        outbox.enqueue(operation="op", payload=1, idempotency_key="k")
        [item] = outbox.backend.lease(10, clock.time(), 30)
        outbox.backend.complete(item, clock.time())
        second = outbox.enqueue(operation="op", payload=2, idempotency_key="k")
        assert second.duplicate is False
        [item] = outbox.backend.lease(10, clock.time(), 30)
        outbox.backend.bury(item, clock.time(), "permanent", "http 400")
        third = outbox.enqueue(operation="op", payload=3, idempotency_key="k")
        assert third.duplicate is False
        assert third.item_id != second.item_id
        assert [i.payload for i in outbox.items("pending")] == [3]

    def test_requeue_skips_a_dead_item_whose_key_is_queued(
        self, outbox: Outbox, clock: FakeClock
    ) -> None:
        """A dead item stays dead when a live item already holds its key; others are requeued."""
        for key in ("k", "other"):
            outbox.enqueue(operation="op", payload=key, idempotency_key=key)
        for item in outbox.backend.lease(10, clock.time(), 30):
            outbox.backend.bury(item, clock.time(), "permanent", "http 400")
        outbox.enqueue(operation="op", payload="fresh", idempotency_key="k")
        assert outbox.requeue() == 1
        assert sorted(i.payload for i in outbox.items("pending")) == ["fresh", "other"]
        assert [i.payload for i in outbox.items("dead")] == ["k"]
        again = outbox.enqueue(operation="op", payload="x", idempotency_key="other")
        assert again.duplicate is True

    def test_enqueue_many_repeats_within_a_batch(self, outbox: Outbox) -> None:
        """enqueue_many with a key twice stores it once; both receipts name the same item."""
        outbox.enqueue(operation="op", payload=0, idempotency_key="held")
        receipts = outbox.enqueue_many(
            {"operation": "op", "payload": i, "idempotency_key": k}
            for i, k in enumerate(["a", "b", "a", "held"])
        )
        assert [r.duplicate for r in receipts] == [False, False, True, True]
        assert receipts[0].item_id == receipts[2].item_id
        assert sorted(i.idempotency_key for i in outbox.items()) == ["a", "b", "held"]

    async def test_enqueue_async_is_idempotent(self, outbox: Outbox) -> None:
        """enqueue_async returns the pending item's receipt for a key already queued."""
        first = await outbox.enqueue_async(operation="op", payload=1, idempotency_key="k")
        again = await outbox.enqueue_async(operation="op", payload=1, idempotency_key="k")
        assert (again.item_id, again.duplicate) == (first.item_id, True)
        assert outbox.stats().pending == 1

    def test_retried_and_released_items_keep_their_key(
        self, outbox: Outbox, clock: FakeClock
    ) -> None:
        """An item rescheduled after a failure, or given back unrun, still holds its key."""
        first = outbox.enqueue(operation="op", payload=1, idempotency_key="k")
        [item] = outbox.backend.lease(10, clock.time(), 30)
        outbox.backend.reschedule(item, clock.time(), clock.time(), "transient", "http 503")
        assert outbox.enqueue(operation="op", payload=2, idempotency_key="k").duplicate is True
        [item] = outbox.backend.lease(10, clock.time(), 30)
        outbox.backend.release(item, clock.time())
        again = outbox.enqueue(operation="op", payload=3, idempotency_key="k")
        assert (again.item_id, again.duplicate, again.reason) == (first.item_id, True, "http 503")
        assert outbox.stats().pending == 1

    def test_requeue_of_dead_items_sharing_a_key_requeues_one(
        self, outbox: Outbox, clock: FakeClock
    ) -> None:
        """Of dead items with one key, requeue makes only the first to die pending."""
        for payload in ("first", "second"):
            outbox.enqueue(operation="op", payload=payload, idempotency_key="k")
            [item] = outbox.backend.lease(10, clock.time(), 30)
            outbox.backend.bury(item, clock.time(), "permanent", "http 400")
            clock.advance(1)
        ids = [i.item_id for i in outbox.items("dead")]
        assert outbox.requeue(ids) == 1
        assert outbox.requeue() == 0
        assert [i.payload for i in outbox.items("pending")] == ["first"]
        assert [i.payload for i in outbox.items("dead")] == ["second"]

    def test_enqueue_many_of_held_keys_returns_each_holder(self, outbox: Outbox) -> None:
        """Re-enqueueing 600 held keys and a new one stores only the new one, receipts in order."""
        first = outbox.enqueue_many(
            {"operation": "op", "payload": n, "idempotency_key": f"k{n}"} for n in range(600)
        )
        again = outbox.enqueue_many(
            [{"operation": "op", "payload": "new", "idempotency_key": "new"}]
            + [{"operation": "op", "payload": n, "idempotency_key": f"k{n}"} for n in range(600)]
        )
        assert again[0].duplicate is False
        assert [r.item_id for r in again[1:]] == [r.item_id for r in first]
        assert all(r.duplicate for r in again[1:])
        assert outbox.stats().pending == 601

    def test_concurrent_enqueues_of_one_key_store_one_item(
        self, outbox: Outbox, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
    ) -> None:
        """Threads with their own outbox on one store enqueue a key at once: one item is stored."""
        from tests.outbox.conftest import make_outbox

        kind = "redis" if "Redis" in type(outbox.backend).__name__ else "sqlite"
        boxes = [make_outbox(kind, tmp_path, request, clock) for _ in range(8)]
        barrier = threading.Barrier(len(boxes))
        receipts: list[Queued] = []

        def enqueue(box: Outbox) -> None:
            barrier.wait()
            for n in range(20):
                receipts.append(box.enqueue(operation="op", payload=1, idempotency_key=f"k{n}"))

        threads = [threading.Thread(target=enqueue, args=(box,)) for box in boxes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for box in boxes:
            box.close()
        assert outbox.stats().pending == 20
        assert sum(not r.duplicate for r in receipts) == 20
        assert len({r.item_id for r in receipts}) == 20


def _index_names(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    finally:
        conn.close()
    return {name for (name,) in rows}


def _copy_live_items(path: Path) -> None:
    """Give every item a live twin with the same key, as an older version could store."""
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX outbox_live_key")
    conn.execute(
        "INSERT INTO outbox_items SELECT 'copy-' || item_id, operation, payload, idempotency_key, "
        "attempts, next_run_at, created_at, updated_at, state, due_at, lease_token, error_kind, "
        "error_reason FROM outbox_items"
    )
    conn.commit()
    conn.close()


@pytest.mark.parametrize("create", [True, False])
def test_sqlite_file_without_the_key_index_gets_it(
    tmp_path: Path, clock: FakeClock, create: bool
) -> None:
    """An outbox file from before the unique key index gets it when opened, even without create."""
    path = tmp_path / "old.sqlite3"
    first = Outbox.sqlite(path, clock=clock)
    first.stats()  # first use makes the file
    first.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX outbox_live_key")
    conn.close()
    box = Outbox.sqlite(path, clock=clock, create=create)
    box.stats()
    assert "outbox_live_key" in _index_names(path)
    box.enqueue(operation="op", payload=1, idempotency_key="k")
    assert box.enqueue(operation="op", payload=1, idempotency_key="k").duplicate is True
    box.close()


def test_sqlite_file_with_live_duplicates_still_opens(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file holding live items that share a key (older versions) opens, warns and dedups.

    The unique index waits until those duplicates are gone; meanwhile a plain index serves the
    lookups, and enqueue_many finds keys held in the file and earlier in its own batch.
    """
    from resilio.outbox import sqlite as sqlite_module

    logged: list[tuple[str, str]] = []
    monkeypatch.setattr(
        sqlite_module, "log", lambda level, event, **f: logged.append((level, event))
    )
    path = tmp_path / "old.sqlite3"
    box = Outbox.sqlite(path, clock=clock)
    box.enqueue(operation="op", payload=1, idempotency_key="k")
    box.close()
    _copy_live_items(path)
    reopened = Outbox.sqlite(path, clock=clock)
    assert reopened.stats().pending == 2
    assert logged == [("warning", "resilio.outbox.live_key_duplicates")]
    assert {"outbox_live_key_plain"} <= _index_names(path) - {"outbox_live_key"}
    receipts = reopened.enqueue_many(
        {"operation": "op", "payload": 2, "idempotency_key": key} for key in ("k", "n", "n")
    )
    assert [r.duplicate for r in receipts] == [True, False, True]
    assert receipts[1].item_id == receipts[2].item_id
    assert reopened.stats().pending == 3
    for item in reopened.backend.lease(10, clock.time(), 30):
        reopened.backend.complete(item, clock.time())
    reopened.close()
    last = Outbox.sqlite(path, clock=clock)
    last.stats()  # opening (first use) builds the unique index now that duplicates are gone
    last.close()
    indexes = _index_names(path)
    assert "outbox_live_key" in indexes
    assert "outbox_live_key_plain" not in indexes


class TestOpenWithoutCreate:
    def test_a_missing_file_is_refused_and_not_created(self, tmp_path: Path) -> None:
        """Outbox.sqlite(path, create=False) raises for a missing file and creates nothing."""
        path = tmp_path / "nested" / "typo.sqlite3"
        with pytest.raises(FileNotFoundError, match=r"typo\.sqlite3"):
            Outbox.sqlite(path, create=False)
        assert not (tmp_path / "nested").exists()

    @pytest.mark.parametrize("content", [b"not a database", b""], ids=["text", "empty"])
    def test_a_file_that_is_not_an_outbox_is_left_untouched(
        self, tmp_path: Path, content: bytes
    ) -> None:
        """A text file or an empty file is refused as 'not an outbox', byte for byte unchanged."""
        path = tmp_path / "notes.db"
        path.write_bytes(content)
        with pytest.raises(ValueError, match="not an outbox"):
            Outbox.sqlite(path, create=False)
        assert path.read_bytes() == content
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]

    def test_a_directory_or_another_database_is_refused(self, tmp_path: Path) -> None:
        """A directory, or a SQLite file without the outbox table, is not an outbox."""
        with pytest.raises(ValueError, match="not an outbox"):
            Outbox.sqlite(tmp_path, create=False)
        other = tmp_path / "other.db"
        conn = sqlite3.connect(other)
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.close()
        with pytest.raises(ValueError, match="not an outbox"):
            Outbox.sqlite(other, create=False)

    def test_an_existing_outbox_opens_in_every_thread(
        self, tmp_path: Path, clock: FakeClock
    ) -> None:
        """An existing outbox opened with create=False reads and writes, from other threads too."""
        path = tmp_path / "o.sqlite3"
        Outbox.sqlite(path, clock=clock).enqueue(operation="op", payload=1, idempotency_key="a")
        box = Outbox.sqlite(path, clock=clock, create=False)
        done: list[Queued] = []
        worker = threading.Thread(
            target=lambda: done.append(box.enqueue(operation="op", payload=2, idempotency_key="b"))
        )
        worker.start()
        worker.join()
        assert done[0].duplicate is False
        assert box.stats().pending == 2
        box.close()


@pytest.mark.redis
def test_redis_key_hash_holds_only_live_items(redis_url: str, clock: FakeClock) -> None:
    """P:keys names each live item's key: freed on complete and bury, set again on requeue."""
    box = Outbox.redis(redis_url, name="keys", clock=clock)
    client = box.backend.client  # type: ignore[attr-defined]
    backend = box.backend
    now = clock.time()

    def held() -> dict[str, str]:
        raw = client.hgetall("resilio:outbox:{keys}:keys")
        return {k.decode(): v.decode() for k, v in raw.items()}

    a = box.enqueue(operation="op", payload=1, idempotency_key="a")
    b = box.enqueue(operation="op", payload=2, idempotency_key="b")
    assert held() == {"a": a.item_id, "b": b.item_id}
    leased = {i.idempotency_key: i for i in backend.lease(10, now, 30)}
    assert held() == {"a": a.item_id, "b": b.item_id}
    backend.complete(leased["a"], now)
    backend.bury(leased["b"], now, "permanent", "http 400")
    assert held() == {}
    assert box.requeue() == 1
    assert held() == {"b": b.item_id}
    [item] = backend.lease(10, now, 30)
    backend.bury(item, now, "permanent", "http 400")
    assert box.purge("dead") == 1
    assert held() == {}
    assert client.exists(f"resilio:outbox:{{keys}}:item:{b.item_id}") == 0
    client.hset("resilio:outbox:{keys}:keys", "z", "no-such-item")
    z = box.enqueue(operation="op", payload=3, idempotency_key="z")
    assert z.duplicate is False
    assert held() == {"z": z.item_id}
    box.close()


def test_enqueues_from_several_processes_store_each_key_once(
    request: pytest.FixtureRequest, tmp_path: Path, backend_kind: str
) -> None:
    """Three processes enqueue the same 300 keys at once: 300 items, one stored receipt per key."""
    if backend_kind == "redis":
        target = request.getfixturevalue("redis_url")
    else:
        target = str(tmp_path / "shared.sqlite3")
    open_outbox(backend_kind, target).close()
    procs = [spawn_worker("enqueue", backend_kind, target, "300") for _ in range(3)]
    stored = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        stored += int(out.decode().split()[-1])
    box = open_outbox(backend_kind, target)
    assert stored == 300
    assert box.stats().pending == 300
    assert len({i.idempotency_key for i in box.items(limit=1000)}) == 300
    box.close()


class TestLeases:
    def test_lease_counts_an_attempt_and_hides_the_item(
        self, outbox: Outbox, clock: FakeClock
    ) -> None:
        """A leased item has one more attempt and is not leased again before its lease expires."""
        outbox.enqueue(operation="op", payload=1, idempotency_key="k")
        [item] = outbox.backend.lease(10, clock.time(), 30)
        assert item.attempts == 1
        assert item.state is ItemState.LEASED
        assert outbox.backend.lease(10, clock.time(), 30) == []
        s = outbox.stats()
        assert (s.pending, s.leased) == (0, 1)

    def test_expired_lease_is_taken_again(self, outbox: Outbox, clock: FakeClock) -> None:
        """After the lease expires another lease takes the item, and the old token is void."""
        outbox.enqueue(operation="op", payload=1, idempotency_key="k")
        [first] = outbox.backend.lease(10, clock.time(), 30)
        clock.advance(31)
        [second] = outbox.backend.lease(10, clock.time(), 30)
        assert second.item_id == first.item_id
        assert second.attempts == 2
        assert outbox.backend.complete(first, clock.time()) is False
        assert outbox.backend.complete(second, clock.time()) is True
        assert outbox.stats().depth == 0

    def test_renew_keeps_the_lease(self, outbox: Outbox, clock: FakeClock) -> None:
        """Renewing a lease pushes its expiry back."""
        outbox.enqueue(operation="op", payload=1, idempotency_key="k")
        items = outbox.backend.lease(10, clock.time(), 30)
        clock.advance(20)
        outbox.backend.renew(items, clock.time(), 30)
        clock.advance(20)
        assert outbox.backend.lease(10, clock.time(), 30) == []

    def test_leases_are_disjoint(self, outbox: Outbox, clock: FakeClock) -> None:
        """Two leases of a batch never return the same item."""
        outbox.enqueue_many(
            {"operation": "op", "payload": i, "idempotency_key": str(i)} for i in range(10)
        )
        a = outbox.backend.lease(6, clock.time(), 30)
        b = outbox.backend.lease(6, clock.time(), 30)
        assert len(a) == 6
        assert len(b) == 4
        assert not {i.item_id for i in a} & {i.item_id for i in b}

    def test_release_uncounts_the_attempt(self, outbox: Outbox, clock: FakeClock) -> None:
        """A released item is pending and due again with its attempt not counted."""
        outbox.enqueue(operation="op", payload=1, idempotency_key="k")
        [item] = outbox.backend.lease(10, clock.time(), 30)
        assert outbox.backend.release(item, clock.time())
        [again] = outbox.backend.lease(10, clock.time(), 30)
        assert again.attempts == 1


class TestFinishing:
    def test_reschedule_records_kind_and_reason(self, outbox: Outbox, clock: FakeClock) -> None:
        """A rescheduled item waits for its next run and keeps the failure kind and reason."""
        outbox.enqueue(operation="op", payload=1, idempotency_key="k")
        [item] = outbox.backend.lease(10, clock.time(), 30)
        assert outbox.backend.reschedule(
            item, clock.time(), clock.time() + 5, "transient", "http 503"
        )
        assert outbox.backend.lease(10, clock.time() + 4, 30) == []
        [again] = outbox.backend.lease(10, clock.time() + 5, 30)
        assert (again.error_kind, again.error_reason, again.attempts) == (
            "transient",
            "http 503",
            2,
        )

    def test_bury_requeue_and_purge(self, outbox: Outbox, clock: FakeClock) -> None:
        """Dead items are listed, can be requeued with zero attempts, and purged."""
        outbox.enqueue_many(
            {"operation": "op", "payload": i, "idempotency_key": str(i)} for i in range(3)
        )
        for item in outbox.backend.lease(10, clock.time(), 30):
            assert outbox.backend.bury(item, clock.time(), "permanent", "http 400")
        assert outbox.stats().dead == 3
        dead = outbox.items("dead")
        assert {d.error_reason for d in dead} == {"http 400"}
        assert outbox.requeue([dead[0].item_id]) == 1
        [back] = outbox.items("pending")
        assert back.attempts == 0
        assert back.item_id == dead[0].item_id
        clock.advance(100)
        assert outbox.purge("dead", older_than=50) == 2
        s = outbox.stats()
        assert (s.pending, s.dead) == (1, 0)

    def test_requeue_all(self, outbox: Outbox, clock: FakeClock) -> None:
        """requeue() with no ids revives every dead item."""
        outbox.enqueue_many(
            {"operation": "op", "payload": i, "idempotency_key": str(i)} for i in range(4)
        )
        for item in outbox.backend.lease(10, clock.time(), 30):
            outbox.backend.bury(item, clock.time(), "permanent", None)
        assert outbox.requeue() == 4
        assert outbox.stats().pending == 4

    def test_complete_counts_done(self, outbox: Outbox, clock: FakeClock) -> None:
        """Completing items counts them as done and removes them from the depth."""
        outbox.enqueue_many(
            {"operation": "op", "payload": i, "idempotency_key": str(i)} for i in range(3)
        )
        for item in outbox.backend.lease(10, clock.time(), 30):
            assert outbox.backend.complete(item, clock.time())
        s = outbox.stats()
        assert (s.depth, s.done) == (0, 3)


class TestStats:
    def test_oldest_pending_follows_the_pending_items(
        self, outbox: Outbox, clock: FakeClock
    ) -> None:
        """oldest_pending_at is the creation time of the oldest pending (not leased) item."""
        assert outbox.stats().oldest_pending_at is None
        start = clock.time()
        outbox.enqueue(operation="op", payload=0, idempotency_key="a")
        clock.advance(10)
        outbox.enqueue(operation="op", payload=1, idempotency_key="b", classification=THROTTLED)
        assert outbox.stats().oldest_pending_at == start
        [first] = outbox.backend.lease(1, clock.time(), 30)
        assert first.idempotency_key == "a"
        assert outbox.stats().oldest_pending_at == start + 10
        assert outbox.backend.release(first, clock.time())
        assert outbox.stats().oldest_pending_at == start
        [again] = outbox.backend.lease(1, clock.time(), 30)
        assert outbox.backend.complete(again, clock.time())
        s = outbox.stats()
        assert (s.pending, s.leased, s.oldest_pending_at) == (1, 0, start + 10)


@pytest.mark.redis
def test_redis_removes_idle_consumers_with_nothing_pending(
    redis_url: str, clock: FakeClock
) -> None:
    """Consumers of drainers that are gone are removed from the group; busy ones are kept."""
    from resilio.outbox.redis import RedisBackend

    busy = Outbox.redis(redis_url, name="reap", clock=clock)
    gone = Outbox.redis(redis_url, name="reap", clock=clock)
    busy.enqueue_many(
        {"operation": "op", "payload": i, "idempotency_key": str(i)} for i in range(2)
    )
    [held] = busy.backend.lease(1, clock.time(), 30)
    [done] = gone.backend.lease(1, clock.time(), 30)
    assert gone.backend.complete(done, clock.time())
    reaper = RedisBackend(redis_url, name="reap", consumer_idle=0)
    assert reaper.reap_consumers() == [gone.backend.consumer]  # type: ignore[attr-defined]
    names = {
        c["name"].decode()
        for c in reaper.client.xinfo_consumers("resilio:outbox:{reap}:stream", "drainers")
    }
    assert names == {busy.backend.consumer}  # type: ignore[attr-defined]
    assert held.idempotency_key == "0"
    reaper.close()
    for box in (busy, gone):
        box.close()


def test_default_outbox_is_a_sqlite_file_in_the_current_dir(tmp_path, monkeypatch) -> None:
    """Outbox() stores items in resilio-outbox.sqlite3 under the current directory."""
    monkeypatch.chdir(tmp_path)
    box = Outbox()
    box.enqueue(operation="op", payload=1, idempotency_key="k")
    box.close()
    assert (tmp_path / "resilio-outbox.sqlite3").exists()
    assert Outbox(tmp_path / "resilio-outbox.sqlite3").stats().pending == 1


def test_from_mapping(tmp_path) -> None:
    """from_mapping builds a SQLite outbox from its mapping and refuses unknown kinds and keys."""
    box = Outbox.from_mapping({"kind": "sqlite", "path": str(tmp_path / "x.db"), "name": "mail"})
    assert box.name == "mail"
    assert box.backend.path.endswith("x.db")
    with pytest.raises(ValueError, match="kind"):
        Outbox.from_mapping({"kind": "kafka"})
    with pytest.raises(ValueError, match="unknown keys"):
        Outbox.from_mapping({"kind": "sqlite", "paht": "x"})


@pytest.mark.redis
def test_redis_recreates_a_deleted_stream(redis_url: str, clock: FakeClock) -> None:
    """If the stream and its group are deleted, leasing recreates them and goes on."""
    box = Outbox.redis(redis_url, name="gone", clock=clock)
    box.backend.client.flushdb()  # type: ignore[attr-defined]
    assert box.backend.lease(10, clock.time(), 30) == []
    box.enqueue(operation="op", payload=1, idempotency_key="k")
    assert [i.idempotency_key for i in box.backend.lease(10, clock.time(), 30)] == ["k"]


class TestTelemetry:
    def test_depth_is_reported_as_a_gauge(self, outbox: Outbox) -> None:
        """resilio.outbox.depth reports pending + leased items under the outbox's name."""
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        from resilio._pipeline import Pipeline

        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        replay = Pipeline([], name="replay", meter_provider=provider)  # binds the provider
        replay.execute(lambda: None)
        for n in range(3):
            outbox.enqueue(operation="op", payload=n, idempotency_key=f"k{n}")
        outbox.backend.lease(1, outbox.clock.time(), 30)

        def depth() -> dict[str, int]:
            data = reader.get_metrics_data()
            assert data is not None
            return {
                str(point.attributes["resilio.outbox"]): int(point.value)  # type: ignore[index]
                for rm in data.resource_metrics
                for sm in rm.scope_metrics
                for metric in sm.metrics
                if metric.name == "resilio.outbox.depth"
                for point in metric.data.data_points  # type: ignore[union-attr]
            }

        assert depth()[outbox.name] == 3
        outbox.close()
        assert outbox.name not in depth()


@pytest.mark.parametrize("name", [None, "", 3])
@pytest.mark.parametrize("constructor", ["sqlite", "init", "redis"])
def test_outbox_name_must_be_a_non_empty_string(
    tmp_path: Path, name: Any, constructor: str
) -> None:
    """A missing or empty name is refused before anything is created or observed."""
    from resilio.telemetry.metrics import outbox_depths

    path = tmp_path / "named.sqlite3"
    makers: dict[str, Callable[[], Outbox]] = {
        "sqlite": lambda: Outbox.sqlite(path, name=name),
        "init": lambda: Outbox(path, name=name),
        "redis": lambda: Outbox.redis("redis://127.0.0.1:1/0", name=name),
    }
    with pytest.raises(TypeError, match="outbox name must be a non-empty string"):
        makers[constructor]()
    assert not path.exists()
    assert name not in outbox_depths()


def test_sqlite_outbox_touches_the_disk_on_first_use(tmp_path: Path) -> None:
    """Outbox.sqlite(path) creates nothing until it is used; then directory, file and tables."""
    path = tmp_path / "deep" / "outbox.sqlite3"
    box = Outbox.sqlite(path)
    assert not (tmp_path / "deep").exists()
    box.enqueue(operation="op", payload=1, idempotency_key="k")
    assert path.exists()
    assert box.stats().pending == 1
    box.close()
