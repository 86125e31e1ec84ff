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

    @pytest.mark.parametrize("extra", [[], ["--probe"], ["--serve", "0"]])
    def test_config_is_required(self, extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        """Without --config, the report and --serve stop with exit 2 and a message naming it."""
        p = Pipeline([], name="cli-visible")
        with pytest.raises(SystemExit) as stopped:
            cli.main(["health", *extra])
        assert stopped.value.code == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "--config FILE is required" in captured.err
        assert "wsgi_app()" in captured.err
        del p

    def test_config_is_required_through_the_resilio_command(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`resilio health` (the main command) refuses to run without --config, exit 2."""
        from resilio.cli import main as resilio_main

        with pytest.raises(SystemExit) as stopped:
            resilio_main(["health"])
        assert stopped.value.code == 2
        assert "--config FILE is required" in capsys.readouterr().err

    def test_run_without_parser_still_refuses(self, capsys: pytest.CaptureFixture[str]) -> None:
        """run() given a bare namespace without config exits 2 with the same message."""
        args = argparse.Namespace(config=None, serve=None, host="127.0.0.1", probe=False)
        with pytest.raises(SystemExit) as stopped:
            cli.run(args)
        assert stopped.value.code == 2
        assert "--config FILE is required" in capsys.readouterr().err

    def test_help_is_plain_text(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`resilio health --help` shows no reStructuredText markup and says --config is needed."""
        with pytest.raises(SystemExit) as stopped:
            cli.main(["health", "--help"])
        assert stopped.value.code == 0
        text = capsys.readouterr().out
        for markup in ("``", ":func:", ":class:", ":mod:"):
            assert markup not in text
        assert text.startswith("usage: resilio health --config FILE")
        assert "wsgi_app()" in " ".join(text.split())

    def test_config_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--config builds the file's pipelines and reports only those, even with others alive."""
        alive = Pipeline([], name="cli-visible")
        path = tmp_path / "resilio.yaml"
        path.write_text("pipelines:\n  orders.create:\n    - circuit_breaker: {}\n")
        assert cli.main(["health", "--config", str(path)]) == 0
        data = json.loads(capsys.readouterr().out)
        assert [p["name"] for p in data["pipelines"]] == ["orders.create"]
        assert data["pipelines"][0]["policies"][0]["state"] == "closed"
        del alive

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
