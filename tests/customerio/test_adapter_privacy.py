"""A canary email address never appears in logs, spans, events or exception text."""

from __future__ import annotations

import traceback
from collections.abc import Iterator

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from resilio.testing import FakeClock, capture_events
from resilio_customerio import CustomerIOError, ResilientCustomerIO
from resilio_customerio.testing import Simulator

from ._adapter import make

CANARY = "canary-5d1e@example.com"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def cio(
    cio_simulator: Simulator, clock: FakeClock, spans: InMemorySpanExporter
) -> Iterator[ResilientCustomerIO]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    with make(cio_simulator, clock, tracer_provider=provider) as adapter:
        yield adapter


def _span_text(spans: InMemorySpanExporter) -> str:
    parts = []
    for span in spans.get_finished_spans():
        parts.append(span.name)
        parts.append(repr(dict(span.attributes or {})))
        for event in span.events:
            parts.append(event.name + repr(dict(event.attributes or {})))
        parts.append(repr(span.status.description))
    return "\n".join(parts)


def _call(cio: ResilientCustomerIO, endpoint: str) -> None:
    if endpoint == "identify":
        cio.identify("42", email=CANARY)
    else:
        cio.send_email(
            {"transactional_message_id": 1, "to": CANARY, "identifiers": {"email": CANARY}}
        )


def test_detail_is_reachable_on_purpose(cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
    """The client's full text (with the payload) is still there for deliberate inspection."""
    cio_simulator.faults.add("identify", status=400)
    with pytest.raises(CustomerIOError) as info:
        cio.identify("42", email=CANARY)
    assert CANARY in (info.value.unredacted_detail() or "")
    assert CANARY not in str(info.value.__cause__)


@pytest.mark.parametrize(
    ("endpoint", "fault"),
    [
        ("identify", {"status": 500}),
        ("identify", {"status": 400}),
        ("identify", {"status": 429, "retry_after": 1}),
        ("identify", {"reset": "before"}),
        ("send_email", {"status": 502}),
        ("send_email", {"status": 403}),
    ],
)
def test_canary_never_leaks(
    cio: ResilientCustomerIO,
    cio_simulator: Simulator,
    spans: InMemorySpanExporter,
    endpoint: str,
    fault: dict[str, object],
) -> None:
    """Failing calls carrying the canary leave it out of logs, spans, events and errors."""
    cio_simulator.faults.add(endpoint, **fault)
    with (
        capture_events() as events,
        structlog.testing.capture_logs() as logs,
        pytest.raises(CustomerIOError) as info,
    ):
        _call(cio, endpoint)
    error = info.value
    text = "\n".join(
        [
            str(error),
            repr(error),
            "".join(traceback.format_exception(error)),
            repr(logs),
            repr(events.events),
            _span_text(spans),
        ]
    )
    assert CANARY not in text
    assert spans.get_finished_spans()
    assert events.events
