"""`resilio-customerio send` killed with SIGKILL mid-run and restarted sends each event once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from resilio_customerio.testing import Simulator

ROOT = Path(__file__).resolve().parents[2]
LINES = 160
CONCURRENCY = 4


def _command(sim: Simulator, path: Path, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "resilio_customerio.cli",
        "send",
        str(path),
        "--host",
        sim.host,
        "--port",
        str(sim.port),
        "--concurrency",
        str(CONCURRENCY),
        "--no-progress",
        "--drain-timeout",
        "0",
        *extra,
    ]


def _env(sim: Simulator) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["REQUESTS_CA_BUNDLE"] = str(sim.ca_path)
    env["CUSTOMERIO_SITE_ID"] = sim.site_id
    env["CUSTOMERIO_API_KEY"] = sim.api_key
    return env


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--batch", "8"]], ids=["per-line", "batch"])
def test_kill_9_mid_run_then_rerun_delivers_every_event_exactly_once(
    tmp_path: Path, extra: list[str]
) -> None:
    """A run killed after N events, rerun on the same file, leaves each event recorded once."""
    path = tmp_path / "events.jsonl"
    with path.open("w") as out:
        out.write(json.dumps({"op": "identify", "id": "p", "attributes": {"a": 1}}) + "\n")
        for seq in range(LINES):
            out.write(json.dumps({"op": "track", "id": "p", "name": "e", "data": {"seq": seq}}))
            out.write("\n")
    with Simulator(api_key="track-secret-5f2e9a71") as sim:
        # Slow answers, applied before the wait: killed mid-request, the server still records.
        sim.faults.add("track", timeout_after_commit=0.05)
        sim.faults.add("batch", timeout_after_commit=0.05)
        proc = subprocess.Popen(
            _command(sim, path, extra),
            env=_env(sim),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while sim.stats()["accepted_events"] < LINES // 2:
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "the first run made too little progress"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        first_run = sim.stats()["accepted_events"]
        assert first_run < LINES, "the first run finished before it was killed"
        sim.faults.clear()
        rerun = subprocess.run(
            _command(sim, path, extra),
            env=_env(sim),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        # Only work in flight at the kill may be sent again: the requests under way (at most
        # concurrency x batch events) and, per worker, the one it finished just before the kill,
        # whose outcome the journal had not committed yet. A rerun that resent every line would
        # bring `first_run` duplicates (at least LINES // 2 = 80, above both bounds).
        in_flight = CONCURRENCY * (int(extra[1]) if extra else 1)
        assert sim.stats()["duplicates"] <= 2 * in_flight < first_run
        seqs = Counter(event["data"]["seq"] for event in sim.events("p"))
        assert sorted(seqs) == list(range(LINES))
        assert set(seqs.values()) == {1}
        assert "Resuming events.jsonl" in rerun.stdout
        assert sim.api_key not in rerun.stdout + rerun.stderr
