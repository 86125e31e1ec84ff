"""A canary email address never appears in logs, spans, events, exception text or the outbox.

Every channel is captured at once: structlog, stdlib logging at DEBUG (urllib3 and requests
included), OpenTelemetry spans through the SDK's in-memory exporter, resilio events, the
exception's ``str``, ``repr``, notes and formatted traceback (with its causes), and every column
of an outbox row except the payload, which is where the data must be.
"""

from __future__ import annotations

import logging
import sqlite3
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from resilio import Drainer, Outbox, Queued
from resilio.testing import FakeClock, capture_events
from resilio_customerio import AsyncResilientCustomerIO, CustomerIOError, ResilientCustomerIO
from resilio_customerio.testing import Simulator

from ._adapter import make, make_async

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


async def _call_async(acio: AsyncResilientCustomerIO, endpoint: str) -> None:
    if endpoint == "identify":
        await acio.identify("42", email=CANARY)
    else:
        await acio.send_email(
            {"transactional_message_id": 1, "to": CANARY, "identifiers": {"email": CANARY}}
        )


def test_detail_is_reachable_on_purpose(cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
    """The client's full text (with the payload) is still there for deliberate inspection."""
    cio_simulator.faults.add("identify", status=400)
    with pytest.raises(CustomerIOError) as info:
        cio.identify("42", email=CANARY)
    assert CANARY in (info.value.unredacted_detail() or "")
    assert CANARY not in str(info.value.__cause__)


def _error_text(error: BaseException) -> str:
    """Everything an exception shows: str, repr, notes and the traceback, for it and its causes."""
    parts = ["".join(traceback.format_exception(error))]
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen), repr(getattr(seen, "__notes__", []))]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every stdlib record captured: formatted message, raw args and exception text."""
    parts = [caplog.text]
    for record in caplog.records:
        parts += [record.getMessage(), repr(record.args), repr(record.__dict__)]
    return "\n".join(parts)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every stdlib logger at DEBUG (urllib3 logs each request at that level)."""
    caplog.set_level(logging.DEBUG)
    return caplog


FAULTS = [
    ("identify", {"status": 500}),
    ("identify", {"status": 400}),
    ("identify", {"status": 429, "retry_after": 1}),
    ("identify", {"reset": "before"}),
    ("send_email", {"status": 502}),
    ("send_email", {"status": 403}),
]


@pytest.mark.parametrize(("endpoint", "fault"), FAULTS)
def test_canary_never_leaks(
    cio: ResilientCustomerIO,
    cio_simulator: Simulator,
    spans: InMemorySpanExporter,
    debug_logs: pytest.LogCaptureFixture,
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
    text = "\n".join(
        [
            _error_text(info.value),
            repr(logs),
            _log_text(debug_logs),
            repr(events.events),
            _span_text(spans),
        ]
    )
    assert CANARY not in text
    assert CANARY in repr(cio_simulator.requests[-1].body)  # the canary was really sent
    assert spans.get_finished_spans()
    assert events.events
    assert any(r.name.startswith("urllib3") for r in debug_logs.records)  # DEBUG was captured


@pytest.mark.parametrize(("endpoint", "fault"), FAULTS)
async def test_canary_never_leaks_from_the_async_adapter(
    cio_simulator: Simulator,
    clock: FakeClock,
    spans: InMemorySpanExporter,
    debug_logs: pytest.LogCaptureFixture,
    endpoint: str,
    fault: dict[str, object],
) -> None:
    """The async adapter keeps the canary out of the same channels."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    cio_simulator.faults.add(endpoint, **fault)
    acio: AsyncResilientCustomerIO = make_async(
        cio_simulator, clock, tracer_provider=provider, max_workers=2
    )
    async with acio:
        with (
            capture_events() as events,
            structlog.testing.capture_logs() as logs,
            pytest.raises(CustomerIOError) as info,
        ):
            await _call_async(acio, endpoint)
    text = "\n".join(
        [
            _error_text(info.value),
            repr(logs),
            _log_text(debug_logs),
            repr(events.events),
            _span_text(spans),
        ]
    )
    assert CANARY not in text
    assert CANARY in repr(cio_simulator.requests[-1].body)
    assert spans.get_finished_spans()
    assert events.events


@pytest.mark.parametrize(
    ("endpoint", "queue_fault", "replay_fault"),
    [
        ("identify", {"status": 500}, {"status": 400}),
        ("send_email", {"status": 429}, {"status": 403}),
    ],
)
def test_canary_stays_in_the_outbox_payload_column(
    cio_simulator: Simulator,
    clock: FakeClock,
    tmp_path: Path,
    debug_logs: pytest.LogCaptureFixture,
    endpoint: str,
    queue_fault: dict[str, Any],
    replay_fault: dict[str, Any],
) -> None:
    """Queued, then dead-lettered on replay: only the payload column holds the canary."""
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox.sqlite(path)
    cio_simulator.faults.add(endpoint, **queue_fault)
    with (
        make(cio_simulator, clock, outbox=outbox) as cio,
        structlog.testing.capture_logs() as logs,
    ):
        if endpoint == "identify":
            receipt = cio.identify("42", email=CANARY)
        else:
            receipt = cio.send_email(
                {"transactional_message_id": 1, "to": CANARY, "identifiers": {"email": CANARY}}
            )
        assert isinstance(receipt, Queued)
        assert CANARY not in repr(receipt)
        cio_simulator.faults.clear()
        cio_simulator.faults.add(endpoint, **replay_fault)
        clock.advance(60)  # the shared breaker, opened by the failures, lets a trial through
        report = Drainer(outbox, cio).drain_once()  # the outbox's times are wall-clock times
        assert report.dead == 1
    outbox.close()
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        rows = [dict(row) for row in db.execute("SELECT * FROM outbox_items")]
    assert [row["state"] for row in rows] == ["dead"]
    assert CANARY in rows[0]["payload"]  # the data is kept, where it belongs
    others = {k: v for k, v in rows[0].items() if k != "payload"}
    assert rows[0]["error_reason"]  # the reason is recorded, without the canary
    assert CANARY not in repr(others)
    assert CANARY not in repr(logs) + _log_text(debug_logs)
