"""The pipeline: policies composed outermost first, run for plain functions and coroutines."""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from resilio._clock import SYSTEM_CLOCK, Clock
from resilio._context import Context
from resilio._outcome import Failure
from resilio.classify import Classification, ErrorKind
from resilio.policies._base import Env, Layer, Policy

if TYPE_CHECKING:
    from resilio.classify import Classification, Classifier
    from resilio.events import Event, Listener

__all__ = ["Pipeline"]

P = ParamSpec("P")
T = TypeVar("T")

_new = object.__new__
_CO_GENERATORS = inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR
_LAZY_RESULTS = frozenset((types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType))


def _refuse_generator(fn: Callable[..., Any]) -> None:
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_flags & _CO_GENERATORS:
        raise TypeError(
            f"{getattr(fn, '__qualname__', fn)!r} is a generator function: a pipeline would only "
            "protect creating the generator, not iterating it; wrap a function that consumes it"
        )


def _refuse_call(fn: Any, context: Any, method: str) -> None:
    """Raise the TypeError for what ``execute``/``execute_async`` cannot run (cold path)."""
    if context is not None and not isinstance(context, Context):
        raise TypeError(
            f"{method}() takes context= as a resilio.Context, got {type(context).__qualname__}"
        )
    if inspect.iscoroutine(fn):
        fn.close()  # never awaited by anyone: close it quietly
        raise TypeError(
            f"{method}() takes the async function and its arguments, not a coroutine object: "
            f"write {method}(fn, *args), not {method}(fn(*args))"
        )
    if not callable(fn):
        raise TypeError(f"{method}() takes a callable, got {type(fn).__qualname__}")
    _refuse_generator(fn)


def _misuse(error: TypeError) -> Failure:
    # A programming error, not a sign of the service's health: PERMANENT, so no policy retries
    # it and no circuit breaker counts it.
    failure = Failure(error)
    failure.classification = Classification(kind=ErrorKind.PERMANENT, reason="misuse")
    return failure


def _not_awaitable(fn: Callable[..., Any], result: Any) -> Failure:
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    if result.__class__ in _LAZY_RESULTS:
        what = "a generator: a pipeline would only protect creating it"
    else:
        what = (
            f"a non-awaitable {type(result).__qualname__}: execute_async() runs an async def or "
            "a callable returning an awaitable; use execute() for a plain function"
        )
    return _misuse(TypeError(f"{name!r} returned {what}"))


class _Invoke(Layer):
    """The innermost layer: calls the user's function and turns its exception into a Failure."""

    __slots__ = ()

    def run(self, fn: Callable[..., Any], args: Any, kwargs: Any, ctx: Context) -> Any:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            return Failure(exc)
        if result.__class__ in _LAZY_RESULTS:
            if result.__class__ is types.CoroutineType:
                result.close()
                what = "a coroutine: use execute_async() or decorate an async def"
            else:
                what = "a generator: a pipeline would only protect creating it"
            return _misuse(TypeError(f"{getattr(fn, '__qualname__', fn)!r} returned {what}"))
        return result

    async def run_async(self, fn: Callable[..., Any], args: Any, kwargs: Any, ctx: Context) -> Any:
        try:
            result = fn(*args, **kwargs)
            if result.__class__ is types.CoroutineType or inspect.isawaitable(result):
                result = await result
            else:
                return _not_awaitable(fn, result)
        except Exception as exc:
            return Failure(exc)
        if result.__class__ in _LAZY_RESULTS:
            return _misuse(
                TypeError(
                    f"{getattr(fn, '__qualname__', fn)!r} returned a generator: a pipeline "
                    "would only protect creating it"
                )
            )
        return result


class Pipeline:
    """Policies composed into one resilient way of calling a function.

    Policies are listed outermost first: in ``[Fallback, Timeout, Retry, CircuitBreaker]`` the
    retry policy sees every breaker rejection and the timeout bounds all attempts together.

    Args:
        policies: The policies, outermost first. A policy object may be shared by several
            pipelines; its state (a breaker's, a bulkhead's) is then shared too.
        name: The pipeline's name, used in events, traces, metrics and logs.
        listeners: Callables that receive every event of every policy of this pipeline.
        clock: The source of time (default: the system clock). Tests pass a
            :class:`resilio.testing.FakeClock`.
        classifier: Classifies exceptions before plugins and the default classifier do.
        telemetry: Whether to trace and log executions through OpenTelemetry and structlog.
        tracer_provider: OpenTelemetry tracer provider (default: the global one).
        meter_provider: OpenTelemetry meter provider (default: the global one).
        trace_attempts: Make each attempt a child span of the execution's span.

    Raises:
        TypeError: If an entry of ``policies`` is not a :class:`~resilio.policies._base.Policy`.
    """

    def __init__(
        self,
        policies: Sequence[Policy] = (),
        *,
        name: str = "pipeline",
        listeners: Iterable[Listener] = (),
        clock: Clock | None = None,
        classifier: Classifier | None = None,
        telemetry: bool = True,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        trace_attempts: bool = False,
    ) -> None:
        if isinstance(policies, Policy):
            raise TypeError("Pipeline takes a list of policies, outermost first")
        policies = list(policies)
        for i, policy in enumerate(policies):
            if not isinstance(policy, Policy):
                raise TypeError(
                    f"policies[{i}] of pipeline {name!r} is {type(policy).__name__}, not a policy"
                )
        if not isinstance(name, str) or not name:
            raise TypeError("pipeline name must be a non-empty string")
        self.name = name
        self.policies: tuple[Policy, ...] = tuple(policies)
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._listeners: list[Listener] = list(listeners)
        from resilio.plugins import _runtime

        _runtime.prepare()  # discover plugins now, not in the first failing call
        # apply_operation answers nothing: it gives the context its operation's idempotence.
        classifiers: list[Classifier] = [_runtime.apply_operation]
        if classifier is not None:
            classifiers.append(classifier)
        classifiers.append(_runtime.classify_operation)
        classifiers.append(_runtime.classify_with_plugins)
        self._plugin_events = _runtime.emit_event
        self._instrumentation: Any = None
        if telemetry:
            from resilio import telemetry as _telemetry

            self._instrumentation = _telemetry.instrument(
                self,
                tracer_provider=tracer_provider,
                meter_provider=meter_provider,
                trace_attempts=trace_attempts,
            )
            if self._instrumentation is not None:
                self._listeners.extend(self._instrumentation.listeners)
        self._env = Env(name, self.clock, tuple(classifiers), self._emit, True)
        head: Layer = _Invoke(None, self._env)
        for policy in reversed(self.policies):
            if self._instrumentation is not None:
                head = self._instrumentation.wrap_layer(policy, head, self._env)
            head = policy.make_layer(head, self._env)
        self._head = head
        self._run = head.run
        self._run_async = head.run_async
        if self._instrumentation is not None:
            self._run, self._run_async = self._instrumentation.wrap_runners(
                self._run, self._run_async
            )

    # -- events ------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Register another callable to receive this pipeline's events."""
        self._listeners.append(listener)

    def _emit(self, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                from resilio.telemetry._log import log_listener_error

                log_listener_error(listener, event)
        self._plugin_events(event)

    def classify(self, error: BaseException, context: Context | None = None) -> Classification:
        """Classify an exception the way this pipeline's policies would.

        Args:
            error: The exception.
            context: The execution context (its operation selects the operation's classifier).

        Returns:
            The classification from the pipeline's classifier, the operation's, plugins', or the
            default.
        """
        ctx = self._context(context)
        return self._env.classify(Failure(error), ctx)

    # -- running -----------------------------------------------------------------------------

    def _context(self, context: Context | None) -> Context:
        ctx = context if context is not None else Context()
        if ctx.operation is None:
            ctx.operation = self.name
        ctx.pipeline = self.name
        ctx._clock = self.clock
        return ctx

    def execute(
        self, fn: Callable[P, T], /, *args: Any, context: Context | None = None, **kwargs: Any
    ) -> T:
        """Run ``fn(*args, **kwargs)`` through the pipeline.

        Args:
            fn: A plain (non-async, non-generator) callable.
            *args: Positional arguments for ``fn``.
            context: The execution context; one is made if not given.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            What ``fn`` returned (or a fallback's value).

        Raises:
            Exception: ``fn``'s own exception with its original traceback, or a
                :class:`resilio.Rejected` if a policy refused the call.
            TypeError: If ``fn`` is not callable or is a generator function, if ``context`` is
                not a :class:`resilio.Context` (raised before anything runs), or if ``fn``
                returns a coroutine (a PERMANENT misuse: never retried or counted).
        """
        code = getattr(fn, "__code__", None)
        if (
            code is None
            or code.co_flags & _CO_GENERATORS
            or (context is not None and context.__class__ is not Context)
        ):
            _refuse_call(fn, context, "execute")
        ctx = context if context is not None else Context(self.name)
        ctx.pipeline = self.name
        ctx._clock = self.clock
        if ctx.operation is None:
            ctx.operation = self.name
        result = self._run(fn, args, kwargs, ctx)
        if result.__class__ is Failure:
            error = result.exception
            del result
            try:
                raise error
            finally:
                del error
        return result  # type: ignore[no-any-return]

    async def execute_async(
        self,
        fn: Callable[P, Awaitable[T]],
        /,
        *args: Any,
        context: Context | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``await fn(*args, **kwargs)`` through the pipeline.

        Args:
            fn: An ``async def`` function (or any callable returning an awaitable).
            *args: Positional arguments for ``fn``.
            context: The execution context; one is made if not given.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            What ``fn``'s awaitable produced (or a fallback's value).

        Raises:
            Exception: ``fn``'s own exception with its original traceback, or a
                :class:`resilio.Rejected` if a policy refused the call.
            TypeError: If ``fn`` is not callable (a coroutine object included: pass the
                function and its arguments), is a generator or async generator function, or if
                ``context`` is not a :class:`resilio.Context`; or if ``fn`` returns
                something that is not awaitable (a plain function: use :meth:`execute`). This
                misuse is classified PERMANENT: no policy retries it or counts it.
        """
        code = getattr(fn, "__code__", None)
        if (
            code is None
            or code.co_flags & _CO_GENERATORS
            or (context is not None and context.__class__ is not Context)
        ):
            _refuse_call(fn, context, "execute_async")
        ctx = context if context is not None else Context(self.name)
        ctx.pipeline = self.name
        ctx._clock = self.clock
        if ctx.operation is None:
            ctx.operation = self.name
        result = await self._run_async(fn, args, kwargs, ctx)
        if result.__class__ is Failure:
            error = result.exception
            del result
            try:
                raise error
            finally:
                del error
        return result  # type: ignore[no-any-return]

    # -- decorator ---------------------------------------------------------------------------

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function (``def`` or ``async def``) so every call runs through the pipeline.

        Raises:
            TypeError: If ``fn`` is a generator or async generator function, or a
                ``classmethod``/``staticmethod`` object (put the pipeline's decorator below
                ``@classmethod``, next to the function).
        """
        if isinstance(fn, classmethod | staticmethod):
            kind = type(fn).__name__
            raise TypeError(
                f"a pipeline decorates functions, not {kind} objects: write @{kind} above "
                f"@pipeline, so the pipeline wraps the function itself"
            )
        _refuse_generator(fn)
        run = self._run
        run_async = self._run_async
        name = self.name
        clock = self.clock

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                ctx = _new(Context)  # what Context(name) makes, without its __init__ call
                ctx.operation = ctx.pipeline = name
                ctx.idempotency_key = ctx.idempotent = ctx._attributes = ctx.payload = None
                ctx.deadline = None
                ctx.attempt = 1
                ctx._clock = clock
                result = await run_async(fn, args, kwargs, ctx)
                if result.__class__ is Failure:
                    error = result.exception
                    del result
                    try:
                        raise error
                    finally:
                        del error
                return result

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            ctx = _new(Context)  # what Context(name) makes, without its __init__ call
            ctx.operation = ctx.pipeline = name
            ctx.idempotency_key = ctx.idempotent = ctx._attributes = ctx.payload = None
            ctx.deadline = None
            ctx.attempt = 1
            ctx._clock = clock
            result = run(fn, args, kwargs, ctx)
            if result.__class__ is Failure:
                error = result.exception
                del result
                try:
                    raise error
                finally:
                    del error
            return result

        return wrapper

    def __repr__(self) -> str:
        inner = ", ".join(repr(p) for p in self.policies)
        return f"Pipeline(name={self.name!r}, policies=[{inner}])"
