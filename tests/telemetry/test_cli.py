"""The ``resilio health`` subcommand."""

from __future__ import annotations

import argparse
import json
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
