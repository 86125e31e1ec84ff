"""Process-wide switches for tracing, metrics, logs and health statistics."""

from __future__ import annotations

__all__ = ["SWITCHES", "Switches"]


class Switches:
    """Which kinds of telemetry instrumented pipelines produce (read on every execution).

    Attributes:
        tracing: Make spans and span events.
        metrics: Count executions, attempts and events, and measure durations.
        logging: Log policy events through structlog.
        health: Keep the latency ring and last success/failure times used by health reports.
    """

    __slots__ = ("health", "logging", "metrics", "tracing")

    def __init__(self) -> None:
        self.tracing = True
        self.metrics = True
        self.logging = True
        self.health = True

    def __repr__(self) -> str:
        return (
            f"Switches(tracing={self.tracing}, metrics={self.metrics}, "
            f"logging={self.logging}, health={self.health})"
        )


SWITCHES = Switches()
"""The switches in force; change them with :func:`resilio.telemetry.configure`."""
