"""Tests of ``resilio-customerio demo``: a quick bad day ends in a clean reconciliation."""

from __future__ import annotations

import io
import json
from pathlib import Path

from resilio_customerio import cli
from resilio_customerio._demo import BadDay, write_events


def test_quick_demo_reconciles_every_event_exactly_once(tmp_path: Path) -> None:
    """The quick demo rides out its outage and 429 burst and reports every event once."""
    from resilio_customerio._demo import run_demo

    out = io.StringIO()
    svg = tmp_path / "demo.svg"
    code = run_demo(events=300, concurrency=8, quick=True, live=False, stream=out, svg=svg)
    text = out.getvalue()
    assert code == 0, text
    assert "OK: every event was delivered exactly once." in text
    assert "recorded exactly once            300" in text
    assert "breaker OPENED" in text
    assert svg.read_text().startswith("<svg")


def test_demo_input_has_unique_sequence_numbers(tmp_path: Path) -> None:
    """The generated file identifies each customer once, then carries seq 0..N-1 once each."""
    path = tmp_path / "events.jsonl"
    customers = write_events(path, 100)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert customers == 5
    assert [line["op"] for line in lines[:5]] == ["identify"] * 5
    assert [line["data"]["seq"] for line in lines[5:]] == list(range(100))


def test_quick_script_is_shorter_than_the_full_one() -> None:
    """The quick bad day ends its outage within three seconds; the full one lasts six."""
    quick, full = BadDay.quick(), BadDay()
    assert quick.outage[1] <= 3.0
    assert full.outage[1] - full.outage[0] == 6.0
    plan = full.faults(seed=1)
    assert plan.outage == full.outage
    assert [rule.status for rule in plan.rules][:1] == [429]


def test_demo_help_exits_zero(capsys: object) -> None:
    """`demo --help` describes the command and exits 0."""
    import pytest

    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "--help"])
    assert info.value.code == 0
