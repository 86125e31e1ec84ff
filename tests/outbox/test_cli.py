"""The `resilio outbox` command: stats, list, dead, requeue, purge and drain."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from resilio.classify import Classification, ErrorKind
from resilio.outbox import Outbox
from resilio.outbox import cli as outbox_cli
from tests.outbox._fakes import FakeRegistry

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="resilio")
    outbox_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite outbox with two pending items and one dead one."""
    path = str(tmp_path / "o.db")
    box = Outbox.sqlite(path)
    box.enqueue(operation="send", payload={"email": "c@example.com"}, idempotency_key="k3")
    [item] = box.backend.lease(1, box.clock.time(), 30)
    box.backend.bury(item, box.clock.time(), "permanent", "http 400")
    box.enqueue(
        operation="send",
        payload={"email": "a@example.com"},
        idempotency_key="k1",
        classification=Classification(kind=ErrorKind.TRANSIENT, reason="http 503"),
    )
    box.enqueue(operation="send", payload={"email": "b@example.com"}, idempotency_key="k2")
    box.close()
    return path


def test_stats(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """stats --json prints the count of each state."""
    assert run("outbox", "stats", "--sqlite", db, "--json") == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["pending"], row["dead"], row["leased"], row["done"]) == (2, 1, 0, 0)


def test_list_hides_payloads_by_default(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """list shows items without their payloads unless --show-payload is given."""
    assert run("outbox", "list", "--sqlite", db) == 0
    out = capsys.readouterr().out
    assert "example.com" not in out
    assert "2 item(s)" in out
    assert "transient: http 503" in out
    assert run("outbox", "list", "--sqlite", db, "--show-payload") == 0
    assert "b@example.com" in capsys.readouterr().out


def test_dead_requeue_purge(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """dead lists dead items; requeue --all revives them; purge deletes done items."""
    assert run("outbox", "dead", "--sqlite", db, "--json") == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["error_kind"], row["error_reason"]) == ("permanent", "http 400")
    assert "payload" not in row
    assert run("outbox", "requeue", "--sqlite", db, row["item_id"]) == 0
    assert "requeued 1" in capsys.readouterr().out
    assert run("outbox", "purge", "--sqlite", db, "--state", "done") == 0
    assert "purged 0 done" in capsys.readouterr().out
    assert Outbox.sqlite(db).stats().pending == 3


def test_requeue_needs_ids_or_all(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """requeue without ids or --all is a usage error (exit 2)."""
    assert run("outbox", "requeue", "--sqlite", db) == 2
    assert "--all" in capsys.readouterr().err


def test_no_outbox_given(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --config, --sqlite or --redis the command says what to give."""
    assert run("outbox", "stats") == 2
    assert "--config" in capsys.readouterr().err


def test_config_outbox_section(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--config reads the outbox from the YAML 'outbox:' section."""
    config = tmp_path / "resilio.yaml"
    config.write_text(
        f"outbox:\n  kind: sqlite\n  path: {db}\npipelines:\n  p:\n    - timeout: 1s\n"
    )
    assert run("outbox", "stats", "--config", str(config), "--json") == 0
    assert json.loads(capsys.readouterr().out)["pending"] == 2


@pytest.mark.redis
def test_redis_outbox(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--redis URL --name N opens that Redis outbox."""
    Outbox.redis(redis_url, name="cli").enqueue(operation="op", payload=1, idempotency_key="k")
    assert run("outbox", "stats", "--redis", redis_url, "--name", "cli", "--json") == 0
    assert json.loads(capsys.readouterr().out)["pending"] == 1


def test_drain(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """drain replays due items through the configuration's operations."""
    seen: list[Any] = []
    registry = FakeRegistry()
    registry.add("send", seen.append)
    monkeypatch.setattr(outbox_cli, "_registry", lambda args: registry)
    assert run("outbox", "drain", "--config", "x.yaml", "--sqlite", db) == 0
    assert "delivered 2" in capsys.readouterr().out
    assert len(seen) == 2
    assert run("outbox", "drain", "--sqlite", db) == 2


def test_drain_skips_unknown_operations_and_exits_1(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Items of an operation the drainer does not know stay pending; exit 1 names it."""
    monkeypatch.setattr(outbox_cli, "_registry", lambda args: FakeRegistry())
    assert run("outbox", "drain", "--config", "x.yaml", "--sqlite", db) == 1
    out, err = capsys.readouterr()
    assert out.strip() == "delivered 0, retried 0, dead 0, skipped 2, lost leases 0"
    assert "skipped 2 item(s)" in err
    assert "unknown operation 'send'" in err
    s = Outbox.sqlite(db).stats()
    assert (s.pending, s.dead) == (2, 1)


@pytest.mark.parametrize(
    "argv",
    [
        ["stats"],
        ["list"],
        ["dead"],
        ["requeue", "--all"],
        ["purge"],
        ["drain", "--config", "x.yaml"],
    ],
    ids=lambda argv: argv[0],
)
def test_missing_sqlite_path_is_not_created(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each subcommand given a --sqlite path that does not exist exits 2 naming it, making none."""
    monkeypatch.setattr(outbox_cli, "_registry", lambda args: FakeRegistry())
    typo = tmp_path / "typo-dir" / "outbx.db"
    assert run("outbox", argv[0], "--sqlite", str(typo), *argv[1:]) == 2
    err = capsys.readouterr().err
    assert str(typo) in err
    assert "does not exist" in err
    assert not (tmp_path / "typo-dir").exists()


def test_sqlite_path_that_is_not_an_outbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --sqlite file that is not an outbox exits 2, and the file is left untouched."""
    other = tmp_path / "notes.db"
    other.write_bytes(b"just text, not SQLite")
    assert run("outbox", "stats", "--sqlite", str(other)) == 2
    assert "not an outbox" in capsys.readouterr().err
    assert other.read_bytes() == b"just text, not SQLite"


@pytest.mark.parametrize(
    ("text", "seconds"), [("7d", 604800.0), ("12h", 43200.0), ("3600", 3600.0)]
)
def test_older_than_takes_the_forms_its_help_shows(text: str, seconds: float) -> None:
    """--older-than accepts 7d, 12h and a plain number of seconds, as its help says."""
    assert outbox_cli._duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5", "1w", "nan"])
def test_older_than_refuses_what_is_not_a_duration(text: str) -> None:
    """Anything else is a usage error naming the text and the accepted forms."""
    with pytest.raises(argparse.ArgumentTypeError, match=rf"not a duration: '{text}' \(e\.g\. 7d"):
        outbox_cli._duration(text)


def test_requeue_of_an_unknown_id_says_so(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """requeue with an id that is not a dead item requeues the others and exits 1 saying so."""
    assert run("outbox", "dead", "--sqlite", db, "--json") == 0
    dead_id = json.loads(capsys.readouterr().out)["item_id"]
    assert run("outbox", "requeue", "--sqlite", db, dead_id, "no-such-id") == 1
    captured = capsys.readouterr()
    assert "requeued 1 item(s)" in captured.out
    assert "1 of the given item id(s) are not dead items" in captured.err
    assert Outbox.sqlite(db).stats().dead == 0


@pytest.mark.parametrize("argv", [["list", "--limit", "-1"], ["dead", "--limit", "0"]])
def test_limit_must_be_positive(
    db: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--limit below 1 is a usage error (argparse exits 2), not "list everything"."""
    with pytest.raises(SystemExit) as exit_info:
        run("outbox", argv[0], "--sqlite", db, *argv[1:])
    assert exit_info.value.code == 2
    assert "expected a whole number of at least 1" in capsys.readouterr().err


def _resilio(*argv: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "resilio", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["stats"],
        ["stats", "--json"],
        ["list"],
        ["list", "--json"],
        ["dead"],
        ["requeue", "--all"],
        ["purge"],
        ["drain"],
    ],
    ids=" ".join,
)
def test_closed_stdout_exits_141_quietly(db: str, tmp_path: Path, argv: list[str]) -> None:
    """A reader that closed standard output before anything was written: 141, nothing on
    stderr, like `resilio schema | head`."""
    if argv == ["drain"]:  # an empty outbox: nothing to skip, only the summary line to print
        db = str(tmp_path / "empty.db")
        Outbox.sqlite(db).close()
    config = tmp_path / "c.yaml"
    config.write_text(f"outbox: {{kind: sqlite, path: {db}}}\npipelines: {{}}\n")
    proc = _resilio("outbox", *argv, "--config", str(config))
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err.decode()) == (141, "")


def test_list_piped_to_head(tmp_path: Path) -> None:
    """`resilio outbox list --limit 3000 | head -1`: the first line arrives, then 141, quietly."""
    path = tmp_path / "big.db"
    box = Outbox.sqlite(path)
    box.enqueue_many({"operation": "send", "payload": i} for i in range(3000))
    box.close()
    proc = _resilio("outbox", "list", "--sqlite", str(path), "--limit", "3000")
    assert proc.stdout is not None
    first = proc.stdout.readline()  # more than a pipe buffer follows: the writer blocks
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert b" send " in first
    assert (proc.returncode, err.decode()) == (141, "")
