"""Tracing, metrics, logs and health for pipelines.

Every pipeline built with ``telemetry=True`` (the default) is instrumented: its executions are
traced with OpenTelemetry, counted and timed in OpenTelemetry metrics, its policy events logged
with structlog, and (once health is used) its latencies and last success/failure kept for
:func:`resilio.health`. Only ``opentelemetry-api`` is used; with no SDK set up and health unused,
all of it costs a function call and a few module-global reads per execution.

Switch parts off for one pipeline with ``Pipeline(telemetry=False)`` (everything), or for the
whole process with :func:`configure`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resilio.telemetry._settings import SWITCHES

if TYPE_CHECKING:
    from resilio._pipeline import Pipeline
    from resilio.telemetry.otel import Instrumentation

__all__ = ["configure", "instrument", "settings"]


def instrument(
    pipeline: Pipeline,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    trace_attempts: bool = False,
) -> Instrumentation:
    """Return the instrumentation of a pipeline being built (called by :class:`resilio.Pipeline`).

    Args:
        pipeline: The pipeline; its ``name``, ``policies`` and ``clock`` are already set.
        tracer_provider: Tracer provider to use; ``None`` means the global one, looked up on every
            execution so a provider set after the pipeline was built is used.
        meter_provider: Meter provider to use; ``None`` means the global one, looked up likewise.
        trace_attempts: Make each attempt a child span of the execution's span.

    Returns:
        The object whose ``listeners``, ``wrap_layer`` and ``wrap_runners`` the pipeline uses.
    """
    from resilio.telemetry.health import register_pipeline
    from resilio.telemetry.otel import Instrumentation

    instrumentation = Instrumentation(
        pipeline,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        trace_attempts=trace_attempts,
    )
    register_pipeline(pipeline, instrumentation.stats)
    return instrumentation


def configure(
    *,
    tracing: bool | None = None,
    metrics: bool | None = None,
    durations: bool | None = None,
    attempt_durations: bool | None = None,
    logging: bool | None = None,
    health: bool | None = None,
) -> dict[str, bool | None]:
    """Switch kinds of telemetry on or off for every pipeline of the process, at once.

    Arguments left to ``None`` keep their current value. Switches are read on every execution,
    so they apply to pipelines already built (``attempt_durations`` excepted).

    Args:
        tracing: Spans and span events.
        metrics: Counters, gauges and duration histograms.
        durations: The duration histograms only (``resilio.execution.duration`` and
            ``resilio.attempt.duration``); each measurement costs several microseconds in the
            OpenTelemetry SDK, so switch them off where the counters are enough.
        attempt_durations: Time every attempt (``resilio.attempt.duration``) and count attempts
            exactly, in pipelines built after the call (off by default: it adds a layer and a
            second histogram measurement per attempt). ``trace_attempts=True`` implies it.
        logging: structlog logs of policy events.
        health: The latency ring and last success/failure times behind health reports. Off by
            default until health is first used (:func:`resilio.health`, an endpoint, a probe);
            setting it here, on or off, overrides that.

    Returns:
        The switches as they were before the call (pass them back as keywords to restore; a
        ``health`` of ``None``, "from first use", restores as "keep").
    """
    before = settings()
    if tracing is not None:
        SWITCHES.tracing = bool(tracing)
    if metrics is not None:
        SWITCHES.metrics = bool(metrics)
    if durations is not None:
        SWITCHES.durations = bool(durations)
    if attempt_durations is not None:
        SWITCHES.attempt_durations = bool(attempt_durations)
    if logging is not None:
        SWITCHES.logging = bool(logging)
    if health is not None:
        SWITCHES.health = bool(health)
        SWITCHES.health_set = True
    return before


def settings() -> dict[str, bool | None]:
    """Return the current switches, as keywords :func:`configure` accepts.

    ``health`` is ``None`` while health statistics wait for the first use of health (neither
    started nor set with :func:`configure`).
    """
    return {
        "tracing": SWITCHES.tracing,
        "metrics": SWITCHES.metrics,
        "durations": SWITCHES.durations,
        "attempt_durations": SWITCHES.attempt_durations,
        "logging": SWITCHES.logging,
        "health": SWITCHES.health if SWITCHES.health or SWITCHES.health_set else None,
    }
