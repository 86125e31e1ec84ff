"""Health reports: is each pipeline's dependency usable right now?

:func:`health` looks at pipelines (all live instrumented ones, a registry, or a list) and returns a
:class:`HealthReport`:

* **unhealthy** when a circuit breaker is open (its break not yet over) or isolated, or an
  active probe failed;
* **degraded** when a breaker is half-open or its break is over (the next call is a trial), a
  shared breaker lost its store (it runs on local state), or an outbox has grown at each of the
  last three reports;
* **healthy** otherwise.

Pipelines are reported one entry each, even when several share a name: those entries have
``duplicate_name`` set and the report's ``warnings`` says so (and :meth:`HealthReport.pipeline`
refuses to pick one), so no pipeline is hidden behind another of the same name.

Every part that is not healthy adds a short reason to the report's ``reasons`` (and to its
pipeline's), e.g. ``"pipeline 'billing': circuit_breaker 'cb': store_degraded"``.

Per pipeline it gives breaker states, the time of the last success and the last failure, latency
percentiles over the last :data:`~resilio.telemetry.metrics.RING_SIZE` executions, bulkhead and
rate-limiter saturation; plus outbox depths and probe results. Latencies and last times are kept
once health was first used (or ``telemetry.configure(health=True)`` was called). Policy state is
read from the policies' public attributes (``state``, ``in_use``, ``queued``, ...) if they have
them.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from attrs import evolve, field, frozen

from resilio._clock import SYSTEM_CLOCK
from resilio.events import error_type_name
from resilio.telemetry._settings import start_health_statistics
from resilio.telemetry.metrics import PipelineStats, outbox_depths, state_name

if TYPE_CHECKING:
    from resilio._clock import Clock
    from resilio._pipeline import Pipeline
    from resilio.policies._base import Policy

__all__ = [
    "HealthReport",
    "PipelineHealth",
    "PolicyHealth",
    "health",
    "register_pipeline",
    "register_probe",
    "retire_pipelines",
    "unregister_probe",
]

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
_RANK = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}

# The values are weak too: a pipeline owns its stats, and the stats hold its policies, whose
# state may lead back to the pipeline (a breaker's opening failure keeps its traceback's frames):
# a strong value would then keep its own key, and so the pipeline, alive for good.
_pipelines: weakref.WeakKeyDictionary[Pipeline, weakref.ref[PipelineStats]] = (
    weakref.WeakKeyDictionary()
)
# Pipelines a registry reload replaced: left out of health() with no source at once, although
# they stay alive (they hold reference cycles) until the cyclic garbage collector frees them.
_retired: weakref.WeakSet[Pipeline] = weakref.WeakSet()
_probes: dict[str, Callable[[], object]] = {}
_outbox_history: dict[str, deque[int]] = {}
_lock = threading.Lock()


def register_pipeline(pipeline: Pipeline, stats: PipelineStats) -> None:
    """Make an instrumented pipeline known to :func:`health` (for as long as it lives).

    Both are held weakly: the pipeline must keep ``stats`` alive (its instrumentation does).
    """
    with _lock:
        _pipelines[pipeline] = weakref.ref(stats)


def retire_pipelines(old: Iterable[Pipeline], current: Iterable[Pipeline]) -> None:
    """Leave out of :func:`health` (with no source) the pipelines a reload replaced.

    Called by :meth:`resilio.config.Registry.reload` with the pipelines before and after the
    swap: those of ``old`` that are not in ``current`` (the same object) are retired, and those
    in ``current`` are not (a pipeline kept by the reload, or brought back). A retired pipeline
    is still reported when passed to :func:`health` explicitly. Both are held weakly.
    """
    kept = list(current)
    ids = {id(pipeline) for pipeline in kept}
    with _lock:
        for pipeline in old:
            if id(pipeline) not in ids:
                _retired.add(pipeline)
        for pipeline in kept:
            _retired.discard(pipeline)


def register_probe(operation: str, probe: Callable[[], object]) -> None:
    """Register a cheap active check for an operation, run by ``health(probe=True)``.

    Args:
        operation: The operation's name (``"customerio.track"``).
        probe: A synchronous callable; it passes unless it raises or returns ``False``. It must be
            cheap and bound its own time (a short request timeout, say).
    """
    start_health_statistics()
    with _lock:
        _probes[operation] = probe


def unregister_probe(operation: str) -> None:
    """Remove a probe registered with :func:`register_probe` (no error if unknown)."""
    with _lock:
        _probes.pop(operation, None)


def _worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=_RANK.__getitem__, default=HEALTHY)


@frozen(kw_only=True)
class PolicyHealth:
    """State of one policy of a pipeline.

    Attributes:
        name: The policy's name.
        kind: The policy's kind (``"circuit_breaker"``, ``"bulkhead"``, ...).
        state: A breaker's state (``"closed"``, ``"half_open"``, ``"open"``, ``"isolated"``),
            else ``None``.
        saturation: For bulkheads and rate limiters, how full they are (0.0 to 1.0), if known.
        status: The policy's own status: ``"unhealthy"`` for an open or isolated breaker,
            ``"degraded"`` for a half-open one, an open one whose break has elapsed (its next
            call is a trial) or a shared one whose store is unreachable, else ``"healthy"``.
        reason: Why it is not healthy (``"open"``, ``"isolated"``, ``"half_open"``,
            ``"store_degraded"``, or ``"break elapsed: the next call is a trial"``), else
            ``None``.
        details: Other public figures of the policy (in use, queued, available,
            ``store_degraded`` for shared breakers, ...).
    """

    name: str
    kind: str
    state: str | None = None
    saturation: float | None = None
    status: str = HEALTHY
    reason: str | None = None
    details: Mapping[str, float | int | str | bool] = field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the policy's state as JSON-ready values."""
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "saturation": self.saturation,
            "status": self.status,
            "reason": self.reason,
            **dict(self.details),
        }


@frozen(kw_only=True)
class PipelineHealth:
    """Health of one pipeline.

    Attributes:
        name: The pipeline's name.
        status: ``"healthy"``, ``"degraded"`` or ``"unhealthy"``.
        last_success: Wall-clock time (epoch seconds) of the last real success, if any.
        last_failure: Wall-clock time of the last failure, rejection or fallback, if any.
        latency: ``p50``, ``p95``, ``p99`` (seconds) and ``count`` of recent executions.
        policies: The state of each policy that has one to report.
        reasons: Why the pipeline is not healthy, one line per policy
            (``"circuit_breaker 'cb': store_degraded"``); empty when healthy.
        duplicate_name: Whether another pipeline in the same report has this name.
    """

    name: str
    status: str
    last_success: float | None = None
    last_failure: float | None = None
    latency: Mapping[str, float] = field(factory=dict)
    policies: tuple[PolicyHealth, ...] = ()
    reasons: tuple[str, ...] = ()
    duplicate_name: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the pipeline's health as JSON-ready values."""
        return {
            "name": self.name,
            "status": self.status,
            "last_success": self.last_success,
            "last_failure": self.last_failure,
            "latency": dict(self.latency),
            "policies": [p.to_dict() for p in self.policies],
            "reasons": list(self.reasons),
            "duplicate_name": self.duplicate_name,
        }


@frozen(kw_only=True)
class HealthReport:
    """The health of a set of pipelines, their outboxes and probes.

    Attributes:
        status: ``"healthy"``, ``"degraded"`` or ``"unhealthy"`` (the worst of all parts).
        checked_at: Wall-clock time the report was made (epoch seconds).
        pipelines: One entry per pipeline.
        outboxes: Per outbox name: ``depth`` (``None`` if it could not be read) and ``growing``.
        probes: Per operation: ``ok``, ``error_type`` (class name only) and ``duration``.
        reasons: Why the report is not healthy, one line per cause
            (``"pipeline 'billing': circuit_breaker 'cb': open"``, ``"outbox 'mail': growing"``,
            ``"probe 'customerio.track': failed"``); empty when healthy.
        warnings: Problems with the report itself, such as several pipelines sharing a name
            (``"2 pipelines are named 'billing'"``); they do not change the status.
    """

    status: str
    checked_at: float
    pipelines: tuple[PipelineHealth, ...] = ()
    outboxes: Mapping[str, Mapping[str, Any]] = field(factory=dict)
    probes: Mapping[str, Mapping[str, Any]] = field(factory=dict)
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def http_status(self) -> int:
        """200 when healthy or degraded, 503 when unhealthy."""
        return 503 if self.status == UNHEALTHY else 200

    def pipeline(self, name: str) -> PipelineHealth:
        """Return one pipeline's entry by name.

        Raises:
            KeyError: If no pipeline of that name is in the report.
            LookupError: If several pipelines have that name (look through ``pipelines``).
        """
        found = [entry for entry in self.pipelines if entry.name == name]
        if not found:
            raise KeyError(f"no pipeline named {name!r} in this health report")
        if len(found) > 1:
            raise LookupError(
                f"{len(found)} pipelines are named {name!r} in this health report; "
                "look through report.pipelines (their entries have duplicate_name set)"
            )
        return found[0]

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values."""
        return {
            "status": self.status,
            "checked_at": self.checked_at,
            "pipelines": [p.to_dict() for p in self.pipelines],
            "outboxes": {k: dict(v) for k, v in self.outboxes.items()},
            "probes": {k: dict(v) for k, v in self.probes.items()},
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
        }


# -- building a report ---------------------------------------------------------------------------


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values.sort()
    n = len(values)

    def rank(q: float) -> float:
        return values[min(n - 1, max(0, -(-int(q * n * 1000) // 1000) - 1))]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "count": float(n)}


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _option(policy: Policy, *names: str) -> float | int | None:
    options = getattr(policy, "options", None)
    for name in names:
        for owner in (policy, options):
            value = _number(getattr(owner, name, None)) if owner is not None else None
            if value is not None:
                return value
    return None


_BREAK_ELAPSED = "break elapsed: the next call is a trial"
"""The reason of an open breaker whose break is over: it waits only for a call to try."""


def _snapshot(policy: Policy) -> Any:
    """The breaker's ``snapshot()``, or ``None`` if it has none or it cannot be read."""
    snapshot = getattr(policy, "snapshot", None)
    if not callable(snapshot):
        return None
    try:
        return snapshot()
    except Exception:  # a breaker whose snapshot cannot be read is reported without it
        return None


def _breaker_health(policy: Policy) -> PolicyHealth:
    state = state_name(policy) or "unknown"
    details: dict[str, float | int | str | bool] = {}
    shared = getattr(getattr(policy, "options", None), "store", None) is not None
    snapshot = _snapshot(policy) if shared or state == "open" else None
    degraded = None
    if shared and snapshot is not None:  # None: no store, or a snapshot that cannot be read
        degraded = bool(getattr(snapshot, "degraded", False))
        details["store_degraded"] = degraded
    status, reason = HEALTHY, None
    if state == "isolated":  # refuses every call until reset()
        status, reason = UNHEALTHY, "isolated"
    elif state == "open":
        retry_after = _number(getattr(snapshot, "retry_after", None))
        if retry_after is not None and retry_after <= 0:
            # Nothing but a call ends the break: reporting it unhealthy would keep away (behind
            # a readiness check) the very call that would try the service again.
            status, reason = DEGRADED, _BREAK_ELAPSED
        else:
            status, reason = UNHEALTHY, "open"
    elif state == "half_open":
        status, reason = DEGRADED, "half_open"
    elif degraded:
        status, reason = DEGRADED, "store_degraded"
    return PolicyHealth(
        name=policy.name,
        kind=policy.kind,
        state=state,
        status=status,
        reason=reason,
        details=details,
    )


def _policy_health(policy: Policy, clock: Clock) -> PolicyHealth | None:
    kind = policy.kind
    details: dict[str, float | int | str | bool] = {}
    if kind == "circuit_breaker":
        return _breaker_health(policy)
    if kind == "bulkhead":
        in_use, queued = (
            _number(getattr(policy, "in_use", None)),
            _number(getattr(policy, "queued", None)),
        )
        capacity = _option(policy, "max_concurrent", "capacity", "limit")
        saturation = None
        if in_use is not None:
            details["in_use"] = in_use
            if capacity:
                details["capacity"] = capacity
                saturation = min(1.0, in_use / capacity)
        if queued is not None:
            details["queued"] = queued
        return PolicyHealth(name=policy.name, kind=kind, saturation=saturation, details=details)
    if kind == "rate_limiter":
        available = getattr(policy, "available", None)
        if callable(available):
            try:
                available = available(clock.monotonic())
            except Exception:  # a limiter whose state cannot be read now is reported without it
                available = None
        available = _number(available)
        capacity = _option(policy, "capacity", "burst", "limit")
        saturation = None
        if available is not None:
            details["available"] = available
            if capacity:
                saturation = max(0.0, min(1.0, 1.0 - available / capacity))
        waiting = _number(getattr(policy, "waiting", None))
        if waiting is not None:
            details["waiting"] = waiting
        return PolicyHealth(name=policy.name, kind=kind, saturation=saturation, details=details)
    return None


def _wall(stats: PipelineStats, mono: float | None) -> float | None:
    if mono is None:
        return None
    clock = stats.clock
    return clock.time() - (clock.monotonic() - mono)


def _pipeline_health(pipeline: Any, stats: PipelineStats | None) -> PipelineHealth:
    clock = stats.clock if stats is not None else getattr(pipeline, "clock", SYSTEM_CLOCK)
    policies = tuple(
        p
        for p in (_policy_health(policy, clock) for policy in getattr(pipeline, "policies", ()))
        if p
    )
    statuses = [p.status for p in policies]
    reasons = tuple(f"{p.kind} {p.name!r}: {p.reason}" for p in policies if p.reason)
    latency: dict[str, float] = {}
    last_success = last_failure = None
    if stats is not None:
        latency = _percentiles(list(stats.latencies.copy()))
        last_success = _wall(stats, stats.last_success)
        last_failure = _wall(stats, stats.last_failure)
    return PipelineHealth(
        name=str(getattr(pipeline, "name", "pipeline")),
        status=_worst(statuses),
        last_success=last_success,
        last_failure=last_failure,
        latency=latency,
        policies=policies,
        reasons=reasons,
    )


def _mark_duplicates(
    entries: tuple[PipelineHealth, ...],
) -> tuple[tuple[PipelineHealth, ...], list[str]]:
    counts = Counter(entry.name for entry in entries)
    if all(n == 1 for n in counts.values()):
        return entries, []
    marked = tuple(
        evolve(entry, duplicate_name=True) if counts[entry.name] > 1 else entry for entry in entries
    )
    warnings = [f"{n} pipelines are named {name!r}" for name, n in counts.items() if n > 1]
    return marked, warnings


def _resolve(source: Any) -> list[Any]:
    if source is None:
        with _lock:
            return [pipeline for pipeline in _pipelines if pipeline not in _retired]
    if hasattr(source, "execute") and hasattr(source, "policies"):
        return [source]
    pipelines = getattr(source, "pipelines", None)
    if pipelines is not None and not callable(pipelines):
        source = pipelines
    elif callable(pipelines):
        source = pipelines()
    items = source.values() if isinstance(source, Mapping) else source
    unique = {id(pipeline): pipeline for pipeline in items}  # the same pipeline listed twice
    return list(unique.values())


def _stats(known: Mapping[Any, weakref.ref[PipelineStats]], pipeline: Any) -> PipelineStats | None:
    ref = known.get(pipeline)
    return ref() if ref is not None else None


def _outboxes() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, depth in outbox_depths().items():
        with _lock:
            history = _outbox_history.setdefault(name, deque(maxlen=3))
            if depth is not None:
                history.append(depth)
            seen = list(history)
        growing = len(seen) == 3 and seen[0] < seen[1] < seen[2]
        out[name] = {"depth": depth, "growing": growing}
    return out


def _run_probes(clock: Callable[[], float]) -> dict[str, dict[str, Any]]:
    with _lock:
        probes = list(_probes.items())
    out: dict[str, dict[str, Any]] = {}
    for operation, probe in probes:
        t0 = clock()
        error_type = None
        try:
            ok = probe() is not False
        except Exception as exc:
            ok, error_type = False, error_type_name(exc)
        out[operation] = {"ok": ok, "error_type": error_type, "duration": clock() - t0}
    return out


def health(source: Any = None, *, probe: bool = False) -> HealthReport:
    """Report the health of pipelines, outboxes and (optionally) probes.

    Args:
        source: What to report on: ``None`` for every live instrumented pipeline (but those a
            registry reload replaced, see :func:`retire_pipelines`), one pipeline,
            a list of pipelines, a mapping of names to pipelines, or a registry with a
            ``pipelines`` attribute (a mapping or list, or a method returning one).
        probe: Also run the probes registered with :func:`register_probe`.

    The first report (or endpoint, or probe) starts the latency ring and last success/failure
    times of every pipeline, unless ``telemetry.configure(health=...)`` set them: until then
    they cost nothing, and a first report has no latencies or times yet.

    Returns:
        The report; ``report.http_status`` is 503 when it is unhealthy, else 200.
    """
    import time

    start_health_statistics()

    with _lock:
        known = dict(_pipelines.items())
    entries, warnings = _mark_duplicates(
        tuple(_pipeline_health(pipeline, _stats(known, pipeline)) for pipeline in _resolve(source))
    )
    outboxes = _outboxes()
    probes = _run_probes(time.monotonic) if probe else {}
    statuses = [entry.status for entry in entries]
    statuses.extend(DEGRADED for o in outboxes.values() if o["growing"])
    statuses.extend(UNHEALTHY for p in probes.values() if not p["ok"])
    reasons = [f"pipeline {e.name!r}: {r}" for e in entries for r in e.reasons]
    reasons.extend(f"outbox {name!r}: growing" for name, o in outboxes.items() if o["growing"])
    reasons.extend(f"probe {name!r}: failed" for name, p in probes.items() if not p["ok"])
    return HealthReport(
        status=_worst(statuses),
        checked_at=time.time(),
        pipelines=entries,
        outboxes=outboxes,
        probes=probes,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
    )
