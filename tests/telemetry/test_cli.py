"""The ``resilio health`` subcommand."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from resilio import Pipeline
from resilio.telemetry import cli


class TestCli:
    def test_register_adds_health(self) -> None:
        """register() adds a health subcommand with --serve, --config and --probe."""
        parser = argparse.ArgumentParser()
        cli.register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["health", "--serve", "8080", "--config", "x.yaml"])
        assert (args.serve, args.config, args.probe, args.func) == (8080, "x.yaml", False, cli.run)

    def test_prints_report(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without --serve the report is printed as JSON with exit status 1 only when unhealthy."""
        p = Pipeline([], name="cli-visible")
        code = cli.main(["health"])
        data = json.loads(capsys.readouterr().out)
        assert code == (1 if data["status"] == "unhealthy" else 0)
        assert "cli-visible" in [entry["name"] for entry in data["pipelines"]]
        del p

    def test_config_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--config builds the file's pipelines and reports exactly those."""
        path = tmp_path / "resilio.yaml"
        path.write_text("pipelines:\n  orders.create:\n    - circuit_breaker: {}\n")
        assert cli.main(["health", "--config", str(path)]) == 0
        data = json.loads(capsys.readouterr().out)
        assert [p["name"] for p in data["pipelines"]] == ["orders.create"]
        assert data["pipelines"][0]["policies"][0]["state"] == "closed"

    def test_bad_config_file(self, tmp_path: Path) -> None:
        """A missing config file stops the command with a message naming the file."""
        with pytest.raises(SystemExit, match=r"missing\.yaml"):
            cli.main(["health", "--config", str(tmp_path / "missing.yaml")])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestServe:
    @pytest.mark.slow
    def test_serve_answers_in_a_real_process(self, tmp_path: Path) -> None:
        """`resilio health --serve PORT` in its own process answers 200 with the config's report."""
        path = tmp_path / "resilio.yaml"
        path.write_text("pipelines:\n  orders.create:\n    - circuit_breaker: {}\n")
        port = _free_port()
        root = str(Path(__file__).resolve().parents[2])
        command = [sys.executable, "-m", "resilio", "health", "--serve", str(port)]
        process = subprocess.Popen(
            [*command, "--config", str(path)],
            cwd=root,
            env={**os.environ, "PYTHONPATH": root},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    url = f"http://127.0.0.1:{port}/healthz"
                    with urllib.request.urlopen(url, timeout=2) as response:
                        status, body = response.status, json.loads(response.read())
                    break
                except (urllib.error.URLError, ConnectionError):
                    assert process.poll() is None, process.stderr.read()  # type: ignore[union-attr]
                    assert time.monotonic() < deadline, "the health server never answered"
                    time.sleep(0.1)
            assert status == 200
            assert body["status"] == "healthy"
            assert [p["name"] for p in body["pipelines"]] == ["orders.create"]
        finally:
            process.terminate()
            process.wait(10)
            if process.stderr is not None:
                process.stderr.close()
