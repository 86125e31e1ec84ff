"""Tests of ``resilio-customerio demo``: a quick bad day ends in a clean reconciliation."""

from __future__ import annotations

import io
import json
from pathlib import Path

import customerio
import pytest

from resilio_customerio import cli
from resilio_customerio._demo import BadDay, reconcile, write_events
from resilio_customerio.testing import Simulator
from resilio_customerio.ulid import new_ulid


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


def _track(sim: Simulator, customer: str, seq: int) -> None:
    client = customerio.CustomerIO(**sim.client_kwargs(), retries=0)
    client.track(customer, "e", data={"seq": seq}, id=new_ulid())


def test_reconcile_names_missing_and_doubled_events(cio_simulator: Simulator) -> None:
    """A record with seq 2 missing, seq 1 twice and a customer never identified is not ok."""
    customerio.CustomerIO(**cio_simulator.client_kwargs(), retries=0).identify("c0", plan="pro")
    for seq in (0, 1, 1, 3):
        _track(cio_simulator, "c0", seq)
    result = reconcile(cio_simulator, events=4, customers=2)
    assert (result.once, result.missing, result.repeated) == (2, [2], [1])
    assert result.customers_missing == 1
    assert result.ok is False


def test_reconcile_of_a_clean_record_is_ok(cio_simulator: Simulator) -> None:
    """Every seq once and every customer identified: ok (the check above can pass)."""
    customerio.CustomerIO(**cio_simulator.client_kwargs(), retries=0).identify("c0")
    for seq in range(3):
        _track(cio_simulator, "c0", seq)
    result = reconcile(cio_simulator, events=3, customers=1)
    assert (result.once, result.missing, result.repeated, result.ok) == (3, [], [], True)


@pytest.mark.slow
def test_demo_exits_1_when_an_event_is_doubled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo fails (exit 1, FAILED) when the simulator holds an event twice."""
    from resilio_customerio import _demo

    real = _demo.reconcile

    def doctored(sim: Simulator, events: int, customers: int) -> _demo.Reconciliation:
        _track(sim, "c0", 0)  # a second event with seq 0, under a new ULID
        return real(sim, events, customers)

    monkeypatch.setattr(_demo, "reconcile", doctored)
    out = io.StringIO()
    code = _demo.run_demo(events=100, concurrency=8, quick=True, live=False, stream=out)
    text = out.getvalue()
    assert code == 1, text
    assert "FAILED: the simulator's records do not match what was sent." in text
    assert "first repeated seq: [0]" in text
    assert "recorded more than once            1" in text
