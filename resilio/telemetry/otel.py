"""OpenTelemetry tracing of executions, and the runner wrapper that feeds metrics and health.

One span per execution (``resilio <pipeline>``, kind INTERNAL, a child of the caller's current
span); policy events become span events on it. With ``trace_attempts=True`` every attempt is a
child span, so spans made by the function (an HTTP client's) hang under the right attempt.

Spans are made only when they can matter. Per execution the wrapper reads the tracer provider (a
module-global read when the default, global provider is used) and skips tracing when:

* no provider was set (the API's proxy) or it is a ``NoOpTracerProvider``;
* the provider's sampler is ``ALWAYS_OFF``;
* the sampler is ``ParentBased`` with an ``ALWAYS_OFF`` root and the caller has no valid span.

In those cases the SDK would only make a non-recording span whose children are dropped too, so
skipping it changes nothing but the cost. A non-recording parent that *is* valid (a sampled-out
remote parent) still gets a span, so its trace id keeps propagating to the function's spans.

Failures set an ERROR status without description, the ``error.type`` attribute, and one
``exception`` span event holding only ``exception.type``: exception messages may hold payloads
(the Customer.io client puts request bodies in them), so they are never recorded.

A cancellation or interrupt (a ``BaseException`` that is not an ``Exception``:
``asyncio.CancelledError``, ``KeyboardInterrupt``, ...) ends the span with the outcome
``cancelled``, its ``resilio.attempts``, and the status left UNSET, as the OpenTelemetry API's
own ``use_span`` does (it records only ``Exception`` s as errors): the call was abandoned, it did
not fail. The execution is counted and timed with that outcome.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import attrs
from opentelemetry import context as otel_context
from opentelemetry import trace as _trace_mod
from opentelemetry.metrics import _internal as _metrics_internal
from opentelemetry.trace import (
    NoOpTracerProvider,
    ProxyTracerProvider,
    SpanKind,
    Status,
    StatusCode,
)

from resilio._clock import SYSTEM_CLOCK
from resilio._outcome import Failure
from resilio.errors import Rejected, TimeoutExceeded
from resilio.events import (
    CircuitClosed,
    CircuitHalfOpened,
    CircuitOpened,
    Event,
    FallbackUsed,
    RateLimitWaited,
    error_type_name,
)
from resilio.policies._base import Env, Layer
from resilio.telemetry._settings import SWITCHES
from resilio.telemetry.metrics import PipelineStats

if TYPE_CHECKING:
    from resilio._context import Context
    from resilio._pipeline import Pipeline
    from resilio.policies._base import Policy
    from resilio.telemetry.metrics import _Binding

__all__ = ["Instrumentation", "event_attributes"]

Run = Callable[[Callable[..., Any], Any, Any, "Context"], Any]
RunAsync = Callable[[Callable[..., Any], Any, Any, "Context"], Awaitable[Any]]

_OFF, _PARENT, _ON = 0, 1, 2
_INTERNAL = SpanKind.INTERNAL
_ERROR = Status(StatusCode.ERROR)
CANCELLED = "cancelled"
"""The outcome of an execution ended by a BaseException that is not an Exception."""


class _Execution:
    """The traced execution running in this context: its span and what happened to it."""

    __slots__ = ("ended", "fallback", "owner", "span")

    def __init__(self, owner: Instrumentation, span: Any) -> None:
        self.owner = owner
        self.span = span
        self.fallback = False
        self.ended = False


_current: ContextVar[_Execution | None] = ContextVar("resilio_execution", default=None)
# Set by the event listener when a fallback served an untraced execution; read and cleared by
# that execution's runner on the way out (listener and runner share the context).
_fallback_seen: ContextVar[bool] = ContextVar("resilio_fallback_seen", default=False)

_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {}
_SKIPPED = frozenset({"pipeline", "operation"})
_STATES: dict[type, str] = {
    CircuitOpened: "open",
    CircuitHalfOpened: "half_open",
    CircuitClosed: "closed",
}


def event_attributes(event: Event) -> dict[str, Any]:
    """Return an event's fields as span attributes (``resilio.<field>``, ``error.type``).

    The pipeline and operation are left out (the span has them); ``None`` values are dropped.
    A breaker transition also gets ``resilio.state``, the state the breaker entered.
    """
    cls = type(event)
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple(
            (f.name, "error.type" if f.name == "error_type" else f"resilio.{f.name}")
            for f in attrs.fields(cls)
            if f.name not in _SKIPPED
        )
        _FIELDS[cls] = names
    out: dict[str, Any] = {}
    for field, key in names:
        value = getattr(event, field)
        if value is not None and isinstance(value, str | bool | int | float):
            out[key] = value
    state = _STATES.get(cls)
    if state is not None:
        out["resilio.state"] = state
    return out


def _outcome(failure: Failure) -> tuple[str, str]:
    error = failure.exception
    kind = (
        "rejected"
        if isinstance(error, Rejected) and not isinstance(error, TimeoutExceeded)
        else "failure"
    )
    return kind, error_type_name(error)


def _sampling_mode(provider: Any) -> int:
    if isinstance(provider, NoOpTracerProvider | ProxyTracerProvider):
        return _OFF
    sampler = getattr(provider, "sampler", None)
    describe = getattr(sampler, "get_description", None)
    description = describe() if callable(describe) else ""
    if description == "AlwaysOffSampler":
        return _OFF
    if isinstance(description, str) and description.startswith("ParentBased{root:AlwaysOffSampler"):
        return _PARENT
    return _ON


class Instrumentation:
    """Telemetry of one pipeline: its event listeners, its attempt layer and its runner wrapper.

    Made by :func:`resilio.telemetry.instrument` when the pipeline is built.

    Attributes:
        listeners: Event listeners to add to the pipeline (tracing/metrics, then logs).
        stats: Counts, latencies and last success/failure times for metrics and health.
        trace_attempts: Whether each attempt gets its own span.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        trace_attempts: bool = False,
    ) -> None:
        from resilio.telemetry.logging import log_event

        self.name = pipeline.name
        self.stats = PipelineStats(pipeline.name, pipeline.policies, pipeline.clock)
        self.trace_attempts = trace_attempts
        self.listeners: list[Callable[[Event], None]] = [self._on_event, log_event]
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._resolved: tuple[Any, int, Any] = (None, _OFF, None)
        self._span_name = f"resilio {pipeline.name}"
        self._attempt_span_name = f"resilio {pipeline.name} attempt"
        clock = pipeline.clock
        self._mono: Callable[[], float] = (
            time.monotonic if clock is SYSTEM_CLOCK else clock.monotonic
        )
        # The attempt layer goes just inside the innermost retry, else around the function. It
        # is built only when asked for (trace_attempts, or the attempt_durations switch): it
        # costs a call per attempt, and a histogram measurement per attempt once metrics are on.
        self._attempt_target: Policy | None = None
        if trace_attempts or SWITCHES.attempt_durations:
            for policy in reversed(pipeline.policies):
                if policy.kind == "retry":
                    self._attempt_target = policy
                    break
            else:
                if pipeline.policies:
                    self._attempt_target = pipeline.policies[-1]
        self._attempt_layer_installed = False

    # -- provider resolution (per execution, cheap) -------------------------------------------

    def _tracer(self) -> Any:
        provider = self._tracer_provider
        if provider is None:
            provider = _trace_mod._TRACER_PROVIDER
            if provider is None:
                return None
        resolved = self._resolved
        if resolved[0] is not provider:
            from resilio import __version__

            mode = _sampling_mode(provider)
            tracer = provider.get_tracer("resilio", __version__) if mode else None
            resolved = self._resolved = (provider, mode, tracer)
        mode = resolved[1]
        if mode == _ON:
            return resolved[2]
        if mode == _PARENT and _trace_mod.get_current_span().get_span_context().is_valid:
            return resolved[2]
        return None

    def _binding(self) -> _Binding | None:
        if not SWITCHES.metrics:
            return None
        return self.stats.active(self._meter_provider)

    # -- events -------------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        binding = self._binding()
        if binding is not None:
            wait = event.wait if isinstance(event, RateLimitWaited) else None
            self.stats.event(event.policy, event.name, wait)
        execution = _current.get()
        if execution is not None and execution.owner is self:
            if isinstance(event, FallbackUsed):
                execution.fallback = True
            span = execution.span
            if not execution.ended and span.is_recording():
                attributes = event_attributes(event)
                attributes["resilio.attempt"] = event.attempt
                span.add_event("resilio." + event.name, attributes)
        elif isinstance(event, FallbackUsed) and (SWITCHES.health or binding is not None):
            # Only a runner that measures the execution reads (and clears) the flag.
            _fallback_seen.set(True)

    # -- finishing an execution ---------------------------------------------------------------

    def _finish(
        self,
        result: Any,
        ctx: Context,
        t0: float,
        t1: float,
        fallback: bool,
        binding: _Binding | None,
    ) -> tuple[str, str | None]:
        stats = self.stats
        duration = t1 - t0
        if result.__class__ is Failure:
            outcome, error_type = _outcome(result)
        else:
            outcome, error_type = ("fallback" if fallback else "success"), None
        if SWITCHES.health:
            stats.latencies.append(duration)
            if outcome == "success":
                stats.last_success = t1
            else:
                stats.last_failure = t1
        if binding is not None:
            attempts = (0, 0)
            if not self._attempt_layer_installed:
                # Without the attempt layer, attempts are counted from the context: every
                # attempt before the last failed (that is why it was retried); the last one
                # succeeded only on success, and a rejected last attempt never called the function.
                ok = outcome == "success"
                calls = max(0, ctx.attempt - (outcome == "rejected"))
                attempts = (max(0, calls - ok), int(ok))
            stats.execution(binding, outcome, error_type, duration, attempts)
        return outcome, error_type

    def _start(self, tracer: Any, ctx: Context) -> tuple[_Execution, Any, Any]:
        span = tracer.start_span(self._span_name, kind=_INTERNAL)
        if span.is_recording():
            span.set_attribute("resilio.pipeline", self.name)
            if ctx.operation is not None:
                span.set_attribute("resilio.operation", ctx.operation)
        execution = _Execution(self, span)
        otel_token = otel_context.attach(_trace_mod.set_span_in_context(span))
        return execution, otel_token, _current.set(execution)

    def _end(
        self, execution: _Execution, ctx: Context, outcome: str, error_type: str | None
    ) -> None:
        span = execution.span
        execution.ended = True
        if span.is_recording():
            span.set_attribute("resilio.attempts", ctx.attempt)
            span.set_attribute("resilio.outcome", outcome)
            if error_type is not None:
                span.set_attribute("error.type", error_type)
                span.add_event("exception", {"exception.type": error_type})
                span.set_status(_ERROR)
        span.end()

    def _cancelled(self, ctx: Context, t0: float, t1: float, binding: _Binding | None) -> None:
        """Count an execution a cancellation or an interrupt ended (a BaseException).

        It is counted and timed with the outcome ``cancelled`` and no ``error.type``: the caller
        gave up on the call, which did not fail. Health statistics are left alone (a cut-short
        duration is no latency, and the dependency neither succeeded nor failed). Without the
        attempt layer, the attempts before the last are counted as failed (they were retried);
        the last one, interrupted (or cancelled in the wait after it), is not counted.
        """
        _take_fallback()  # a fallback seen before the cancellation must not mark the next call
        if binding is not None:
            attempts = (0, 0)
            if not self._attempt_layer_installed:
                attempts = (max(0, ctx.attempt - 1), 0)
            self.stats.execution(binding, CANCELLED, None, t1 - t0, attempts)

    def _abandon(self, execution: _Execution, ctx: Context, t0: float) -> None:
        """End the span of a cancelled execution (status left UNSET) and count it."""
        t1 = self._mono()
        execution.ended = True
        span = execution.span
        if span.is_recording():
            span.set_attribute("resilio.attempts", ctx.attempt)
            span.set_attribute("resilio.outcome", CANCELLED)
        span.end()
        self._cancelled(ctx, t0, t1, self._binding())

    # -- hooks used by the pipeline -----------------------------------------------------------

    def wrap_layer(self, policy: Policy, head: Layer, env: Env) -> Layer:
        """Put the attempt layer inside the innermost retry (or the innermost policy)."""
        if policy is self._attempt_target and not self._attempt_layer_installed:
            self._attempt_layer_installed = True
            return _AttemptLayer(head, env, self)
        return head

    def wrap_runners(self, run: Run, run_async: RunAsync) -> tuple[Run, RunAsync]:
        """Wrap the pipeline's outermost runners with timing, tracing, metrics and health."""
        tracer_for = self._tracer
        binding_for = self._binding
        mono = self._mono
        stats = self.stats
        latencies = stats.latencies
        fallback_seen = _fallback_seen
        switches = SWITCHES
        finish = self._finish
        start = self._start
        end = self._end
        abandon = self._abandon
        cancelled = self._cancelled
        current = _current
        detach = otel_context.detach
        trace_mod = _trace_mod
        metrics_mod = _metrics_internal
        global_providers = self._tracer_provider is None and self._meter_provider is None

        # The fast path: global providers, none set, health statistics off (health never used):
        # an execution costs this call, three module-global reads and nothing else.
        def idle() -> bool:
            return (
                global_providers
                and trace_mod._TRACER_PROVIDER is None
                and metrics_mod._METER_PROVIDER is None
                and not switches.health
            )

        def traced(
            tracer: Any, fn: Callable[..., Any], args: Any, kwargs: Any, ctx: Context
        ) -> Any:
            execution, otel_token, token = start(tracer, ctx)
            t0 = mono()
            try:
                result = run(fn, args, kwargs, ctx)
            except BaseException:
                abandon(execution, ctx, t0)
                raise
            finally:
                current.reset(token)
                detach(otel_token)
            t1 = mono()
            outcome, error_type = finish(result, ctx, t0, t1, execution.fallback, binding_for())
            end(execution, ctx, outcome, error_type)
            return result

        def run_slow(fn: Callable[..., Any], args: Any, kwargs: Any, ctx: Context) -> Any:
            tracer = tracer_for() if switches.tracing else None
            if tracer is not None:
                return traced(tracer, fn, args, kwargs, ctx)
            binding = binding_for()
            if not switches.health:
                if binding is None:
                    return run(fn, args, kwargs, ctx)
                if not switches.durations:  # counters only: no clock reads
                    try:
                        result = run(fn, args, kwargs, ctx)
                    except BaseException:
                        cancelled(ctx, 0.0, 0.0, binding)
                        raise
                    finish(result, ctx, 0.0, 0.0, _take_fallback(), binding)
                    return result
            t0 = mono()
            try:
                result = run(fn, args, kwargs, ctx)
            except BaseException:
                cancelled(ctx, t0, mono(), binding)
                raise
            finish(result, ctx, t0, mono(), _take_fallback(), binding)
            return result

        def run_instrumented(fn: Callable[..., Any], args: Any, kwargs: Any, ctx: Context) -> Any:
            if (
                global_providers
                and trace_mod._TRACER_PROVIDER is None
                and metrics_mod._METER_PROVIDER is None
            ):
                if not switches.health:
                    return run(fn, args, kwargs, ctx)
                # No provider, health in use: two clock reads and a deque append per success.
                t0 = mono()
                try:
                    result = run(fn, args, kwargs, ctx)
                except BaseException:
                    _take_fallback()  # a fallback seen before must not mark the next call
                    raise
                t1 = mono()
                if result.__class__ is not Failure and not fallback_seen.get():
                    latencies.append(t1 - t0)
                    stats.last_success = t1
                    return result
                finish(result, ctx, t0, t1, _take_fallback(), None)
                return result
            return run_slow(fn, args, kwargs, ctx)

        async def traced_async(
            tracer: Any, fn: Callable[..., Any], args: Any, kwargs: Any, ctx: Context
        ) -> Any:
            execution, otel_token, token = start(tracer, ctx)
            t0 = mono()
            try:
                result = await run_async(fn, args, kwargs, ctx)
            except BaseException:
                abandon(execution, ctx, t0)
                raise
            finally:
                current.reset(token)
                detach(otel_token)
            t1 = mono()
            outcome, error_type = finish(result, ctx, t0, t1, execution.fallback, binding_for())
            end(execution, ctx, outcome, error_type)
            return result

        async def run_async_instrumented(
            fn: Callable[..., Any], args: Any, kwargs: Any, ctx: Context
        ) -> Any:
            if idle():
                return await run_async(fn, args, kwargs, ctx)
            tracer = tracer_for() if switches.tracing else None
            if tracer is not None:
                return await traced_async(tracer, fn, args, kwargs, ctx)
            binding = binding_for()
            if not switches.health:
                if binding is None:
                    return await run_async(fn, args, kwargs, ctx)
                if not switches.durations:  # counters only: no clock reads
                    try:
                        result = await run_async(fn, args, kwargs, ctx)
                    except BaseException:
                        cancelled(ctx, 0.0, 0.0, binding)
                        raise
                    finish(result, ctx, 0.0, 0.0, _take_fallback(), binding)
                    return result
            t0 = mono()
            try:
                result = await run_async(fn, args, kwargs, ctx)
            except BaseException:
                cancelled(ctx, t0, mono(), binding)
                raise
            finish(result, ctx, t0, mono(), _take_fallback(), binding)
            return result

        return run_instrumented, run_async_instrumented

    def __repr__(self) -> str:
        return f"Instrumentation({self.name!r}, trace_attempts={self.trace_attempts})"


def _take_fallback() -> bool:
    if _fallback_seen.get():
        _fallback_seen.set(False)
        return True
    return False


class _AttemptLayer(Layer):
    """Times and counts each attempt for metrics and, with ``trace_attempts``, makes it a span."""

    __slots__ = ("instr",)

    def __init__(self, inner: Layer, env: Env, instr: Instrumentation) -> None:
        super().__init__(inner, env, None)
        self.instr = instr

    def _begin(self, ctx: Context) -> tuple[Any, Any, _Binding | None]:
        """Return the attempt's span and context token (or ``None``s) and the metrics binding."""
        instr = self.instr
        binding = instr._binding()
        if instr.trace_attempts:
            execution = _current.get()
            if execution is not None and execution.owner is instr and not execution.ended:
                span = instr._resolved[2].start_span(instr._attempt_span_name, kind=_INTERNAL)
                if span.is_recording():
                    span.set_attribute("resilio.attempt", ctx.attempt)
                token = otel_context.attach(_trace_mod.set_span_in_context(span))
                return span, token, binding
        return None, None, binding

    def _close(self, span: Any, binding: _Binding | None, result: Any, duration: float) -> None:
        failed = result.__class__ is Failure
        if binding is not None:
            self.instr.stats.attempt(binding, not failed, duration)
        if span is not None:
            if failed and span.is_recording():
                span.set_attribute("error.type", error_type_name(result.exception))
                span.set_status(_ERROR)
            span.end()

    def run(self, fn: Callable[..., Any], args: Any, kwargs: Any, ctx: Context) -> Any:
        """Run one attempt, timed and (optionally) traced."""
        span, token, binding = self._begin(ctx)
        if span is None and binding is None:
            return self.inner.run(fn, args, kwargs, ctx)
        mono = self.instr._mono
        t0 = mono()
        try:
            result = self.inner.run(fn, args, kwargs, ctx)
        except BaseException:
            if span is not None:
                span.end()
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
        self._close(span, binding, result, mono() - t0)
        return result

    async def run_async(self, fn: Callable[..., Any], args: Any, kwargs: Any, ctx: Context) -> Any:
        """Run one attempt on the event loop, timed and (optionally) traced."""
        span, token, binding = self._begin(ctx)
        if span is None and binding is None:
            return await self.inner.run_async(fn, args, kwargs, ctx)
        mono = self.instr._mono
        t0 = mono()
        try:
            result = await self.inner.run_async(fn, args, kwargs, ctx)
        except BaseException:
            if span is not None:
                span.end()
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
        self._close(span, binding, result, mono() - t0)
        return result
