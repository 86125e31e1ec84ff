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
    assert "outbox filling: calls fail fast into it" in text
    assert "outbox draining from its peak of" in text
    peak, _, left = text.split("outbox peak / left")[1].split()[:3]
    assert (int(peak) >= 20, int(left)) == (True, 0), text
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


def test_demo_calls_give_up_rather_than_wait_out_the_breaker() -> None:
    """Each demo Track pipeline caps a retry's wait at max_wait, below the breaker's break."""
    from resilio_customerio.operations import SPECS

    script = BadDay()
    config = script.config()
    track = [name for name, spec in SPECS.items() if spec.api == "track"]
    assert sorted(config["pipelines"]) == sorted(track)
    retry = config["pipelines"]["customerio.track"][1]["retry"]
    assert retry["max_delay"] == script.max_wait < script.break_duration
    breaker = config["policies"]["customerio.track.breaker"]["circuit_breaker"]
    assert breaker["break_duration"] == script.break_duration


def test_open_breaker_sends_a_demo_call_to_the_outbox_at_once(tmp_path: Path) -> None:
    """With the demo's config, a call meeting an open breaker is queued without waiting."""
    from resilio.outbox import Outbox, Queued
    from resilio.testing import FakeClock
    from resilio_customerio import ResilientCustomerIO
    from resilio_customerio.testing import Faults, Simulator

    clock = FakeClock()
    outbox = Outbox.sqlite(tmp_path / "o.sqlite3")
    with Simulator(faults=Faults(outage=(0.0, 3600.0), outage_status=503)) as sim, sim.trust():
        cio = ResilientCustomerIO(
            **sim.client_kwargs(), outbox=outbox, config=BadDay().config(), clock=clock
        )
        for seq in range(6):  # five failures open the breaker
            cio.track("c", "e", data={"seq": seq})
        requests = sim.stats()["requests"]
        before = len(clock.sleeps)
        receipt = cio.track("c", "e", data={"seq": 99})
        cio.close()
    assert isinstance(receipt, Queued)
    assert sim.stats()["requests"] == requests
    assert clock.sleeps[before:] == []
    assert outbox.stats().depth == 7
    outbox.close()
