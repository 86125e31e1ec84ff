"""Render docs/img/trace.svg: a real resilio trace captured with the in-memory exporter.

Run from the repository root: ``PYTHONPATH=. .venv/bin/python scripts/render_trace.py``.
The trace is one call through ``Fallback > Retry > CircuitBreaker(failure_threshold=1)`` with
``trace_attempts=True``: the first attempt's HTTP call fails and opens the breaker, the retry is
rejected by the open breaker and waits its ``retry_after``, the third attempt finds the breaker
half-open, succeeds and closes it. Spans are drawn as a waterfall, span events as diamonds with
their names and timing attributes listed, numbered, under the span.
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

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "trace.svg"


def capture() -> list[Any]:
    """Run one traced call through a pipeline and return the finished spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    pipeline = Pipeline(
        [
            Fallback(value=None),
            Retry(attempts=4, backoff=0.005),
            CircuitBreaker(failure_threshold=1, break_duration=0.02),
        ],
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


_SHOWN = ("resilio.attempt", "resilio.delay", "resilio.retry_after", "resilio.break_duration")


def _event_label(event: Any) -> str:
    attrs = dict(event.attributes or {})
    parts = [event.name]
    for key in _SHOWN:
        if key in attrs:
            value = attrs[key]
            shown = f"{value * 1000:.1f} ms" if isinstance(value, float) else str(value)
            parts.append(f"{key.removeprefix('resilio.')}={shown}")
    if "error.type" in attrs:
        parts.append(f"error.type={str(attrs['error.type']).rsplit('.', 1)[-1]}")
    return "  ".join(parts)


def render(spans: list[Any]) -> str:
    """Draw spans as an SVG waterfall: one row per span, events as numbered diamonds."""
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
    label_w, bar_w, row_h, event_h, top = 330, 600, 46, 15, 40
    heights = [row_h + event_h * len(s.events) + (4 if s.events else 0) for _, s in rows]
    width, height = label_w + bar_w + 30, top + sum(heights) + 10

    def x(t: int) -> float:
        return float(label_w + (t - t0) / (t1 - t0) * bar_w)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="22" font-size="14" font-weight="bold">'
        f"Trace {spans[0].context.trace_id:032x}  ({(t1 - t0) / 1e6:.1f} ms)</text>",
    ]
    y = top
    for i, ((depth, s), h) in enumerate(zip(rows, heights, strict=True)):
        error = s.status.status_code.name == "ERROR"
        ours = s.name.startswith("resilio")
        colour = "#d9534f" if error else ("#3b7dd8" if ours else "#8a8f98")
        indent = 10 + depth * 16
        out.append(
            f'<rect x="0" y="{y}" width="{width}" height="{h}" '
            f'fill="{"#f6f8fa" if i % 2 else "#ffffff"}"/>'
        )
        out.append(f'<text x="{indent}" y="{y + 18}">{html.escape(s.name)}</text>')
        attrs = dict(s.attributes or {})
        detail = ", ".join(
            f"{k.removeprefix('resilio.')}={v}" for k, v in attrs.items() if k != "resilio.pipeline"
        )
        out.append(
            f'<text x="{indent}" y="{y + 34}" fill="#666" font-size="10">'
            f"{html.escape(detail[:60])}</text>"
        )
        bx, bw = x(s.start_time), max(2.0, x(s.end_time) - x(s.start_time))
        out.append(
            f'<rect x="{bx:.1f}" y="{y + 8}" width="{bw:.1f}" height="14" rx="3" fill="{colour}"/>'
        )
        out.append(
            f'<text x="{bx:.1f}" y="{y + 36}" fill="#333" font-size="10">'
            f"{(s.end_time - s.start_time) / 1e6:.1f} ms</text>"
        )
        # Each event: a numbered diamond at its time (events a few pixels apart share one),
        # and its numbered line under the span.
        marks: list[tuple[float, list[int]]] = []
        for k, event in enumerate(s.events, start=1):
            ex = x(event.timestamp)
            if marks and ex - marks[-1][0] < 10:
                marks[-1][1].append(k)
            else:
                marks.append((ex, [k]))
            out.append(
                f'<text x="{indent + 16}" y="{y + row_h + (k - 1) * event_h}" fill="#8a5a00" '
                f'font-size="10"><tspan font-weight="bold">{k}</tspan>  '
                f"{html.escape(_event_label(event))}</text>"
            )
        for ex, numbers in marks:
            out.append(
                f'<path d="M{ex:.1f},{y + 9} l6,6 l-6,6 l-6,-6 z" fill="#f0ad4e" stroke="#8a5a00"/>'
            )
            out.append(
                f'<text x="{ex:.1f}" y="{y + 6}" text-anchor="middle" fill="#8a5a00" '
                f'font-size="9" font-weight="bold">{",".join(map(str, numbers))}</text>'
            )
        y += h
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(capture()))
    print(f"wrote {OUT}")
