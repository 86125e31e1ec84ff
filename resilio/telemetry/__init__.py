"""Tracing, metrics, logs and health for pipelines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilio._pipeline import Pipeline

__all__ = ["instrument"]


def instrument(
    pipeline: Pipeline,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    trace_attempts: bool = False,
) -> Any:
    """Return the instrumentation for a pipeline, or ``None`` when there is nothing to do."""
    return None
