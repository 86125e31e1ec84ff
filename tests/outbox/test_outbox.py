"""The Outbox facade on every backend: enqueue, leases, finishing, dead letters, maintenance."""

from __future__ import annotations

import pytest

from resilio.classify import Classification, ErrorKind
from resilio.outbox import ItemState, Outbox, Queued
from resilio.testing import FakeClock

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
