"""Tests for resilio.Fallback: value, handler, enqueue, and which failures it replaces."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import resilio
from resilio._context import REPLAY_ATTRIBUTE
from resilio.classify import Classification, ErrorKind
from resilio.events import FallbackUsed
from resilio.policies.fallback import Enqueuer
from resilio.testing import EventRecorder, FakeClock

Runner = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Run ``fn`` (a plain function) through a pipeline with execute() or execute_async()."""

    def runner(
        p: resilio.Pipeline, fn: Callable[[], Any], context: resilio.Context | None = None
    ) -> Any:
        if request.param == "sync":
            return p.execute(fn, context=context)

        async def afn() -> Any:
            return fn()

        return asyncio.run(p.execute_async(afn, context=context))

    return runner


def pipe(clock: FakeClock, *policies: resilio.Policy) -> tuple[resilio.Pipeline, EventRecorder]:
    rec = EventRecorder()

    def classifier(error: BaseException, context: Any) -> Classification | None:
        if isinstance(error, PermissionError):
            return Classification(kind=ErrorKind.PERMANENT)
        return None

    p = resilio.Pipeline(
        list(policies), name="p", clock=clock, listeners=[rec], classifier=classifier
    )
    return p, rec


def fail(exc: BaseException) -> Callable[[], Any]:
    def fn() -> Any:
        raise exc

    return fn


class Outbox:
    """An in-memory outbox recording what it was given."""

    def __init__(self, error: Exception | None = None) -> None:
        self.items: list[dict[str, Any]] = []
        self.error = error

    def enqueue(self, **item: Any) -> str:
        if self.error is not None:
            raise self.error
        self.items.append(item)
        return f"queued-{len(self.items)}"


class AsyncOutbox(Outbox):
    """An outbox with an async enqueue variant."""

    def __init__(self) -> None:
        super().__init__()
        self.async_calls = 0

    async def enqueue_async(self, **item: Any) -> str:
        self.async_calls += 1
        return self.enqueue(**item)


class TestValue:
    def test_value_replaces_a_failure(self, clock: FakeClock, run: Runner) -> None:
        """A failure becomes the fallback value and FallbackUsed is reported."""
        p, rec = pipe(clock, resilio.Fallback(value=[]))
        assert run(p, fail(ConnectionError("down"))) == []
        (event,) = rec.of(FallbackUsed)
        assert (event.action, event.error_type, event.policy) == (
            "value",
            "ConnectionError",
            "fallback",
        )

    def test_none_is_a_value(self, clock: FakeClock, run: Runner) -> None:
        """``value=None`` is a legitimate fallback value."""
        p, _ = pipe(clock, resilio.Fallback(value=None))
        assert run(p, fail(ConnectionError("down"))) is None

    def test_success_passes_through(self, clock: FakeClock, run: Runner) -> None:
        """A success is returned unchanged with no event."""
        p, rec = pipe(clock, resilio.Fallback(value=0))
        assert run(p, lambda: 42) == 42
        assert rec.events == []

    def test_base_exceptions_are_never_replaced(self, clock: FakeClock, run: Runner) -> None:
        """KeyboardInterrupt passes through a fallback."""
        p, rec = pipe(clock, resilio.Fallback(value=0))
        with pytest.raises(KeyboardInterrupt):
            run(p, fail(KeyboardInterrupt()))
        assert rec.events == []

    async def test_cancellation_is_never_replaced(self, clock: FakeClock) -> None:
        """CancelledError passes through a fallback under execute_async."""
        p, _ = pipe(clock, resilio.Fallback(value=0))

        async def cancelled() -> None:
            raise asyncio.CancelledError

        with pytest.raises(asyncio.CancelledError):
            await p.execute_async(cancelled)


class TestHandler:
    def test_handler_gets_exception_and_context(self, clock: FakeClock, run: Runner) -> None:
        """``handler(exc, context)`` computes the replacement."""
        seen: list[Any] = []

        def handler(exc: BaseException, ctx: resilio.Context) -> str:
            seen.append((type(exc), ctx.operation))
            return "cached"

        p, rec = pipe(clock, resilio.Fallback(handler=handler))
        assert run(p, fail(ConnectionError("x")), resilio.Context("orders.get")) == "cached"
        assert seen == [(ConnectionError, "orders.get")]
        assert [e.action for e in rec.of(FallbackUsed)] == ["handler"]

    def test_failing_handler_raises_its_error_chained(self, clock: FakeClock, run: Runner) -> None:
        """A handler's own error is raised, with the original failure as its context."""

        def handler(exc: BaseException, ctx: resilio.Context) -> str:
            raise RuntimeError("handler broke")

        p, rec = pipe(clock, resilio.Fallback(handler=handler))
        with pytest.raises(RuntimeError, match="handler broke") as info:
            run(p, fail(ConnectionError("x")))
        assert isinstance(info.value.__context__, ConnectionError)
        assert rec.events == []

    async def test_async_handler_awaited(self, clock: FakeClock) -> None:
        """Under execute_async an async handler is awaited."""

        async def handler(exc: BaseException, ctx: resilio.Context) -> str:
            await asyncio.sleep(0)
            return "async-fallback"

        p, _ = pipe(clock, resilio.Fallback(handler=handler))

        async def boom() -> str:
            raise ConnectionError("x")

        assert await p.execute_async(boom) == "async-fallback"

    def test_async_handler_refused_under_execute(self, clock: FakeClock) -> None:
        """Under execute an async handler is a TypeError saying to use execute_async."""
        called: list[int] = []

        async def handler(exc: BaseException, ctx: resilio.Context) -> str:
            called.append(1)
            return "x"

        p, _ = pipe(clock, resilio.Fallback(handler=handler))
        with pytest.raises(TypeError, match=r"async handler .*execute_async") as info:
            p.execute(fail(ConnectionError("x")))
        assert called == []
        assert isinstance(info.value.__context__, ConnectionError)

    def test_awaitable_returned_under_execute_refused(self, clock: FakeClock) -> None:
        """A sync callable returning a coroutine is refused and the coroutine closed."""

        async def later() -> str:
            return "x"

        p, _ = pipe(clock, resilio.Fallback(handler=lambda exc, ctx: later()))
        with pytest.raises(TypeError, match="returned an awaitable"):
            p.execute(fail(ConnectionError("x")))

    def test_handler_by_import_path(self, clock: FakeClock) -> None:
        """A ``"module:name"`` string names the handler (the configuration-file form)."""
        f = resilio.Fallback(handler="builtins:repr")
        assert f.options.handler is repr

    @pytest.mark.parametrize("bad", ["repr", "nosuchmodule_xyz:f", "builtins:nosuchname"])
    def test_bad_import_path(self, bad: str) -> None:
        """An unusable import path is a clear ValueError."""
        with pytest.raises(ValueError, match="fallback handler"):
            resilio.Fallback(handler=bad)


class TestOn:
    def test_types(self, clock: FakeClock, run: Runner) -> None:
        """Only failures of the listed types are replaced."""
        p, _ = pipe(clock, resilio.Fallback(value="fb", on=[ConnectionError]))
        assert run(p, fail(ConnectionError("x"))) == "fb"
        with pytest.raises(KeyError):
            run(p, fail(KeyError("k")))

    def test_kinds(self, clock: FakeClock, run: Runner) -> None:
        """Kinds (or their names) select failures by classification."""
        p, _ = pipe(clock, resilio.Fallback(value="fb", on=[ErrorKind.PERMANENT]))
        assert run(p, fail(PermissionError("no"))) == "fb"
        with pytest.raises(ConnectionError):
            run(p, fail(ConnectionError("x")))
        p2, _ = pipe(clock, resilio.Fallback(value="fb", on="transient"))
        assert run(p2, fail(ConnectionError("x"))) == "fb"

    def test_predicate(self, clock: FakeClock, run: Runner) -> None:
        """A predicate receives the exception and its classification."""
        seen: list[ErrorKind] = []

        def only_transient(exc: BaseException, c: Classification) -> bool:
            seen.append(c.kind)
            return c.kind is ErrorKind.TRANSIENT

        p, _ = pipe(clock, resilio.Fallback(value="fb", on=only_transient))
        assert run(p, fail(ConnectionError("x"))) == "fb"
        with pytest.raises(PermissionError):
            run(p, fail(PermissionError("no")))
        assert seen == [ErrorKind.TRANSIENT, ErrorKind.PERMANENT]

    def test_broken_predicate(self, clock: FakeClock, run: Runner) -> None:
        """A predicate that raises fails the call with its error."""

        def broken(exc: BaseException, c: Classification) -> bool:
            raise RuntimeError("predicate broke")

        p, _ = pipe(clock, resilio.Fallback(value="fb", on=broken))
        with pytest.raises(RuntimeError, match="predicate broke"):
            run(p, fail(ConnectionError("x")))

    @pytest.mark.parametrize("bad", [["sometimes"], [int], 3, [KeyboardInterrupt]])
    def test_invalid_on(self, bad: Any) -> None:
        """``on`` accepts only Exception types, kinds and a predicate."""
        with pytest.raises(ValueError, match="on="):
            resilio.Fallback(value=1, on=bad)


class TestEnqueue:
    def test_queues_operation_and_payload(self, clock: FakeClock, run: Runner) -> None:
        """A transient failure queues the context's operation, payload and key."""
        outbox = Outbox()
        p, rec = pipe(clock, resilio.Fallback(enqueue=outbox))
        ctx = resilio.Context("email.send", idempotency_key="k1", payload={"to": 1})
        assert run(p, fail(ConnectionError("x")), ctx) == "queued-1"
        (item,) = outbox.items
        assert item["operation"] == "email.send"
        assert item["payload"] == {"to": 1}
        assert item["idempotency_key"] == "k1"
        assert item["classification"].kind is ErrorKind.TRANSIENT
        assert [e.action for e in rec.of(FallbackUsed)] == ["enqueued"]

    def test_permanent_failures_not_queued(self, clock: FakeClock, run: Runner) -> None:
        """A PERMANENT failure is raised, not queued."""
        outbox = Outbox()
        p, _ = pipe(clock, resilio.Fallback(enqueue=outbox))
        with pytest.raises(PermissionError):
            run(p, fail(PermissionError("no")), resilio.Context("op", payload={}))
        assert outbox.items == []

    def test_outbox_replay_is_never_requeued(self, clock: FakeClock, run: Runner) -> None:
        """A failure during an outbox replay goes back to the drainer, not into a new item."""
        outbox = Outbox()
        p, _ = pipe(clock, resilio.Fallback(enqueue=outbox))
        ctx = resilio.Context("op", payload={"n": 1}, attributes={REPLAY_ATTRIBUTE: True})
        with pytest.raises(ConnectionError):
            run(p, fail(ConnectionError("x")), ctx)
        assert outbox.items == []

    def test_no_payload_queues_nothing_and_says_so(self, clock: FakeClock, run: Runner) -> None:
        """Without a payload the failure is raised with a note explaining nothing was queued."""
        outbox = Outbox()
        p, _ = pipe(clock, resilio.Fallback(enqueue=outbox))
        with pytest.raises(ConnectionError) as info:
            run(p, fail(ConnectionError("x")), resilio.Context("email.send"))
        assert outbox.items == []
        assert info.value.__notes__ == [
            "resilio: fallback 'fallback' queued nothing: the context of operation "
            "'email.send' has no payload"
        ]

    def test_outbox_failure_keeps_the_original_error(self, clock: FakeClock, run: Runner) -> None:
        """If the outbox itself fails, the original error is raised with a note naming why."""
        p, _ = pipe(clock, resilio.Fallback(enqueue=Outbox(error=OSError("disk full"))))
        with pytest.raises(ConnectionError) as info:
            run(p, fail(ConnectionError("x")), resilio.Context("op", payload=1))
        assert "the outbox raised OSError" in info.value.__notes__[0]

    async def test_async_prefers_enqueue_async(self, clock: FakeClock) -> None:
        """Under execute_async, an outbox's enqueue_async is used."""
        outbox = AsyncOutbox()
        p, _ = pipe(clock, resilio.Fallback(enqueue=outbox))

        async def boom() -> str:
            raise ConnectionError("x")

        assert await p.execute_async(boom, context=resilio.Context("op", payload=1)) == "queued-1"
        assert outbox.async_calls == 1

    def test_outbox_satisfies_the_protocol(self) -> None:
        """The test outbox is an Enqueuer; an object without enqueue() is refused."""
        assert isinstance(Outbox(), Enqueuer)
        with pytest.raises(ValueError, match="enqueue"):
            resilio.Fallback(enqueue=object())  # type: ignore[arg-type]


class TestOptions:
    def test_exactly_one_action(self) -> None:
        """Zero or two of value/handler/enqueue is a ValueError naming them."""
        with pytest.raises(
            ValueError, match="exactly one of value=, handler= or enqueue=, got none"
        ):
            resilio.Fallback()
        with pytest.raises(ValueError, match="got value, handler"):
            resilio.Fallback(value=1, handler=lambda e, c: 2)

    def test_from_options(self) -> None:
        """``from_options`` rebuilds an equivalent named policy."""
        f = resilio.Fallback(value=3, on=[ConnectionError])
        g = resilio.Fallback.from_options(f.options, name="fb2")
        assert (g.options, g.name, g.kind) == (f.options, "fb2", "fallback")
