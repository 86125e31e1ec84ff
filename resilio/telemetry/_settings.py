"""Process-wide switches for tracing, metrics, logs and health statistics."""

from __future__ import annotations

__all__ = ["SWITCHES", "Switches", "start_health_statistics"]


class Switches:
    """Which kinds of telemetry instrumented pipelines produce (read on every execution).

    Attributes:
        tracing: Make spans and span events.
        metrics: Count executions, attempts and events.
        durations: Record execution (and attempt) durations in the metrics' histograms.
        attempt_durations: Time every attempt (``resilio.attempt.duration``, exact attempt
            counts); read when a pipeline is built, since it decides whether the attempt layer is
            built. Pipelines built with ``trace_attempts=True`` time attempts anyway.
        logging: Log policy events through structlog.
        health: Keep the latency ring and last success/failure times used by health reports.
            Off until health is first used (a report, an endpoint, a probe) unless set with
            :func:`resilio.telemetry.configure`.
        health_set: Whether ``health`` was set explicitly (then first use does not change it).
    """

    __slots__ = (
        "attempt_durations",
        "durations",
        "health",
        "health_set",
        "logging",
        "metrics",
        "tracing",
    )

    def __init__(self) -> None:
        self.tracing = True
        self.metrics = True
        self.durations = True
        self.attempt_durations = False
        self.logging = True
        self.health = False
        self.health_set = False

    def __repr__(self) -> str:
        return (
            f"Switches(tracing={self.tracing}, metrics={self.metrics}, "
            f"durations={self.durations}, attempt_durations={self.attempt_durations}, "
            f"logging={self.logging}, health={self.health})"
        )


SWITCHES = Switches()
"""The switches in force; change them with :func:`resilio.telemetry.configure`."""


def start_health_statistics() -> None:
    """Start keeping health statistics, unless they were switched explicitly (first use)."""
    if not SWITCHES.health_set:
        SWITCHES.health = True
