"""The drainer: replay through the pipeline, backoff, dead letters, leases, shutdown."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from resilio.classify import Classification, ErrorKind
from resilio.outbox import Drainer, ItemState, Outbox
from resilio.outbox.drainer import REPLAY_ATTRIBUTE, decide, exponential_backoff
from resilio.testing import FakeClock
from tests.outbox._fakes import FakeRegistry


class Boom(Exception):
    pass


class Fatal(Exception):
    pass


def classify(error: BaseException, ctx: Any) -> Classification | None:
    if isinstance(error, Fatal):
        return Classification(kind=ErrorKind.PERMANENT, reason="bad request")
    if isinstance(error, Boom):
        return Classification(kind=ErrorKind.TRANSIENT, reason="http 503")
    return None


@pytest.fixture
def registry(clock: FakeClock) -> FakeRegistry:
    """A registry whose pipeline classifies Fatal as PERMANENT and Boom as TRANSIENT."""
    return FakeRegistry(clock=clock, classifier=classify)


def fill(outbox: Outbox, n: int, op: str = "send") -> None:
    outbox.enqueue_many(
        {"operation": op, "payload": {"n": i}, "idempotency_key": f"k{i}"} for i in range(n)
    )


class TestDecide:
    def test_permanent_is_dead(self) -> None:
        """A PERMANENT failure dead-letters the item at once, keeping its reason."""
        item = _item(attempts=1)
        d = decide(
            item,
            Classification(kind=ErrorKind.PERMANENT, reason="http 400"),
            100.0,
            max_attempts=5,
            max_age=None,
            backoff=exponential_backoff,
        )
        assert (d.action, d.reason) == ("dead", "http 400")

    def test_retry_after_is_a_floor(self) -> None:
        """The next run is no sooner than the service's retry_after."""
        c = Classification(kind=ErrorKind.THROTTLED, retry_after=60.0)
        d = decide(
            _item(attempts=1),
            c,
            100.0,
            max_attempts=None,
            max_age=None,
            backoff=exponential_backoff,
        )
        assert (d.action, d.next_run_at) == ("retry", 160.0)

    def test_exhausted_and_too_old(self) -> None:
        """Items out of attempts, or whose next run would pass max_age, are dead."""
        c = Classification(kind=ErrorKind.TRANSIENT)
        d = decide(
            _item(attempts=3), c, 100.0, max_attempts=3, max_age=None, backoff=exponential_backoff
        )
        assert d.action == "dead"
        assert d.reason == "attempts exhausted"
        d = decide(
            _item(attempts=1), c, 100.0, max_attempts=None, max_age=15.0, backoff=lambda n: 10.0
        )
        assert d.action == "dead"

    def test_backoff_grows(self) -> None:
        """The default backoff doubles from 1 s and is capped at 600 s."""
        assert [exponential_backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
        assert exponential_backoff(50) == 600.0


def _item(attempts: int) -> Any:
    from resilio.outbox import OutboxItem

    return OutboxItem(
        item_id="i",
        operation="op",
        payload=None,
        idempotency_key="k",
        attempts=attempts,
        next_run_at=0.0,
        created_at=90.0,
        state=ItemState.LEASED,
    )


class TestDrainOnce:
    def test_delivers_through_the_pipeline_with_the_key(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """Each item runs its handler once with its payload, inside a context carrying its key."""
        seen: list[tuple[Any, str | None, bool]] = []
        registry.add("send", lambda p: seen.append(p))
        pipeline = registry.pipelines["replay"]
        original = pipeline.execute

        def spy(fn: Any, *a: Any, context: Any = None, **kw: Any) -> Any:
            seen.append(
                (context.operation, context.idempotency_key, context.attributes[REPLAY_ATTRIBUTE])
            )
            return original(fn, *a, context=context, **kw)

        pipeline.execute = spy  # type: ignore[method-assign]
        fill(outbox, 2)
        report = Drainer(outbox, registry, clock=clock).drain_once()
        assert report.delivered == 2
        assert seen == [("send", "k0", True), {"n": 0}, ("send", "k1", True), {"n": 1}]
        assert outbox.stats().depth == 0

    def test_transient_failure_is_rescheduled_with_backoff(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """A TRANSIENT failure reschedules the item after the backoff, recording kind and reason."""
        calls = []

        def handler(p: Any) -> None:
            calls.append(p)
            if len(calls) == 1:
                raise Boom("upstream said: secret")

        registry.add("send", handler)
        fill(outbox, 1)
        drainer = Drainer(outbox, registry, clock=clock, backoff=lambda n: 10.0 * n)
        assert drainer.drain_once().retried == 1
        [item] = outbox.items("pending")
        assert (item.error_kind, item.error_reason, item.attempts) == ("transient", "http 503", 1)
        assert item.next_run_at == clock.time() + 10.0
        assert drainer.drain_once().processed == 0
        clock.advance(10)
        assert drainer.drain_once().delivered == 1
        assert len(calls) == 2

    def test_permanent_failure_is_dead(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """A PERMANENT failure moves the item to dead, with no raw error text stored."""

        def handler(p: Any) -> None:
            raise Fatal("user@example.com rejected")

        registry.add("send", handler)
        fill(outbox, 1)
        assert Drainer(outbox, registry, clock=clock).drain_once().dead == 1
        [item] = outbox.items("dead")
        assert (item.error_kind, item.error_reason) == ("permanent", "bad request")
        assert "example.com" not in repr(item)

    def test_max_attempts_then_dead(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """An item failing max_attempts times is dead with reason 'attempts exhausted'."""

        def handler(p: Any) -> None:
            raise Boom

        registry.add("send", handler)
        fill(outbox, 1)
        drainer = Drainer(outbox, registry, clock=clock, max_attempts=3, backoff=lambda n: 1.0)
        for _ in range(3):
            drainer.drain_once()
            clock.advance(1)
        [item] = outbox.items("dead")
        assert item.attempts == 3
        assert item.error_reason == "attempts exhausted: http 503"

    def test_max_age_then_dead(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """An item older than max_age when its turn comes is dead without running."""
        calls = []
        registry.add("send", calls.append)
        fill(outbox, 1)
        clock.advance(100)
        assert Drainer(outbox, registry, clock=clock, max_age=50).drain_once().dead == 1
        assert calls == []
        assert outbox.items("dead")[0].error_reason == "max age exceeded"

    def test_unknown_operation_is_given_back_pending(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """An item whose operation is not registered here is skipped, not dead: pending again,
        its attempts unchanged, due again only after the drainer's lease."""
        fill(outbox, 1, op="nope")
        report = Drainer(outbox, registry, clock=clock, lease=30).drain_once()
        assert (report.skipped, report.dead, report.processed) == (1, 0, 0)
        assert report.skipped_operations == {"nope": "unknown operation 'nope'"}
        [item] = outbox.items("pending")
        assert (item.attempts, item.next_run_at) == (0, clock.time() + 30)
        assert outbox.stats().dead == 0

    def test_each_item_runs_once_per_pass(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """Items due again at once after failing are not rerun in the same pass: retried == 3."""
        calls: list[Any] = []

        def handler(p: Any) -> None:
            calls.append(p)
            raise Boom

        registry.add("send", handler)
        fill(outbox, 3)
        drainer = Drainer(outbox, registry, clock=clock, backoff=lambda n: 0.0, batch=2)
        report = drainer.drain_once(limit=10)
        assert (report.retried, report.processed, report.released) == (3, 3, 0)
        assert len(calls) == 3
        assert sorted(i.attempts for i in outbox.items("pending")) == [1, 1, 1]
        assert drainer.drain_once(limit=10).retried == 3

    async def test_each_item_runs_once_per_async_pass(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """drain_once_async also runs an item at most once per pass."""

        def handler(p: Any) -> None:
            raise Boom

        registry.add("send", handler)
        fill(outbox, 3)
        drainer = Drainer(outbox, registry, clock=clock, backoff=lambda n: 0.0)
        report = await drainer.drain_once_async(limit=10)
        assert (report.retried, report.processed) == (3, 3)
        assert sorted(i.attempts for i in outbox.items("pending")) == [1, 1, 1]

    def test_limit_is_respected(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """drain_once(limit) replays at most limit items, across several batches."""
        registry.add("send", lambda p: None)
        fill(outbox, 25)
        drainer = Drainer(outbox, registry, clock=clock, batch=4)
        assert drainer.drain_once(limit=10).delivered == 10
        assert outbox.stats().pending == 15

    def test_leases_are_renewed_for_long_batches(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """While a batch is worked through, the rest of its leases are renewed before expiring."""
        other = Drainer(outbox, registry, clock=clock, lease=10)
        stolen = []

        def slow(p: Any) -> None:
            clock.advance(6)
            stolen.extend(outbox.backend.lease(10, clock.time(), 10))

        registry.add("send", slow)
        fill(outbox, 4)
        report = Drainer(outbox, registry, clock=clock, lease=10, batch=4).drain_once()
        assert report.delivered == 4
        assert stolen == []
        assert other.drain_once().processed == 0

    def test_shutdown_releases_unstarted_items(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """After shutdown the item in flight finishes and the rest of the batch is given back."""
        drainer = Drainer(outbox, registry, clock=clock, batch=5)
        registry.add("send", lambda p: drainer.shutdown(grace=1))
        fill(outbox, 5)
        report = drainer.drain_once()
        assert (report.delivered, report.released) == (1, 4)
        assert all(i.attempts == 0 for i in outbox.items("pending"))
        assert outbox.stats().pending == 4

    def test_interrupt_returns_the_item(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """A KeyboardInterrupt in the handler propagates and gives the item back uncounted."""

        def handler(p: Any) -> None:
            raise KeyboardInterrupt

        registry.add("send", handler)
        fill(outbox, 3)
        with pytest.raises(KeyboardInterrupt):
            Drainer(outbox, registry, clock=clock).drain_once()
        s = outbox.stats()
        assert (s.pending, s.leased) == (3, 0)
        assert all(i.attempts == 0 for i in outbox.items("pending"))

    def test_no_pipeline_runs_the_handler_bare(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """An operation without a pipeline has its handler called directly."""
        seen = []
        registry.add("send", seen.append, pipeline=None)
        fill(outbox, 1)
        assert Drainer(outbox, registry, clock=clock).drain_once().delivered == 1
        assert seen == [{"n": 0}]


class TestRun:
    def test_run_until_stopped(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """run() drains everything and returns when its stop event is set."""
        stop = threading.Event()
        seen: list[Any] = []

        def handler(p: Any) -> None:
            seen.append(p)
            if len(seen) == 30:
                stop.set()

        registry.add("send", handler)
        fill(outbox, 30)
        Drainer(outbox, registry, clock=clock, batch=7).run(stop, poll_interval=0.01)
        assert len(seen) == 30
        assert outbox.stats().depth == 0

    async def test_run_async_with_async_handler(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """run_async awaits async handlers through execute_async and stops on its event."""
        stop = asyncio.Event()
        seen: list[Any] = []

        async def handler(p: Any) -> None:
            await asyncio.sleep(0)
            seen.append(p["n"])
            if len(seen) == 10:
                stop.set()

        registry.add("send", handler)
        fill(outbox, 10)
        await asyncio.wait_for(
            Drainer(outbox, registry, clock=clock, batch=3).run_async(stop, poll_interval=0.01), 10
        )
        assert sorted(seen) == list(range(10))
        assert outbox.stats().depth == 0

    async def test_run_async_cancels_after_grace(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """A stopped run_async gives a stuck item the grace, then returns it to the outbox."""
        stop = asyncio.Event()
        started = asyncio.Event()

        async def handler(p: Any) -> None:
            started.set()
            await asyncio.sleep(3600)

        registry.add("send", handler)
        fill(outbox, 1)
        drainer = Drainer(outbox, registry, clock=clock)
        drainer.shutdown(grace=0.05)
        drainer._stop.clear()  # keep the grace, but let it start
        task = asyncio.ensure_future(drainer.run_async(stop, poll_interval=0.01))
        await started.wait()
        stop.set()
        await asyncio.wait_for(task, 5)
        [item] = outbox.items("pending")
        assert item.attempts == 0


class TestSyncHandlerOnTheLoop:
    """The async paths run a plain handler in a worker thread, through pipeline.execute."""

    @pytest.mark.parametrize("pipeline", ["replay", None], ids=["pipeline", "no-pipeline"])
    async def test_drain_once_async_delivers(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock, pipeline: str | None
    ) -> None:
        """A sync handler's item is delivered, the handler called once off the main thread."""
        calls: list[tuple[Any, bool]] = []

        def handler(p: Any) -> str:
            calls.append((p, threading.current_thread() is threading.main_thread()))
            return "ok"

        registry.add("send", handler, pipeline=pipeline)
        fill(outbox, 1)
        report = await Drainer(outbox, registry, clock=clock).drain_once_async()
        assert (report.delivered, report.retried, report.dead) == (1, 0, 0)
        assert calls == [({"n": 0}, False)]
        assert outbox.stats().done == 1

    async def test_the_loop_runs_while_the_handler_does(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """While a sync handler runs, the event loop goes on (here: it unblocks the handler)."""
        started, loop_ran = threading.Event(), threading.Event()
        outcomes: list[bool] = []

        def handler(p: Any) -> None:
            started.set()
            outcomes.append(loop_ran.wait(timeout=5))

        registry.add("send", handler)
        fill(outbox, 1)
        drain = asyncio.ensure_future(Drainer(outbox, registry, clock=clock).drain_once_async())
        assert await asyncio.to_thread(started.wait, 5)
        loop_ran.set()
        assert (await drain).delivered == 1
        assert outcomes == [True]

    async def test_failure_is_classified_by_the_pipeline(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """A sync handler's exception goes through the pipeline's classifier: retried, 1 attempt."""

        def handler(p: Any) -> None:
            raise Boom

        registry.add("send", handler)
        fill(outbox, 1)
        assert (await Drainer(outbox, registry, clock=clock).drain_once_async()).retried == 1
        [item] = outbox.items("pending")
        assert (item.attempts, item.error_reason) == (1, "http 503")

    async def test_run_async_keeps_the_lease_of_a_handler_still_running(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """After the grace, a sync handler's thread still runs: its item stays leased until the
        lease expires, then it is replayed."""
        started, gate = threading.Event(), threading.Event()
        runs: list[Any] = []

        def handler(p: Any) -> None:
            runs.append(p)
            started.set()
            gate.wait(timeout=5)

        registry.add("send", handler)
        fill(outbox, 1)
        drainer = Drainer(outbox, registry, clock=clock, lease=30)
        stop = asyncio.Event()
        task = asyncio.ensure_future(drainer.run_async(stop, poll_interval=0.01))
        assert await asyncio.to_thread(started.wait, 5)
        drainer.shutdown(grace=0)
        stop.set()
        await asyncio.wait_for(task, 5)
        s = outbox.stats()
        assert (s.leased, s.pending, s.done) == (1, 0, 0)
        gate.set()
        clock.advance(31)
        assert (await Drainer(outbox, registry, clock=clock).drain_once_async()).delivered == 1
        assert len(runs) == 2


def test_real_operation_uses_its_pipeline_name(
    outbox: Outbox, registry: FakeRegistry, clock: FakeClock
) -> None:
    """An Operation without an explicit pipeline replays through the pipeline named after it."""
    from resilio._operation import Operation
    from resilio._pipeline import Pipeline

    seen: list[Any] = []
    registry.operations["mail.send"] = Operation(  # type: ignore[assignment]
        name="mail.send", idempotent=True, handler=seen.append
    )
    registry.pipelines["mail.send"] = Pipeline([], name="mail.send", telemetry=False)
    fill(outbox, 1, op="mail.send")
    assert Drainer(outbox, registry, clock=clock).drain_once().delivered == 1
    assert seen == [{"n": 0}]


def test_operation_without_handler_or_pipeline_is_skipped(
    outbox: Outbox, registry: FakeRegistry, clock: FakeClock
) -> None:
    """Items whose operation has no handler, or an unknown pipeline, are skipped with a reason."""
    registry.add("nohandler", None)  # type: ignore[arg-type]
    registry.add("nopipe", lambda p: None, pipeline="missing")
    for op in ("nohandler", "nopipe"):
        outbox.enqueue(operation=op, payload=1, idempotency_key=op)
    report = Drainer(outbox, registry, clock=clock).drain_once()
    assert (report.skipped, report.dead) == (2, 0)
    assert report.skipped_operations == {
        "nohandler": "operation 'nohandler' has no handler",
        "nopipe": "unknown pipeline 'missing'",
    }
    assert sorted(i.attempts for i in outbox.items("pending")) == [0, 0]


class TestUnrunnable:
    """Items this drainer cannot run are given back, never dead-lettered."""

    def test_not_due_again_until_the_lease_has_passed(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """A drainer does not spin on a skipped item: the next pass within the lease finds
        nothing; after it, the item is skipped again, attempts still 0."""
        fill(outbox, 1, op="nope")
        drainer = Drainer(outbox, registry, clock=clock, lease=30)
        assert drainer.drain_once().skipped == 1
        clock.advance(29)
        assert drainer.drain_once().skipped == 0
        clock.advance(2)
        assert drainer.drain_once().skipped == 1
        assert [i.attempts for i in outbox.items("pending")] == [0]

    def test_runs_once_a_drainer_knows_the_operation(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """After a deploy registers the operation, the skipped item is delivered, 1st attempt."""
        fill(outbox, 1, op="later")
        assert Drainer(outbox, registry, clock=clock).drain_once().skipped == 1
        attempts: list[int] = []
        registry.add("later", lambda p: attempts.append(len(attempts) + 1))
        clock.advance(30)
        assert Drainer(outbox, registry, clock=clock).drain_once().delivered == 1
        assert attempts == [1]
        assert outbox.stats().done == 1

    def test_warns_once_per_pass_and_operation(
        self,
        outbox: Outbox,
        registry: FakeRegistry,
        clock: FakeClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Three items of one unknown operation and one of another: two warnings, names only."""
        import logging

        fill(outbox, 3, op="a.missing")
        outbox.enqueue(operation="b.missing", payload={"secret": "CANARY"}, idempotency_key="b")
        with caplog.at_level(logging.WARNING, logger="resilio"):
            report = Drainer(outbox, registry, clock=clock).drain_once()
        assert report.skipped == 4
        lines = [r for r in caplog.records if r.name == "resilio"]
        assert [r.resilio_fields["operation"] for r in lines] == ["a.missing", "b.missing"]  # type: ignore[attr-defined]
        assert {r.resilio_event for r in lines} == {"resilio.outbox.skipped"}  # type: ignore[attr-defined]
        assert all(r.levelno == logging.WARNING for r in lines)
        assert "CANARY" not in caplog.text

    async def test_async_pass_skips_too(
        self, outbox: Outbox, registry: FakeRegistry, clock: FakeClock
    ) -> None:
        """drain_once_async gives an unrunnable item back the same way."""
        fill(outbox, 1, op="nope")
        report = await Drainer(outbox, registry, clock=clock, lease=10).drain_once_async()
        assert (report.skipped, report.dead) == (1, 0)
        [item] = outbox.items("pending")
        assert (item.attempts, item.next_run_at) == (0, clock.time() + 10)
