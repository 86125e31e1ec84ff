"""The ``resilio health`` subcommand."""

from __future__ import annotations

import argparse
import json

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
