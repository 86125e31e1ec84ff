"""Tests of the resilio command: check, schema, plugins, help and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from resilio.cli import main

Write = Callable[..., Path]
ROOT = Path(__file__).resolve().parents[2]


class TestCheck:
    def test_valid_file_prints_pipelines(
        self, write: Write, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """check prints each pipeline's policies in order and exits 0."""
        path = write(
            """
            policies:
              t: {timeout: 5s}
            pipelines:
              orders.create:
                - timeout: 10s
                - retry: {attempts: 5}
                - timeout: {ref: t}
            """
        )
        assert main(["check", str(path)]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out == [
            f"{path}: OK, 1 pipeline(s)",
            "orders.create:",
            "  1. timeout: seconds=10s",
            "  2. retry: attempts=5",
            "  3. timeout 't' (shared: t): seconds=5s",
        ]

    def test_invalid_file_prints_every_problem_and_exits_1(
        self, write: Write, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """check lists all problems on stderr, without a traceback, and exits 1."""
        path = write("pipelines:\n  p:\n    - retry: {attempts: x}\n    - retyr: {}\n")
        assert main(["check", str(path)]) == 1
        err = capsys.readouterr().err.splitlines()
        assert err[0] == f"{path}: invalid: 2 problems"
        assert (
            err[1]
            == f"  {path}:3:25: pipelines.p[0].retry.attempts: expected an integer, found 'x'"
        )
        assert "Traceback" not in "\n".join(err)

    def test_check_creates_no_file_or_directory(
        self, write: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Validating a file whose stores and outbox name SQLite files leaves the disk alone."""
        state = tmp_path / "missing" / "state.sqlite3"
        outbox = tmp_path / "also-missing" / "outbox.sqlite3"
        path = write(
            f"""
            stores:
              state: {{kind: sqlite, path: {state}}}
            outbox: {{kind: sqlite, path: {outbox}}}
            pipelines:
              p:
                - fallback: {{enqueue: outbox}}
                - circuit_breaker: {{store: state}}
            """
        )
        before = sorted(tmp_path.iterdir())
        assert main(["check", str(path)]) == 0
        assert sorted(tmp_path.iterdir()) == before
        assert "OK, 1 pipeline(s)" in capsys.readouterr().out

    def test_a_sqlite_path_under_a_file_is_a_problem(
        self, write: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A store path that can never be created is reported by check, creating nothing."""
        blocker = tmp_path / "notes.txt"
        blocker.write_text("a file, not a directory")
        path = write(
            f"""
            stores:
              state: {{kind: sqlite, path: {blocker}/sub/state.sqlite3}}
            pipelines:
              p: [{{circuit_breaker: {{store: state}}}}]
            """
        )
        assert main(["check", str(path)]) == 1
        err = capsys.readouterr().err
        assert f"stores.state: cannot create the sqlite store: cannot create '{blocker}/sub" in err
        assert f"{str(blocker)!r} is a file, not a directory" in err

    def test_broken_plugin_is_reported_without_a_traceback(
        self, write: Write, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """check names a plugin that fails to load and exits 1 instead of raising."""
        from resilio.plugins import manager

        class Boom:
            import resilio

            @resilio.hookimpl
            def resilio_register_policies(self, registry: object) -> None:
                raise RuntimeError("down")

        manager.register(Boom(), name="boom")
        assert main(["check", str(write("pipelines: {}\n"))]) == 1
        err = capsys.readouterr().err.splitlines()
        assert err == [
            "plugins: 1 problem",
            "  plugin 'boom' failed in resilio_register_policies: RuntimeError: down",
        ]

    def test_values_are_printed_as_they_read_back(
        self, write: Write, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """check quotes strings that would read as other values, and shows lists and nulls."""
        path = write(
            """
            pipelines:
              p:
                - fallback: {value: "on", on: [transient, 'builtins:KeyError']}
                - fallback: null
                - fallback: {value: "3"}
                - fallback: {value: [yes, 1.5, true]}
            """
        )
        assert main(["check", str(path)]) == 0
        assert capsys.readouterr().out.splitlines()[2:] == [
            '  1. fallback: value="on", on=[transient, "builtins:KeyError"]',
            "  2. fallback: value=null",
            '  3. fallback: value="3"',
            '  4. fallback: value=["yes", 1.5, true]',
        ]

    def test_unreadable_path_is_a_problem(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A directory or missing file given to check is one problem naming it, exit 1."""
        assert main(["check", str(tmp_path)]) == 1
        err = capsys.readouterr().err.splitlines()
        assert err[0] == f"{tmp_path}: invalid: 1 problem"
        assert err[1].startswith(f"  {tmp_path}: (top level): cannot read the file")


def test_schema_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    """schema prints a draft 2020-12 JSON Schema with the policy types."""
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "policy.retry" in schema["$defs"]


def test_plugins_lists_builtin(capsys: pytest.CaptureFixture[str]) -> None:
    """plugins lists the built-in plugin with its hooks and policy types."""
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("resilio.builtin: builtin\n  hooks: resilio_register_policies, ")
    assert "  policy types: fallback, timeout, retry" in out


def test_plugins_lists_an_installed_adapters_operations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """plugins lists an entry-point plugin (the Customer.io adapter) with hooks and operations."""
    pytest.importorskip("customerio")
    from tests.config.conftest import make_distribution

    site = tmp_path / "site"
    make_distribution(site, "resilio-customerio", {"customerio": "resilio_customerio.plugin"}, {})
    monkeypatch.syspath_prepend(str(site))
    assert main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("customerio: resilio_customerio.plugin (resilio-customerio)")
    assert lines[start + 1] == "  hooks: resilio_classify, resilio_register_operations"
    operations = lines[start + 2]
    assert operations.startswith("  operations: customerio.")
    assert "customerio.track" in operations.split(": ", 1)[1].split(", ")


def test_plugins_reports_a_broken_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    """plugins exits 1 and names a plugin that fails."""
    from resilio.plugins import manager

    class Boom:
        import resilio

        @resilio.hookimpl
        def resilio_register_stores(self, registry: object) -> None:
            raise RuntimeError("down")

    manager.register(Boom(), name="boom")
    assert main(["plugins"]) == 1
    assert "plugin 'boom' failed in resilio_register_stores" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a subcommand the help is printed and the exit status is 2."""
    assert main([]) == 2
    assert "check" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv", [["--help"], ["check", "--help"], ["schema", "--help"], ["plugins", "--help"]]
)
def test_help_everywhere(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """--help works for the command and every subcommand."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage: resilio" in capsys.readouterr().out


def test_python_dash_m(write: Write) -> None:
    """python -m resilio check runs as a process and exits 1 on an invalid file."""
    path = write("pipelines: {p: [{nope: 1}]}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "resilio", "check", str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "unknown policy type 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv", [["schema"], ["plugins"], ["check", "CONFIG"]])
def test_closed_stdout_exits_quietly(argv: list[str], write: Write) -> None:
    """A reader that closed standard output (`resilio schema | head`) gives 141, no traceback."""
    path = write("pipelines: {p: [{retry: 3}]}\n")
    argv = [str(path) if a == "CONFIG" else a for a in argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "resilio", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # before the command writes anything: its first write fails
    _, err = proc.communicate(timeout=60)
    assert err.decode() == ""
    assert proc.returncode == 141
