"""Buffered mode on shutdown: a process sent SIGTERM or SIGINT still sends what it buffered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from resilio_customerio import batching
from resilio_customerio.testing import Simulator

ROOT = Path(__file__).resolve().parents[2]
CALLS = 5

# Buffers 5 identify calls for up to 10 minutes (nothing would go out by itself), says so,
# then waits for a signal.
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, threading

    from resilio_customerio import ResilientCustomerIO

    mode = sys.argv[1]
    stop = threading.Event()
    if mode == "own-handler":
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    cio = ResilientCustomerIO(
        os.environ["SIM_SITE_ID"],
        os.environ["SIM_API_KEY"],
        host=os.environ["SIM_HOST"],
        port=int(os.environ["SIM_PORT"]),
        buffer={"max_operations": 1000, "max_delay": 600.0},
        replay=False,
    )
    for n in range(int(os.environ["SIM_CALLS"])):
        cio.identify(f"person-{n}", plan="pro")
    print("buffered", cio._buffer.pending, flush=True)
    if mode == "own-handler":
        stop.wait()
        print("own handler ran", flush=True)
    else:
        threading.Event().wait()
    """
)


def _start(sim: Simulator, tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    script = tmp_path / "buffered.py"
    script.write_text(SCRIPT)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["REQUESTS_CA_BUNDLE"] = str(sim.ca_path)
    env.update(
        SIM_SITE_ID=sim.site_id,
        SIM_API_KEY=sim.api_key,
        SIM_HOST=sim.host,
        SIM_PORT=str(sim.port),
        SIM_CALLS=str(CALLS),
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), mode],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == f"buffered {CALLS}\n", line + proc.communicate(timeout=10)[1]
    return proc


def _people(sim: Simulator) -> list[str]:
    return [f"person-{n}" for n in range(CALLS) if sim.customer(f"person-{n}") is not None]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "status"),
    [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, -signal.SIGINT)],
    ids=["SIGTERM", "SIGINT"],
)
def test_signal_flushes_every_buffered_call(tmp_path: Path, sig: int, status: int) -> None:
    """Every buffered identify reaches the simulator before a signalled process exits."""
    with Simulator() as sim:
        proc = _start(sim, tmp_path, "default")
        assert sim.stats()["requests"] == 0  # still buffered when the signal arrives
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == status, err
        assert _people(sim) == [f"person-{n}" for n in range(CALLS)]
        assert [r.path for r in sim.requests] == ["/api/v2/batch"]


@pytest.mark.slow
def test_sigterm_chains_to_the_programs_own_handler(tmp_path: Path) -> None:
    """A SIGTERM handler the program installed first still runs; the buffer flushes at exit."""
    with Simulator() as sim:
        proc = _start(sim, tmp_path, "own-handler")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert out == "own handler ran\n"
        assert _people(sim) == [f"person-{n}" for n in range(CALLS)]


class TestHandler:
    """The chaining handler's decisions, called directly (no signal is sent)."""

    def test_default_action_becomes_a_graceful_exit(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Where the action was the default, the handler raises SystemExit(128 + signal)."""
        monkeypatch.setattr(batching, "_previous", {signal.SIGTERM: signal.SIG_DFL})
        monkeypatch.setattr(batching, "_stopping", set())
        with pytest.raises(SystemExit) as raised:
            batching._on_signal(signal.SIGTERM, None)
        assert raised.value.code == 128 + signal.SIGTERM

    def test_previous_handler_is_called(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A handler installed before is called with the signal, and no exit is raised."""
        seen: list[Any] = []
        monkeypatch.setattr(
            batching, "_previous", {signal.SIGTERM: lambda s, f: seen.append((s, f))}
        )
        batching._on_signal(signal.SIGTERM, None)
        assert seen == [(signal.SIGTERM, None)]

    def test_ignored_signal_stays_ignored(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An ignored signal neither exits nor records a shutdown."""
        monkeypatch.setattr(batching, "_previous", {signal.SIGTERM: signal.SIG_IGN})
        monkeypatch.setattr(batching, "_stopping", set())
        batching._on_signal(signal.SIGTERM, None)
        assert batching._stopping == set()

    def test_install_chains_and_is_idempotent(self) -> None:
        """Installing twice keeps the original handler as the one chained to."""
        mine = signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            assert batching.install_shutdown_handlers([signal.SIGTERM]) is True
            assert batching.install_shutdown_handlers([signal.SIGTERM]) is True
            assert signal.getsignal(signal.SIGTERM) is batching._on_signal
            assert batching._previous[signal.SIGTERM] == signal.SIG_DFL
        finally:
            signal.signal(signal.SIGTERM, mine)

    def test_pythons_sigint_handler_is_left_in_place(self) -> None:
        """KeyboardInterrupt already unwinds; asyncio.run needs to see Python's own handler."""
        mine = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            assert batching.install_shutdown_handlers([signal.SIGINT]) is True
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        finally:
            signal.signal(signal.SIGINT, mine)

    def test_not_installed_outside_the_main_thread(self) -> None:
        """Off the main thread nothing is installed and the call says so."""
        import threading

        before = signal.getsignal(signal.SIGTERM)
        result: list[bool] = []
        worker = threading.Thread(
            target=lambda: result.append(batching.install_shutdown_handlers())
        )
        worker.start()
        worker.join()
        assert result == [False]
        assert signal.getsignal(signal.SIGTERM) is before
