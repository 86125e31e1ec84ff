"""Render docs/img/trace.svg: a real resilio trace captured with the in-memory exporter.

Run from the repository root: ``PYTHONPATH=. .venv/bin/python docs/img/render_trace.py``.
The trace is a call through ``Fallback > Retry > CircuitBreaker`` with ``trace_attempts=True``:
the first attempt's HTTP call fails, the second succeeds.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from resilio import CircuitBreaker, Context, Fallback, Pipeline, Retry

OUT = Path(__file__).with_name("trace.svg")


def capture() -> list[Any]:
    """Run one traced call through a pipeline and return the finished spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    pipeline = Pipeline(
        [Fallback(value=None), Retry(attempts=3, backoff=0.02), CircuitBreaker()],
        name="customerio",
        tracer_provider=provider,
        trace_attempts=True,
    )
    # Warm up once (plugin discovery, first classification) so the picture shows steady timings.
    warm = Pipeline([Retry(attempts=2, backoff=0)], name="warm", telemetry=False)
    warm.execute(_fail_once())
    calls = {"n": 0}

    def track() -> str:
        calls["n"] += 1
        with tracer.start_as_current_span("POST /api/v1/customers/{id}/events"):
            time.sleep(0.03)
            if calls["n"] == 1:
                raise ConnectionResetError("reset")
        return "ok"

    with tracer.start_as_current_span("checkout"):
        time.sleep(0.005)
        pipeline.execute(track, context=Context("customerio.track"))
        time.sleep(0.005)
    return list(exporter.get_finished_spans())


def _fail_once() -> Any:
    state = {"n": 0}

    def fn() -> None:
        state["n"] += 1
        if state["n"] == 1:
            raise ConnectionResetError("reset")

    return fn


def render(spans: list[Any]) -> str:
    """Draw spans as an SVG waterfall: one row per span, events as diamonds."""
    by_id = {s.context.span_id: s for s in spans}
    children: dict[int | None, list[Any]] = {}
    for s in spans:
        parent = s.parent.span_id if s.parent and s.parent.span_id in by_id else None
        children.setdefault(parent, []).append(s)
    rows: list[tuple[int, Any]] = []

    def walk(parent: int | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda x: x.start_time):
            rows.append((depth, s))
            walk(s.context.span_id, depth + 1)

    walk(None, 0)
    t0 = min(s.start_time for s in spans)
    t1 = max(s.end_time for s in spans)
    label_w, bar_w, row_h, top = 400, 520, 50, 40
    width, height = label_w + bar_w + 30, top + row_h * len(rows) + 20

    def x(t: int) -> float:
        return label_w + (t - t0) / (t1 - t0) * bar_w

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="22" font-size="14" font-weight="bold">'
        f"Trace {spans[0].context.trace_id:032x}  ({(t1 - t0) / 1e6:.1f} ms)</text>",
    ]
    for i, (depth, s) in enumerate(rows):
        y = top + i * row_h
        error = s.status.status_code.name == "ERROR"
        ours = s.name.startswith("resilio")
        colour = "#d9534f" if error else ("#3b7dd8" if ours else "#8a8f98")
        out.append(
            f'<rect x="0" y="{y}" width="{width}" height="{row_h}" '
            f'fill="{"#f6f8fa" if i % 2 else "#ffffff"}"/>'
        )
        out.append(f'<text x="{10 + depth * 16}" y="{y + 18}">{html.escape(s.name)}</text>')
        attrs = dict(s.attributes or {})
        detail = ", ".join(f"{k}={v}" for k, v in attrs.items() if k != "resilio.pipeline")
        out.append(
            f'<text x="{10 + depth * 16}" y="{y + 34}" fill="#666" font-size="10">'
            f"{html.escape(detail[:75])}</text>"
        )
        bx, bw = x(s.start_time), max(2.0, x(s.end_time) - x(s.start_time))
        out.append(
            f'<rect x="{bx:.1f}" y="{y + 8}" width="{bw:.1f}" height="14" rx="3" fill="{colour}"/>'
        )
        out.append(
            f'<text x="{bx:.1f}" y="{y + 36}" fill="#333" font-size="10">'
            f"{(s.end_time - s.start_time) / 1e6:.1f} ms</text>"
        )
        for event in s.events:
            ex = x(event.timestamp)
            out.append(
                f'<path d="M{ex:.1f},{y + 9} l6,6 l-6,6 l-6,-6 z" fill="#f0ad4e" stroke="#8a5a00"/>'
            )
            out.append(
                f'<text x="{ex + 8:.1f}" y="{y + 46}" fill="#8a5a00" font-size="10">'
                f"{html.escape(event.name)}</text>"
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(capture()))
    print(f"wrote {OUT}")
