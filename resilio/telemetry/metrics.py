"""OpenTelemetry metrics of pipelines, and the per-pipeline statistics behind them and health.

Counts (executions, attempts, events, rate-limiter waits) are kept in process and reported
through observable counters when a reader collects, so the success path adds to an integer
instead of calling the SDK. Durations go to histograms: they are queued on the success path and
recorded into the SDK when a reader collects (or as soon as the queue holds
:data:`MAX_PENDING` values), which moves the SDK's per-measurement cost off the caller's path.

Every metric is named under ``resilio.`` and labelled only with low-cardinality values: the
pipeline, policy and event names, the outcome and ``error.type`` (an exception class name).
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import CallbackOptions, NoOpMeterProvider, Observation
from opentelemetry.metrics import _internal as _metrics_internal

from resilio.telemetry._settings import SWITCHES

if TYPE_CHECKING:
    from resilio._clock import Clock
    from resilio.policies._base import Policy

__all__ = [
    "MAX_PENDING",
    "METRICS",
    "RING_SIZE",
    "PipelineStats",
    "observe_outbox",
    "outbox_depths",
    "unobserve_outbox",
]

RING_SIZE = 512
"""How many recent execution latencies each pipeline keeps for health percentiles."""

MAX_PENDING = 4096
"""Queued durations per pipeline beyond which they are recorded on the caller's path."""

METRICS: dict[str, tuple[str, str, str]] = {
    "resilio.executions": ("counter", "{execution}", "Executions by outcome."),
    "resilio.attempts": ("counter", "{attempt}", "Attempts (calls of the function) by outcome."),
    "resilio.events": ("counter", "{event}", "Policy events by policy and event name."),
    "resilio.execution.duration": ("histogram", "s", "Duration of whole executions."),
    "resilio.attempt.duration": ("histogram", "s", "Duration of single attempts."),
    "resilio.circuit.state": (
        "gauge",
        "1",
        "Breaker state: 0 closed, 1 half-open, 2 open, 3 isolated.",
    ),
    "resilio.bulkhead.in_use": ("gauge", "{call}", "Calls holding a bulkhead slot."),
    "resilio.bulkhead.queued": ("gauge", "{call}", "Calls waiting for a bulkhead slot."),
    "resilio.rate_limiter.wait": (
        "counter",
        "s",
        "Seconds calls waited for a rate-limiter permit.",
    ),
    "resilio.outbox.depth": ("gauge", "{item}", "Items waiting in an outbox."),
}
"""Name → (instrument kind, unit, description) of every metric resilio reports."""

_STATE_VALUES = {
    "closed": 0,
    "half_open": 1,
    "half-open": 1,
    "halfopen": 1,
    "open": 2,
    "isolated": 3,
}
"""Breaker state → ``resilio.circuit.state`` value. Isolated (forced open by ``isolate()`` until
``reset()``) is 3, after open: it refuses every call as open does, but no break ends it."""


def state_name(policy: Any) -> str | None:
    """Return a breaker's state: ``"closed"``, ``"half_open"``, ``"open"`` or ``"isolated"``.

    ``None`` when the policy has no state, or one of another name.
    """
    state = getattr(policy, "state", None)
    if state is None:
        return None
    value = getattr(state, "value", state)
    if not isinstance(value, str):
        value = getattr(state, "name", str(state))
    value = value.lower().replace("-", "_")
    return value if value in _STATE_VALUES else None


# -- outboxes ----------------------------------------------------------------------------------

_outboxes: dict[str, Callable[[], int]] = {}
_outboxes_lock = threading.Lock()


def observe_outbox(name: str, depth_fn: Callable[[], int]) -> None:
    """Report an outbox's depth in metrics (``resilio.outbox.depth``) and health reports.

    Args:
        name: The outbox's name (a metric label: keep it a fixed name, never an id).
        depth_fn: Returns the number of items waiting; called when metrics are collected and
            when a health report is made. It must be cheap and must not block for long.
    """
    with _outboxes_lock:
        _outboxes[name] = depth_fn


def unobserve_outbox(name: str) -> None:
    """Stop reporting an outbox registered with :func:`observe_outbox` (no error if unknown)."""
    with _outboxes_lock:
        _outboxes.pop(name, None)


def outbox_depths() -> dict[str, int | None]:
    """Return the depth of every observed outbox (``None`` where its function raised)."""
    with _outboxes_lock:
        items = list(_outboxes.items())
    depths: dict[str, int | None] = {}
    for name, fn in items:
        try:
            depths[name] = int(fn())
        except Exception:
            depths[name] = None
    return depths


# -- per-pipeline statistics ---------------------------------------------------------------------


class PipelineStats:
    """What one pipeline's telemetry has seen: counts, queued durations, latencies, last times.

    Created by the pipeline's instrumentation; read by metric callbacks and health reports.

    Attributes:
        name: The pipeline's name.
        policies: The pipeline's policies, outermost first.
        clock: The pipeline's clock (times below are its monotonic times).
        latencies: The most recent execution durations in seconds (at most :data:`RING_SIZE`).
        last_success: Monotonic time of the last execution that returned the real result.
        last_failure: Monotonic time of the last execution that failed, was rejected or fell back.
    """

    def __init__(self, name: str, policies: tuple[Policy, ...], clock: Clock) -> None:
        self.name = name
        self.policies = policies
        self.clock = clock
        self.latencies: deque[float] = deque(maxlen=RING_SIZE)
        self.last_success: float | None = None
        self.last_failure: float | None = None
        self.provider: Any = None
        self.binding: _Binding | None = None
        self._lock = threading.Lock()
        self._executions: dict[tuple[str, str | None], int] = {}
        self._attempts: dict[str, int] = {}
        self._events: dict[tuple[str, str], int] = {}
        self._waits: dict[str, float] = {}
        self._pending: deque[tuple[bool, dict[str, str], float]] = deque()
        self._attrs: dict[tuple[str, str | None], dict[str, str]] = {}

    # -- binding to a meter provider -----------------------------------------------------------

    def active(self, explicit: Any) -> _Binding | None:
        """Return the binding to record into now, or ``None`` if metrics are a no-op."""
        provider = explicit if explicit is not None else _metrics_internal._METER_PROVIDER
        if provider is None:
            return None
        if provider is not self.provider:
            self._bind(provider)
        return self.binding

    def _bind(self, provider: Any) -> None:
        with self._lock:
            if provider is self.provider:
                return
            if self.binding is not None:
                self.binding.stats.discard(self)
            binding = None
            if not isinstance(provider, NoOpMeterProvider | _metrics_internal._ProxyMeterProvider):
                binding = _binding_for(provider)
                binding.stats.add(self)
            self.binding = binding
            self.provider = provider

    # -- recording -----------------------------------------------------------------------------

    def attrs(self, outcome: str, error_type: str | None = None) -> dict[str, str]:
        """Return the (shared, cached) metric attributes for an outcome of this pipeline."""
        key = (outcome, error_type)
        found = self._attrs.get(key)
        if found is None:
            found = {"resilio.pipeline": self.name, "resilio.outcome": outcome}
            if error_type is not None:
                found["error.type"] = error_type
            self._attrs[key] = found
        return found

    def execution(
        self,
        binding: _Binding,
        outcome: str,
        error_type: str | None,
        duration: float,
        attempts: tuple[int, int] = (0, 0),
    ) -> None:
        """Count one execution (and ``(failed, succeeded)`` attempts), queue its duration.

        The duration is dropped when durations are switched off.
        """
        key = (outcome, error_type)
        failed, succeeded = attempts
        counts = self._attempts
        with self._lock:
            self._executions[key] = self._executions.get(key, 0) + 1
            if failed:
                counts["failure"] = counts.get("failure", 0) + failed
            if succeeded:
                counts["success"] = counts.get("success", 0) + succeeded
        if SWITCHES.durations:
            self._queue(binding, True, self.attrs(outcome, error_type), duration)

    def attempt(self, binding: _Binding, ok: bool, duration: float) -> None:
        """Count one attempt and queue its duration (unless durations are switched off)."""
        self.count_attempts(int(not ok), int(ok))
        if SWITCHES.durations:
            self._queue(binding, False, self.attrs("success" if ok else "failure"), duration)

    def count_attempts(self, failures: int, successes: int) -> None:
        """Count attempts by outcome, without durations."""
        with self._lock:
            if failures:
                self._attempts["failure"] = self._attempts.get("failure", 0) + failures
            if successes:
                self._attempts["success"] = self._attempts.get("success", 0) + successes

    def event(self, policy: str, event: str, wait: float | None = None) -> None:
        """Count one policy event (and a rate limiter's wait)."""
        key = (policy, event)
        with self._lock:
            self._events[key] = self._events.get(key, 0) + 1
            if wait is not None:
                self._waits[policy] = self._waits.get(policy, 0.0) + wait

    def _queue(
        self, binding: _Binding, execution: bool, attrs: dict[str, str], duration: float
    ) -> None:
        pending = self._pending
        pending.append((execution, attrs, duration))
        if len(pending) > MAX_PENDING:
            try:
                item = pending.popleft()
            except IndexError:  # pragma: no cover - drained concurrently
                return
            binding.record(item)

    def drain(self, binding: _Binding) -> None:
        """Record every queued duration into the binding's histograms."""
        pending = self._pending
        while True:
            try:
                item = pending.popleft()
            except IndexError:
                return
            binding.record(item)

    # -- observations --------------------------------------------------------------------------

    def snapshot(
        self,
    ) -> tuple[
        dict[tuple[str, str | None], int],
        dict[str, int],
        dict[tuple[str, str], int],
        dict[str, float],
    ]:
        """Return copies of the execution, attempt, event and wait counts."""
        with self._lock:
            return (
                dict(self._executions),
                dict(self._attempts),
                dict(self._events),
                dict(self._waits),
            )

    def __repr__(self) -> str:
        return f"PipelineStats({self.name!r})"


# -- instruments, one set per meter provider ------------------------------------------------------


class _Binding:
    """The instruments of one meter provider and the pipelines that report into them."""

    def __init__(self, provider: Any) -> None:
        from resilio import __version__

        meter = provider.get_meter("resilio", __version__)
        self.stats: weakref.WeakSet[PipelineStats] = weakref.WeakSet()
        self.execution_duration = meter.create_histogram(
            "resilio.execution.duration",
            unit="s",
            description=METRICS["resilio.execution.duration"][2],
        )
        self.attempt_duration = meter.create_histogram(
            "resilio.attempt.duration", unit="s", description=METRICS["resilio.attempt.duration"][2]
        )
        observers: dict[str, Callable[[CallbackOptions], Iterable[Observation]]] = {
            "resilio.executions": self._observe_executions,
            "resilio.attempts": self._observe_attempts,
            "resilio.events": self._observe_events,
            "resilio.rate_limiter.wait": self._observe_waits,
            "resilio.circuit.state": self._observe_circuits,
            "resilio.bulkhead.in_use": self._observe_bulkheads("in_use"),
            "resilio.bulkhead.queued": self._observe_bulkheads("queued"),
            "resilio.outbox.depth": self._observe_outboxes,
        }
        for name, callback in observers.items():
            kind, unit, description = METRICS[name]
            if kind == "counter":
                meter.create_observable_counter(
                    name, callbacks=[callback], unit=unit, description=description
                )
            else:
                meter.create_observable_gauge(
                    name, callbacks=[callback], unit=unit, description=description
                )

    def record(self, item: tuple[bool, dict[str, str], float]) -> None:
        execution, attrs, duration = item
        if execution:
            self.execution_duration.record(duration, attrs)
        else:
            self.attempt_duration.record(duration, attrs)

    def _all(self) -> list[PipelineStats]:
        return list(self.stats)

    def _observe_executions(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for stats in self._all():
            # Collection is when queued durations reach the histograms.
            stats.drain(self)
            executions = stats.snapshot()[0]
            for (outcome, error_type), count in executions.items():
                out.append(Observation(count, stats.attrs(outcome, error_type)))
        return out

    def _observe_attempts(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for stats in self._all():
            for outcome, count in stats.snapshot()[1].items():
                out.append(Observation(count, stats.attrs(outcome)))
        return out

    def _observe_events(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for stats in self._all():
            for (policy, event), count in stats.snapshot()[2].items():
                attrs = {
                    "resilio.pipeline": stats.name,
                    "resilio.policy": policy,
                    "resilio.event": event,
                }
                out.append(Observation(count, attrs))
        return out

    def _observe_waits(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for stats in self._all():
            for policy, total in stats.snapshot()[3].items():
                out.append(
                    Observation(total, {"resilio.pipeline": stats.name, "resilio.policy": policy})
                )
        return out

    def _observe_circuits(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for stats in self._all():
            for policy in stats.policies:
                if policy.kind != "circuit_breaker":
                    continue
                state = state_name(policy)
                if state is not None:
                    attrs = {"resilio.pipeline": stats.name, "resilio.policy": policy.name}
                    out.append(Observation(_STATE_VALUES[state], attrs))
        return out

    def _observe_bulkheads(
        self, attribute: str
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            out = []
            for stats in self._all():
                for policy in stats.policies:
                    if policy.kind != "bulkhead":
                        continue
                    value = getattr(policy, attribute, None)
                    if isinstance(value, int | float):
                        attrs = {"resilio.pipeline": stats.name, "resilio.policy": policy.name}
                        out.append(Observation(value, attrs))
            return out

        return observe

    def _observe_outboxes(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(depth, {"resilio.outbox": name})
            for name, depth in outbox_depths().items()
            if depth is not None
        ]


_bindings: weakref.WeakKeyDictionary[Any, _Binding] = weakref.WeakKeyDictionary()
_strong_bindings: dict[int, tuple[Any, _Binding]] = {}
_bindings_lock = threading.Lock()


def _binding_for(provider: Any) -> _Binding:
    with _bindings_lock:
        try:
            binding = _bindings.get(provider)
        except TypeError:  # a provider that cannot be weakly referenced
            held = _strong_bindings.get(id(provider))
            binding = held[1] if held is not None else None
        if binding is None:
            binding = _Binding(provider)
            try:
                _bindings[provider] = binding
            except TypeError:
                _strong_bindings[id(provider)] = (provider, binding)
        return binding
