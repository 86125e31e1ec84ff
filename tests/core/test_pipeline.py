"""Tests for pipeline semantics: order, passthrough, tracebacks, interrupts, refusals, sharing."""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import sys
import traceback
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, ClassVar

import pytest

import resilio
from resilio.events import RetryGaveUp, RetryScheduled
from resilio.policies._base import Args, Env, Kwargs, Layer, Policy
from resilio.policies._retry_logic import RetryBudget
from resilio.testing import EventRecorder, FakeClock


class Tag(Policy):
    """A policy that records when its layer is entered and left."""

    kind: ClassVar[str] = "tag"

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.options = None
        self.log = log

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        return _TagLayer(inner, env, self)


class _TagLayer(Layer):
    __slots__ = ()

    def run(self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Any) -> Any:
        tag: Any = self.policy
        tag.log.append(f"{tag.name}>")
        r = self.inner.run(fn, args, kwargs, ctx)
        tag.log.append(f"<{tag.name}")
        return r

    async def run_async(self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Any) -> Any:
        tag: Any = self.policy
        tag.log.append(f"{tag.name}>")
        r = await self.inner.run_async(fn, args, kwargs, ctx)
        tag.log.append(f"<{tag.name}")
        return r


def user_function_that_fails() -> None:
    raise ConnectionError("from the user's code")


async def async_user_function_that_fails() -> None:
    await asyncio.sleep(0)
    raise ConnectionError("from the user's async code")


def frames(exc: BaseException) -> list[str]:
    return [f.name for f in traceback.extract_tb(exc.__traceback__)]


FULL: list[Callable[[], Policy]] = [
    lambda: resilio.Fallback(value="fb", on=[KeyError]),
    lambda: resilio.Timeout(10),
    lambda: resilio.Retry(attempts=3),
]


def full_stack(clock: FakeClock, rec: EventRecorder | None = None) -> resilio.Pipeline:
    return resilio.Pipeline(
        [make() for make in FULL], clock=clock, name="p", listeners=[rec] if rec else []
    )


class TestOrder:
    def test_outermost_first(self, clock: FakeClock) -> None:
        """Policies are entered in list order and left in reverse."""
        log: list[str] = []
        p = resilio.Pipeline([Tag("a", log), Tag("b", log), Tag("c", log)], clock=clock)
        assert p.execute(lambda: log.append("call")) is None
        assert log == ["a>", "b>", "c>", "call", "<c", "<b", "<a"]

    async def test_outermost_first_async(self, clock: FakeClock) -> None:
        """The async path enters policies in the same order."""
        log: list[str] = []
        p = resilio.Pipeline([Tag("a", log), Tag("b", log)], clock=clock)

        async def fn() -> None:
            log.append("call")

        await p.execute_async(fn)
        assert log == ["a>", "b>", "call", "<b", "<a"]

    def test_order_changes_meaning(self, clock: FakeClock) -> None:
        """A retry inside a tag re-enters only the layers inside it."""
        log: list[str] = []
        p = resilio.Pipeline(
            [Tag("outer", log), resilio.Retry(attempts=2, backoff=0), Tag("inner", log)],
            clock=clock,
        )
        with pytest.raises(ConnectionError):
            p.execute(user_function_that_fails)
        assert log == ["outer>", "inner>", "<inner", "inner>", "<inner", "<outer"]


class TestPassthrough:
    def test_result_is_the_same_object(self, clock: FakeClock) -> None:
        """The function's result object is returned as is through every policy."""
        value = object()
        assert full_stack(clock).execute(lambda: value) is value

    async def test_result_is_the_same_object_async(self, clock: FakeClock) -> None:
        """The async path returns the awaited result object as is."""
        value = object()

        async def fn() -> object:
            return value

        assert await full_stack(clock).execute_async(fn) is value

    def test_arguments_reach_the_function(self, clock: FakeClock) -> None:
        """Positional and keyword arguments are passed through."""
        assert full_stack(clock).execute(lambda a, b=0: a + b, 1, b=2) == 3


class TestTracebacks:
    def test_sync_error_keeps_the_user_frame(self, clock: FakeClock) -> None:
        """The real exception is raised with the user function's frame in its traceback."""
        with pytest.raises(ConnectionError) as info:
            full_stack(clock).execute(user_function_that_fails)
        assert "user_function_that_fails" in frames(info.value)

    async def test_async_error_keeps_the_user_frame(self, clock: FakeClock) -> None:
        """The async path keeps the user coroutine's frame in the traceback."""
        with pytest.raises(ConnectionError) as info:
            await full_stack(clock).execute_async(async_user_function_that_fails)
        assert "async_user_function_that_fails" in frames(info.value)

    def test_decorated_error_keeps_the_user_frame(self, clock: FakeClock) -> None:
        """A decorated function's error keeps its frame."""
        decorated = full_stack(clock)(user_function_that_fails)
        with pytest.raises(ConnectionError) as info:
            decorated()
        assert "user_function_that_fails" in frames(info.value)

    async def test_async_decorated_error_keeps_the_user_frame(self, clock: FakeClock) -> None:
        """A decorated coroutine function's error keeps its frame."""
        decorated = full_stack(clock)(async_user_function_that_fails)
        with pytest.raises(ConnectionError) as info:
            await decorated()
        assert "async_user_function_that_fails" in frames(info.value)


INTERRUPTS = [asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit]


class TestInterrupts:
    @pytest.mark.parametrize("exc_type", INTERRUPTS)
    def test_sync_interrupts_propagate_at_once(
        self, clock: FakeClock, exc_type: type[BaseException]
    ) -> None:
        """Interrupts are raised at once: one call, no retry, no fallback, no event."""
        rec = EventRecorder()
        calls: list[int] = []

        def fn() -> None:
            calls.append(1)
            raise exc_type

        with pytest.raises(exc_type):
            full_stack(clock, rec).execute(fn)
        assert calls == [1]
        assert clock.sleeps == []
        assert rec.events == []

    @pytest.mark.parametrize("exc_type", INTERRUPTS)
    async def test_async_interrupts_propagate_at_once(
        self, clock: FakeClock, exc_type: type[BaseException]
    ) -> None:
        """Under execute_async interrupts are raised at once too."""
        rec = EventRecorder()
        calls: list[int] = []

        async def fn() -> None:
            calls.append(1)
            raise exc_type

        with pytest.raises(exc_type):
            await full_stack(clock, rec).execute_async(fn)
        assert calls == [1]
        assert rec.events == []

    def test_interrupt_after_a_failure_stops_retrying(self, clock: FakeClock) -> None:
        """A KeyboardInterrupt on the second attempt ends the call with one backoff sleep."""
        calls: list[int] = []

        def fn() -> None:
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("x")
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            full_stack(clock).execute(fn)
        assert len(calls) == 2
        assert len(clock.sleeps) == 1


def gen() -> Iterator[int]:
    yield 1


async def agen() -> AsyncIterator[int]:
    yield 1


class TestRefusals:
    @pytest.mark.parametrize("fn", [gen, agen])
    def test_generators_refused_when_decorated(self, clock: FakeClock, fn: Any) -> None:
        """Decorating a generator function is a TypeError."""
        with pytest.raises(TypeError, match="generator function"):
            full_stack(clock)(fn)

    def test_generators_refused_by_execute(self, clock: FakeClock) -> None:
        """execute() refuses generator functions."""
        with pytest.raises(TypeError, match="generator function"):
            full_stack(clock).execute(gen)

    @pytest.mark.parametrize("fn", [gen, agen])
    async def test_generators_refused_by_execute_async(self, clock: FakeClock, fn: Any) -> None:
        """execute_async() refuses generator and async generator functions."""
        with pytest.raises(TypeError, match="generator function"):
            await full_stack(clock).execute_async(fn)

    def test_sync_def_returning_a_coroutine_refused(self, clock: FakeClock) -> None:
        """A plain function returning a coroutine is a TypeError; the coroutine is closed."""

        async def work() -> int:
            return 1

        made: list[Any] = []

        def returns_coroutine() -> Any:
            coro = work()
            made.append(coro)
            return coro

        p = resilio.Pipeline([resilio.Fallback(value="fb", on=[KeyError])], clock=clock)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(TypeError, match="returned a coroutine"):
                p.execute(returns_coroutine)
            gc.collect()
        assert made[0].cr_frame is None  # closed
        assert not [w for w in caught if "never awaited" in str(w.message)]

    async def test_execute_async_refuses_a_plain_result(self, clock: FakeClock) -> None:
        """A sync function given to execute_async is a PERMANENT TypeError naming it."""
        rec = EventRecorder()
        calls: list[int] = []

        def plain_total(order: int) -> int:
            calls.append(order)
            return order * 2

        p = resilio.Pipeline(
            [
                resilio.Fallback(value="fb", on=[resilio.ErrorKind.TRANSIENT]),
                resilio.Retry(attempts=3, backoff=0),
            ],
            clock=clock,
            listeners=[rec],
        )
        with pytest.raises(TypeError, match=r"'.*plain_total' returned a non-awaitable int"):
            await p.execute_async(plain_total, 21)  # type: ignore[arg-type]
        assert calls == [21]  # run once: not retried, not replaced as TRANSIENT
        assert [e.reason for e in rec.of(RetryGaveUp)] == ["permanent"]

    async def test_execute_async_plain_result_not_counted_by_a_breaker(
        self, clock: FakeClock
    ) -> None:
        """The misuse says nothing about the service: a breaker does not count it."""
        breaker = resilio.CircuitBreaker(failure_threshold=1)
        p = resilio.Pipeline([breaker], clock=clock)
        for _ in range(3):
            with pytest.raises(TypeError, match="non-awaitable int"):
                await p.execute_async(len, "abc")  # type: ignore[arg-type]
        assert breaker.snapshot().state is resilio.CircuitState.CLOSED

    async def test_execute_async_names_a_callable_object(self, clock: FakeClock) -> None:
        """A callable object returning a plain value is named by its class."""

        class Totaller:
            def __call__(self) -> str:
                return "x"

        p = resilio.Pipeline([], clock=clock)
        with pytest.raises(
            TypeError, match=r"Totaller' returned a non-awaitable str: .* use execute\(\)"
        ):
            await p.execute_async(Totaller())  # type: ignore[arg-type]


async def call(p: resilio.Pipeline, method: str, fn: Any, afn: Any) -> None:
    if method == "execute":
        p.execute(fn, context="orders")
    else:
        await p.execute_async(afn, context="orders")


class TestCallMisuse:
    """What execute() and execute_async() cannot run is refused before anything runs."""

    def retrying(self, clock: FakeClock, rec: EventRecorder) -> resilio.Pipeline:
        return resilio.Pipeline(
            [resilio.Retry(attempts=4, backoff=0.5)], clock=clock, listeners=[rec]
        )

    def test_execute_refuses_a_non_callable_at_once(self, clock: FakeClock) -> None:
        """execute(42) is a TypeError naming the type: no attempt, no sleep, no event."""
        rec = EventRecorder()
        with pytest.raises(TypeError, match=r"^execute\(\) takes a callable, got int$"):
            self.retrying(clock, rec).execute(42)  # type: ignore[arg-type]
        assert (clock.monotonic(), rec.events) == (1000.0, [])

    async def test_execute_async_refuses_a_coroutine_object(self, clock: FakeClock) -> None:
        """A coroutine object (not the function) is refused, closed, and never warned about."""
        rec = EventRecorder()

        async def work() -> int:
            return 1

        coro = work()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(TypeError, match=r"not a coroutine object: write execute_async\(fn"):
                await self.retrying(clock, rec).execute_async(coro)  # type: ignore[arg-type]
            gc.collect()
        assert coro.cr_frame is None  # closed
        assert not [w for w in caught if "never awaited" in str(w.message)]
        assert (clock.monotonic(), rec.events) == (1000.0, [])

    async def test_execute_async_refuses_a_non_callable(self, clock: FakeClock) -> None:
        """execute_async("x") is a TypeError naming the type."""
        with pytest.raises(TypeError, match=r"^execute_async\(\) takes a callable, got str$"):
            await self.retrying(clock, EventRecorder()).execute_async("x")  # type: ignore[arg-type]

    @pytest.mark.parametrize("method", ["execute", "execute_async"])
    async def test_context_must_be_a_context(self, clock: FakeClock, method: str) -> None:
        """context="orders" is a TypeError naming resilio.Context, and fn never runs."""
        calls: list[int] = []

        async def afn() -> None:
            calls.append(1)

        def fn() -> None:
            calls.append(1)

        p = self.retrying(clock, EventRecorder())
        with pytest.raises(TypeError, match=r"context= as a resilio.Context, got str"):
            await call(p, method, fn, afn)
        assert calls == []

    def test_a_context_subclass_is_accepted(self, clock: FakeClock) -> None:
        """A subclass of Context is a Context."""

        class Tagged(resilio.Context):
            __slots__ = ()

        assert resilio.Pipeline([], clock=clock).execute(lambda: 7, context=Tagged("op")) == 7

    def test_callable_objects_and_partials_still_run(self, clock: FakeClock) -> None:
        """Callables without __code__ (partials, builtins) run as before."""
        p = resilio.Pipeline([], clock=clock)
        assert p.execute(functools.partial(pow, 2), 10) == 1024
        assert p.execute(len, "abc") == 3

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"idempotent": "no"}, "idempotent= must be True, False or None, got str"),
            ({"idempotent": 1}, "idempotent= must be True, False or None, got int"),
            ({"operation": 3}, "operation= must be a str, got int"),
            ({"idempotency_key": b"k"}, "idempotency_key= must be a str, got bytes"),
        ],
    )
    def test_context_checks_its_arguments(self, kwargs: dict[str, Any], message: str) -> None:
        """A truthy "no" must not read as idempotent: Context refuses wrong types."""
        with pytest.raises(TypeError, match=message):
            resilio.Context(**kwargs)


class TestDecorator:
    @pytest.mark.parametrize("wrapper", [classmethod, staticmethod])
    def test_decorating_a_classmethod_object_is_refused(
        self, clock: FakeClock, wrapper: Any
    ) -> None:
        """@pipeline above @classmethod fails at decoration, saying which order works."""
        p = resilio.Pipeline([], clock=clock)
        with pytest.raises(TypeError, match=rf"write @{wrapper.__name__} above @pipeline"):
            p(wrapper(lambda *a: 1))

    def test_a_classmethod_over_a_decorated_function_works(self, clock: FakeClock) -> None:
        """@classmethod above @pipeline runs through the pipeline with the class bound."""
        p = resilio.Pipeline([], clock=clock)

        class Orders:
            prefix = "o-"

            @classmethod
            @p
            def make(cls, n: int) -> str:
                return f"{cls.prefix}{n}"

        assert Orders.make(3) == "o-3"

    def test_preserves_metadata(self, clock: FakeClock) -> None:
        """The decorated function keeps its name, qualname, docstring and wrapped function."""

        def charge(amount: int) -> int:
            """Charge a card."""
            return amount

        decorated = full_stack(clock)(charge)
        assert decorated.__name__ == "charge"
        assert decorated.__doc__ == "Charge a card."
        assert decorated.__wrapped__ is charge  # type: ignore[attr-defined]
        assert decorated(5) == 5

    def test_async_decorated_is_a_coroutine_function(self, clock: FakeClock) -> None:
        """Decorating an async def gives an async def."""

        async def fetch() -> int:
            return 1

        decorated = full_stack(clock)(fetch)
        assert inspect.iscoroutinefunction(decorated)
        assert asyncio.run(decorated()) == 1

    def test_each_decorated_call_gets_its_own_context(self, clock: FakeClock) -> None:
        """Every call of a decorated function starts at attempt 1."""
        rec = EventRecorder()
        p = resilio.Pipeline([resilio.Retry(attempts=3, backoff=0)], clock=clock, listeners=[rec])
        calls: list[int] = []

        @p
        def flaky() -> str:
            calls.append(1)
            if len(calls) % 2:
                raise ConnectionError("x")
            return "ok"

        assert flaky() == "ok"
        assert flaky() == "ok"
        assert [e.attempt for e in rec.of(RetryScheduled)] == [1, 1]


class TestSharing:
    def test_one_retry_policy_in_two_pipelines_shares_its_budget(self, clock: FakeClock) -> None:
        """The same Retry object in two pipelines spends one shared budget."""
        retry = resilio.Retry(
            attempts=5, backoff=0, budget=RetryBudget(ratio=0, min_retries_per_second=0.2)
        )
        p1 = resilio.Pipeline([retry], clock=clock, name="one")
        p2 = resilio.Pipeline([retry], clock=clock, name="two")
        calls: list[str] = []

        def failing(tag: str) -> None:
            calls.append(tag)
            raise ConnectionError(tag)

        with pytest.raises(ConnectionError):
            p1.execute(failing, "one")
        with pytest.raises(ConnectionError):
            p2.execute(failing, "two")
        assert calls == ["one", "one", "one", "two"]

    def test_one_breaker_in_two_pipelines_shares_its_state(self, clock: FakeClock) -> None:
        """The same CircuitBreaker object opened through one pipeline rejects in the other."""
        cb_module = pytest.importorskip("resilio.policies.circuit_breaker")
        breaker = cb_module.CircuitBreaker(failure_threshold=2, break_duration=30)
        p1 = resilio.Pipeline([breaker], clock=clock, name="one")
        p2 = resilio.Pipeline([breaker], clock=clock, name="two")
        for _ in range(2):
            with pytest.raises(ConnectionError):
                p1.execute(user_function_that_fails)
        with pytest.raises(resilio.CircuitOpen):
            p2.execute(lambda: "never runs")


class TestBrokenListener:
    def test_raising_listener_is_logged_and_does_not_break_the_call(self, clock: FakeClock) -> None:
        """A listener that raises is logged by name and the call still returns its result."""
        from structlog.testing import capture_logs

        def broken(event: object) -> None:
            raise RuntimeError("listener bug secret-canary")

        calls: Iterator[Exception | str] = iter([ConnectionError("x"), "ok"])

        def flaky() -> str:
            value = next(calls)
            if isinstance(value, Exception):
                raise value
            return value

        p = resilio.Pipeline(
            [resilio.Retry(attempts=2, backoff=resilio.backoff.constant(0))],
            listeners=[broken],
            clock=clock,
            telemetry=False,
        )
        with capture_logs() as logs:
            assert p.execute(flaky) == "ok"
        failed = [entry for entry in logs if entry["event"] == "resilio.listener.failed"]
        assert failed[0]["event_name"] == "retry.scheduled"
        assert failed[0]["error_type"] == "RuntimeError"
        assert "secret-canary" not in repr(logs)


def _success_path_policies() -> list[Policy]:
    return [
        resilio.Fallback(value=None),
        resilio.Timeout(10),
        resilio.Retry(attempts=3),
        resilio.CircuitBreaker(),
        resilio.RateLimiter(rate=10**9, per=1.0),
        resilio.Bulkhead(max_concurrent=100),
    ]


def _ok() -> int:
    return 1


async def _aok() -> int:
    return 1


class TestSuccessPath:
    @pytest.mark.parametrize("telemetry", [True, False])
    def test_first_try_success_emits_nothing(self, clock: FakeClock, telemetry: bool) -> None:
        """First-try successes through a closed breaker reach no listener, telemetry on or off."""
        heard: list[object] = []
        p = resilio.Pipeline(
            _success_path_policies(), clock=clock, listeners=[heard.append], telemetry=telemetry
        )
        decorated = p(_ok)
        for _ in range(200):
            assert decorated() == 1
            assert p.execute(_ok) == 1
        assert heard == []

    async def test_first_try_success_emits_nothing_async(self, clock: FakeClock) -> None:
        """First-try async successes through a closed breaker reach no listener."""
        heard: list[object] = []
        p = resilio.Pipeline(_success_path_policies(), clock=clock, listeners=[heard.append])
        decorated = p(_aok)
        for _ in range(200):
            assert await decorated() == 1
            assert await p.execute_async(_aok) == 1
        assert heard == []

    def test_success_path_keeps_no_memory(self, clock: FakeClock) -> None:
        """Ten thousand successful calls leave no allocated block behind (nothing per call)."""
        decorated = resilio.Pipeline(_success_path_policies(), clock=clock, telemetry=False)(_ok)
        for _ in range(1000):  # warm up caches and specialised bytecode
            decorated()
        gc.collect()
        before = sys.getallocatedblocks()
        for _ in range(10_000):
            decorated()
        gc.collect()
        assert sys.getallocatedblocks() - before < 50

    async def test_success_path_keeps_no_memory_async(self, clock: FakeClock) -> None:
        """Ten thousand successful async calls leave no allocated block behind."""
        decorated = resilio.Pipeline(_success_path_policies(), clock=clock, telemetry=False)(_aok)
        for _ in range(1000):
            await decorated()
        gc.collect()
        before = sys.getallocatedblocks()
        for _ in range(10_000):
            await decorated()
        gc.collect()
        assert sys.getallocatedblocks() - before < 50

    async def test_decorator_context_matches_a_new_context(self, clock: FakeClock) -> None:
        """The decorator's per-call context has every field a Context(name) has, same values."""
        seen: list[resilio.Context] = []
        p = resilio.Pipeline([_Capture(seen)], name="p", clock=clock, telemetry=False)
        p(_ok)()
        await p(_aok)()
        expected = resilio.Context("p")
        expected.pipeline = "p"
        for ctx in seen:
            for slot in resilio.Context.__slots__:
                if slot != "_clock":
                    assert getattr(ctx, slot) == getattr(expected, slot), slot
            assert ctx._clock is clock
        assert len(seen) == 2


class _Capture(Policy):
    """A policy whose layer records the context it runs with."""

    kind: ClassVar[str] = "capture"

    def __init__(self, seen: list[resilio.Context]) -> None:
        self.name = "capture"
        self.options = None
        self.seen = seen

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        seen = self.seen

        class _Layer(Layer):
            __slots__ = ()

            def run(self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Any) -> Any:
                seen.append(ctx)
                return self.inner.run(fn, args, kwargs, ctx)

            async def run_async(
                self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Any
            ) -> Any:
                seen.append(ctx)
                return await self.inner.run_async(fn, args, kwargs, ctx)

        return _Layer(inner, env, self)
