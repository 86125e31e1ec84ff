"""Tests of ``resilio-customerio send``: the JSONL format, the report, the journal and resuming."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import customerio
import pytest

from resilio_customerio import cli
from resilio_customerio._journal import Journal, JournalMismatchError, digest
from resilio_customerio._jsonl import InvalidLineError, parse_line
from resilio_customerio._progress import ranges, render_report
from resilio_customerio._send import SendOptions, send_file
from resilio_customerio.testing import Simulator

EID_A = "01J0000000000000000000000A"
EID_B = "01J0000000000000000000000B"


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines),
        encoding="utf-8",
    )
    return path


MIXED = [
    {"op": "identify", "id": "1", "attributes": {"plan": "pro"}},  # 1
    {"op": "track", "id": "1", "name": "purchase", "data": {"seq": 2}},  # 2
    "{not json",  # 3
    {"op": "track", "id": "1", "name": "huge", "data": {"x": "y" * 100_001}},  # 4
    {"op": "track", "id": "2", "name": "a", "event_id": EID_A, "data": {"seq": 5}},  # 5
    "",  # 6 (blank: ignored)
    {"op": "track", "id": "2", "name": "b", "event_id": EID_A, "data": {"seq": 7}},  # 7
    {"op": "teleport", "id": "3"},  # 8
    {"op": "track", "id": "3", "name": "n" * 101},  # 9
    {"op": "track_anonymous", "anonymous_id": "anon-1", "name": "visit"},  # 10
    {"op": "identify", "attributes": {}},  # 11
    [1, 2],  # 12
    {"op": "track", "id": "3", "name": "ok", "event_id": EID_B, "data": {"seq": 13}},  # 13
]


@pytest.fixture
def sim(cio_simulator: Simulator) -> Simulator:
    return cio_simulator


@pytest.fixture
def bare(sim: Simulator) -> customerio.CustomerIO:
    return customerio.CustomerIO(**sim.client_kwargs(), retries=0)


def run(path: Path, client: Any, **options: Any) -> Any:
    with Journal(path.with_name(path.name + ".journal")) as journal:
        return send_file(path, client, journal, SendOptions(**options))


class TestFormat:
    def test_every_operation_builds_the_client_call(self) -> None:
        """Each op becomes the documented client method with its arguments."""
        line = parse_line(b'{"op":"add_device","id":7,"device_id":"d","platform":"ios"}', 1)
        assert line is not None
        assert line.call() == ("add_device", ("7", "d", "ios"), {})
        merge = parse_line(
            b'{"op":"merge_customers","primary":{"id":"1"},"secondary":{"email":"a@b.c"}}', 2
        )
        assert merge is not None
        assert merge.call() == ("merge_customers", ("id", "1", "email", "a@b.c"), {})
        send = parse_line(b'{"op":"send_email","message":{"transactional_message_id":1}}', 3)
        assert send is not None
        assert send.call() == ("send_email", ({"transactional_message_id": 1},), {})
        assert not send.spec.idempotent

    def test_timestamps_accept_iso_with_zone_and_refuse_naive(self) -> None:
        """ISO 8601 timestamps become epoch seconds; a naive one is invalid."""
        line = parse_line(
            b'{"op":"backfill","id":"1","name":"x","timestamp":"2024-01-01T00:00:00Z"}', 1
        )
        assert line is not None
        assert line.fields["timestamp"] == 1704067200
        with pytest.raises(InvalidLineError, match="time zone"):
            parse_line(b'{"op":"backfill","id":"1","name":"x","timestamp":"2024-01-01"}', 1)

    @pytest.mark.parametrize(
        ("stamp", "message"),
        [
            (-5, "timestamp must not be before 1970 (negative epoch seconds)"),
            (-0.5, "timestamp must not be before 1970 (negative epoch seconds)"),
            ("1969-12-31T23:59:59Z", "timestamp must not be before 1970"),
            (4_102_444_800, "timestamp must be before the year 2100"),
            (1_714_564_800_000, "epoch seconds, not milliseconds"),
            ("5138-01-01T00:00:00Z", "timestamp must be before the year 2100"),
        ],
    )
    @pytest.mark.parametrize("op", ["track", "backfill", "pageview", "track_anonymous"])
    def test_implausible_timestamps_are_invalid(self, op: str, stamp: Any, message: str) -> None:
        """A negative timestamp or one from 2100 on is an invalid line naming the field."""
        who = "anonymous_id" if op == "track_anonymous" else "id"
        name = "page" if op == "pageview" else "name"
        obj = {"op": op, who: "1", name: "x", "timestamp": stamp}
        with pytest.raises(InvalidLineError) as info:
            parse_line(json.dumps(obj).encode(), 1)
        assert str(info.value).startswith("timestamp must")
        assert message in str(info.value)

    @pytest.mark.parametrize("stamp", [0, 4_102_444_799, "2099-12-31T23:59:59Z"])
    def test_timestamps_up_to_2100_are_accepted(self, stamp: Any) -> None:
        """The bounds are inclusive of 1970 and the last second of 2099."""
        line = parse_line(
            json.dumps({"op": "track", "id": "1", "name": "x", "timestamp": stamp}).encode(), 1
        )
        assert line is not None
        assert line.fields["timestamp"] in (0, 4_102_444_799)

    def test_unknown_fields_are_named_but_values_are_never_quoted(self) -> None:
        """A typo'd field is reported by name; the payload's values do not appear."""
        with pytest.raises(InvalidLineError) as info:
            parse_line(b'{"op":"track","id":"secret-person","name":"x","dta":{"ssn":"123"}}', 1)
        assert "dta" in str(info.value)
        assert "secret-person" not in str(info.value)
        assert "123" not in str(info.value)

    @pytest.mark.parametrize(
        ("keys", "message"),
        [
            (["canary@example.com"], "identify: 1 unknown field (names not shown)"),
            (
                ["dta", "+44 7700 900123"],
                "identify: unknown field(s): dta and 1 more (names not shown)",
            ),
            (["x" * 42], "identify: 1 unknown field (names not shown)"),
            (["user.plan_2", "a-b"], "identify: unknown field(s): a-b, user.plan_2"),
        ],
    )
    def test_only_identifier_like_field_names_are_shown(
        self, keys: list[str], message: str
    ) -> None:
        """A field name that is not a short identifier (an email, say) is counted, not shown."""
        obj: dict[str, Any] = {"op": "identify", "id": "1", **dict.fromkeys(keys, 1)}
        with pytest.raises(InvalidLineError) as info:
            parse_line(json.dumps(obj).encode(), 1)
        assert str(info.value) == message

    def test_unsafe_op_and_attribute_names_are_not_shown(self) -> None:
        """An unknown op or an oversized attribute named like personal data is not echoed."""
        with pytest.raises(InvalidLineError) as info:
            parse_line(b'{"op":"canary@example.com","id":"1"}', 1)
        assert str(info.value).startswith("unknown op (not shown: not an identifier); known: ")
        big = json.dumps(
            {"op": "identify", "id": "1", "attributes": {"canary@example.com": "v" * 1001}}
        )
        with pytest.raises(InvalidLineError) as info:
            parse_line(big.encode(), 1)
        assert str(info.value) == (
            "attributes: the value of an attribute is larger than the 1000-byte limit"
        )

    def test_v2_forms_of_batchable_operations(self) -> None:
        """Lines with a v2 form become person operations carrying their ULID."""
        line = parse_line(b'{"op":"track","id":"1","name":"x","data":{"a":1}}', 1)
        assert line is not None
        assert line.v2(EID_A) == {
            "type": "person",
            "action": "event",
            "identifiers": {"id": "1"},
            "name": "x",
            "attributes": {"a": 1},
            "id": EID_A,
        }
        send = parse_line(b'{"op":"send_sms","message":{}}', 2)
        assert send is not None
        assert send.v2(None) is None

    def test_ranges_compacts_line_numbers(self) -> None:
        """Consecutive line numbers are shown as ranges."""
        assert ranges([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"


class TestReport:
    def test_mixed_file_gives_the_exact_report_and_events(
        self, tmp_path: Path, sim: Simulator, bare: customerio.CustomerIO
    ) -> None:
        """Good, malformed, oversize and duplicate lines give exact counts and line numbers."""
        path = write_lines(tmp_path / "in.jsonl", MIXED)
        report = run(path, bare, concurrency=1)
        assert report.lines == 12
        assert report.counts == {"sent": 5, "invalid": 6, "deduplicated": 1}
        assert report.lines_with("invalid") == [3, 4, 8, 9, 11, 12]
        assert report.lines_with("deduplicated") == [7]
        details = {n: d for n, _, d in report.details}
        assert "100000-byte" in details[4]
        assert "100-byte" in details[9]
        assert details[7] == "same event_id as line 5"
        assert details[8].startswith('unknown op "teleport"')
        assert "missing field(s): id" in details[11]
        assert sim.customer("1") == {"plan": "pro"}
        assert [e["data"]["seq"] for e in sim.events("1")] == [2]
        assert [(e["id"], e["data"]["seq"]) for e in sim.events("2")] == [(EID_A, 5)]
        assert [e["id"] for e in sim.events("3")] == [EID_B]
        assert [e["name"] for e in sim.anonymous_events()] == ["visit"]
        assert sim.stats()["requests"] == 5
        text = "\n".join(render_report(report, "in.jsonl"))
        assert "line 4: data is larger than the 100000-byte event data limit" in text
        assert "rejected as invalid" in text

    def test_rerun_of_a_finished_file_sends_nothing(
        self, tmp_path: Path, sim: Simulator, bare: customerio.CustomerIO
    ) -> None:
        """A second run over a finished journal makes no request and gives the same report."""
        path = write_lines(tmp_path / "in.jsonl", MIXED)
        first = run(path, bare)
        second = run(path, bare)
        assert second.counts == first.counts
        assert second.sent_this_run == 0
        assert sim.stats()["requests"] == 5

    def test_in_flight_lines_are_resent_with_their_ulid(
        self, tmp_path: Path, sim: Simulator, bare: customerio.CustomerIO
    ) -> None:
        """A line pending in the journal (a crash mid-send) is resent with the same ULID."""
        path = write_lines(tmp_path / "in.jsonl", [{"op": "track", "id": "9", "name": "x"}])
        raw = path.read_bytes().rstrip(b"\n")
        ulid = "01J00000000000000000000009"
        bare.track("9", "x", id=ulid)  # the request that got through before the crash
        with Journal(path.with_name("in.jsonl.journal")) as journal:
            journal.record(1, digest(raw), "pending", [ulid])
        report = run(path, bare)
        assert report.counts == {"sent": 1}
        assert [e["id"] for e in sim.events("9")] == [ulid]
        assert sim.stats()["duplicates"] == 1

    def test_in_flight_transactional_send_is_not_repeated(
        self, tmp_path: Path, sim: Simulator, bare: customerio.CustomerIO
    ) -> None:
        """A send_* line in flight at a crash becomes 'outcome unknown' and is not resent."""
        message = {"transactional_message_id": 1, "identifiers": {"id": "1"}}
        path = write_lines(tmp_path / "in.jsonl", [{"op": "send_email", "message": message}])
        with Journal(path.with_name("in.jsonl.journal")) as journal:
            journal.record(1, digest(path.read_bytes().rstrip(b"\n")), "pending")
        report = run(path, bare)
        assert report.counts == {"unknown": 1}
        assert sim.stats()["requests"] == 0

    def test_a_changed_input_is_refused(self, tmp_path: Path, bare: customerio.CustomerIO) -> None:
        """Resuming over an input whose lines changed raises JournalMismatchError."""
        path = write_lines(tmp_path / "in.jsonl", [{"op": "identify", "id": "1"}])
        run(path, bare)
        write_lines(path, [{"op": "identify", "id": "2"}])
        with pytest.raises(JournalMismatchError, match="line 1"):
            run(path, bare)


class TestBatch:
    def test_batch_mode_groups_lines_into_v2_requests(
        self, tmp_path: Path, sim: Simulator, bare: customerio.CustomerIO
    ) -> None:
        """With batch=4, ten event lines take three requests and arrive once each."""
        lines = [{"op": "track", "id": "b", "name": "e", "data": {"seq": i}} for i in range(10)]
        path = write_lines(tmp_path / "in.jsonl", lines)
        report = run(path, bare, batch=4, concurrency=2)
        assert report.counts == {"sent": 10}
        assert sorted(e["data"]["seq"] for e in sim.events("b")) == list(range(10))
        assert sim.stats()["requests"] == 3
        assert all(r.endpoint == "batch" for r in sim.requests)

    def test_items_rejected_in_a_207_are_dead_lettered(
        self, tmp_path: Path, sim: Simulator, bare: customerio.CustomerIO
    ) -> None:
        """A v2 operation the server refuses is reported on its own line; the rest are sent."""
        lines: list[Any] = [
            {"op": "track", "id": "b", "name": "ok"},
            {"op": "add_device", "id": "b", "device_id": "d", "platform": "ios"},
            {"op": "track", "id": "b", "name": "ok2"},
        ]
        path = write_lines(tmp_path / "in.jsonl", lines)
        sim.faults.add(
            "batch",
            status=207,
            body=json.dumps(
                {"errors": [{"batch_index": 1, "reason": "invalid", "field": "device"}]}
            ),
        )
        report = run(path, bare, batch=10)
        assert report.counts == {"sent": 2, "dead": 1}
        assert report.details == [(2, "dead", "rejected by Customer.io: invalid device")]


class TestCommandLine:
    def test_help_lists_every_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--help names send, demo, simulate and outbox and exits 0."""
        with pytest.raises(SystemExit) as info:
            cli.main(["--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        for command in ("send", "demo", "simulate", "outbox"):
            assert command in out

    def test_missing_credentials_is_a_clear_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without a site id and key, send exits 2 with a one-line error, no traceback."""
        for name in ("CUSTOMERIO_SITE_ID", "CUSTOMERIO_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        path = write_lines(tmp_path / "in.jsonl", [{"op": "identify", "id": "1"}])
        assert cli.main(["send", str(path)]) == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert "missing Customer.io credentials" in err
        assert "Traceback" not in err

    def test_missing_file_is_a_clear_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A file that does not exist exits 2 naming it."""
        code = cli.main(["send", "/nonexistent/x.jsonl", "--site-id", "s", "--api-key", "k"])
        assert code == cli.EXIT_USAGE
        assert "no such file: /nonexistent/x.jsonl" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("option", "value", "message"),
        [
            ("--timeout", "-1", "must be above 0 seconds, got '-1'"),
            ("--timeout", "0", "must be above 0 seconds, got '0'"),
            ("--timeout", "abc", "expected a number of seconds, got 'abc'"),
            ("--timeout", "nan", "expected a finite number of seconds, got 'nan'"),
            ("--timeout", "inf", "expected a finite number of seconds, got 'inf'"),
            ("--drain-timeout", "-1", "must be 0 seconds or more, got '-1'"),
            ("--drain-timeout", "nan", "expected a finite number of seconds, got 'nan'"),
            ("--concurrency", "0", "must be at least 1, got 0"),
            ("--concurrency", "nan", "expected a whole number, got 'nan'"),
            ("--concurrency", "5000", "must be at most 1000, got 5000"),
            ("--batch", "-1", "must be at least 1, got -1"),
            ("--batch", "1.5", "expected a whole number, got '1.5'"),
            ("--batch", "1001", "a v2 batch holds at most 1000 operations, got 1001"),
            ("--port", "0", "must be at least 1, got 0"),
            ("--port", "70000", "a port is at most 65535, got 70000"),
        ],
    )
    def test_bad_numeric_options_are_usage_errors(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        option: str,
        value: str,
        message: str,
    ) -> None:
        """A numeric option out of range exits 2 naming the option, before anything is sent."""
        path = write_lines(tmp_path / "in.jsonl", [{"op": "identify", "id": "1"}])
        argv = ["send", str(path), "--site-id", "s", "--api-key", "k", f"{option}={value}"]
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert f"error: argument {option}: {message}" in err
        assert not (tmp_path / "in.jsonl.journal").exists()

    def test_config_problem_names_the_file_line_and_column(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`send --config bad.yaml` exits 2 pointing at the bad value in bad.yaml."""
        path = write_lines(tmp_path / "in.jsonl", [{"op": "identify", "id": "1"}])
        config = tmp_path / "bad.yaml"
        config.write_text("pipelines:\n  customerio.identify:\n    - retry: {attempts: eight}\n")
        argv = ["send", str(path), "--site-id", "s", "--api-key", "k", "--config", str(config)]
        assert cli.main(argv) == cli.EXIT_USAGE
        assert capsys.readouterr().err.splitlines() == [
            "resilio-customerio: configuration error:",
            f"  {config}:3:25: pipelines.customerio.identify[0].retry.attempts: "
            "expected an integer, found 'eight'",
        ]

    def test_host_without_api_url_refuses_a_file_with_sends(
        self, tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--host alone with a send_* line exits 2 naming --api-url; nothing is sent."""
        path = write_lines(
            tmp_path / "in.jsonl",
            [
                {"op": "identify", "id": "1"},
                {"op": "send_email", "message": {"transactional_message_id": 1}},
            ],
        )
        argv = ["send", str(path), "--site-id", "s", "--api-key", "k", "--app-key", "a"]
        argv += ["--host", sim.host, "--port", str(sim.port), "--no-progress"]
        assert cli.main(argv) == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert f"--host points the Track API at {sim.host}, but line 2 is an App API send" in err
        assert "no --api-url" in err
        assert sim.requests == []
        assert not (tmp_path / "in.jsonl.journal").exists()

    def test_api_url_without_host_refuses_a_file_with_track_lines(
        self, tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--api-url alone with a Track line exits 2 naming --host."""
        path = write_lines(tmp_path / "in.jsonl", ["", {"op": "identify", "id": "1"}])
        argv = ["send", str(path), "--site-id", "s", "--api-key", "k"]
        argv += ["--api-url", sim.api_url, "--no-progress"]
        assert cli.main(argv) == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert "but line 2 is a Track API operation and there is no --host" in err
        assert sim.requests == []

    def test_host_alone_is_fine_for_track_only_files(
        self, tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without App API lines, --host alone sends as before."""
        path = write_lines(tmp_path / "in.jsonl", [{"op": "identify", "id": "1"}])
        argv = ["send", str(path), "--site-id", sim.site_id, "--api-key", sim.api_key]
        argv += ["--host", sim.host, "--port", str(sim.port), "--no-progress"]
        argv += ["--drain-timeout", "0"]
        assert cli.main(argv) == cli.EXIT_OK
        assert sim.customer("1") == {}

    def test_the_simulators_banner_command_sends_both_apis_to_it(
        self,
        tmp_path: Path,
        sim: Simulator,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The send command `simulate` prints, run as printed, delivers Track and App lines."""
        import shlex

        from resilio_customerio.testing._cli import send_command

        exports, *command = send_command(sim)
        for assignment in shlex.split(exports)[1:]:
            name, _, value = assignment.partition("=")
            monkeypatch.setenv(name, value)
        words = shlex.split(" ".join(line.rstrip("\\") for line in command))
        path = write_lines(
            tmp_path / "in.jsonl",
            [
                {"op": "identify", "id": "1", "attributes": {"plan": "pro"}},
                {
                    "op": "send_email",
                    "message": {"transactional_message_id": 1, "identifiers": {"id": "1"}},
                },
            ],
        )
        assert words[:3] == ["resilio-customerio", "send", "FILE.jsonl"]
        argv = ["send", str(path), *words[3:], "--no-progress", "--drain-timeout", "0"]
        assert cli.main(argv) == cli.EXIT_OK, capsys.readouterr()
        assert sim.customer("1") == {"plan": "pro"}
        assert len(sim.deliveries()) == 1

    def test_secrets_are_masked(self) -> None:
        """Only the last four characters of a long secret are ever shown."""
        assert cli.mask("abcdefghijklmnop") == "****mnop"
        assert cli.mask("short") == "****"
        assert cli.mask(None) == "(not set)"


class TestSendCommand:
    def test_send_through_the_adapter_reports_and_exits_1_for_invalid_lines(
        self, tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The real command sends the mixed file, prints the report and exits 1."""
        path = write_lines(tmp_path / "in.jsonl", MIXED)
        argv = ["send", str(path), "--host", sim.host, "--port", str(sim.port)]
        argv += ["--site-id", sim.site_id, "--api-key", sim.api_key, "--no-progress"]
        assert cli.main(argv) == cli.EXIT_INCOMPLETE
        out = capsys.readouterr().out
        assert "  sent                           5" in out
        assert "line 9: name is larger than the 100-byte limit" in out
        assert [e["data"]["seq"] for e in sim.events("1")] == [2]
        assert cli.main(argv) == cli.EXIT_INCOMPLETE
        assert "Resuming in.jsonl" in capsys.readouterr().out
        assert sim.stats()["requests"] == 5

    def test_a_canary_field_name_never_reaches_the_report_or_the_journal(
        self, tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An email used as a key is reported as an unnamed unknown field, everywhere."""
        canary = "canary-7f3a@example.com"
        path = write_lines(
            tmp_path / "in.jsonl",
            [{"op": "identify", "id": "1"}, {"op": "identify", "id": "2", canary: "x"}],
        )
        argv = ["send", str(path), "--site-id", sim.site_id, "--api-key", sim.api_key]
        argv += ["--host", sim.host, "--port", str(sim.port), "--no-progress"]
        assert cli.main(argv) == cli.EXIT_INCOMPLETE
        out, err = capsys.readouterr()
        assert "line 2: identify: 1 unknown field (names not shown)" in out
        assert canary not in out + err
        stored = b"".join(p.read_bytes() for p in tmp_path.glob("in.jsonl.journal*"))
        assert b"1 unknown field (names not shown)" in stored
        assert canary.encode() not in stored

    def test_lines_queued_in_the_outbox_are_delivered_and_reported_sent(
        self, tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With --outbox, lines that failed now are queued, drained at the end and count as sent."""
        config = tmp_path / "resilio.yaml"
        config.write_text(
            "version: 1\npipelines:\n  customerio.track:\n    - timeout: {seconds: 5}\n"
        )
        lines = [{"op": "track", "id": "q", "name": "e", "data": {"seq": i}} for i in range(5)]
        path = write_lines(tmp_path / "in.jsonl", lines)
        sim.faults.add("track", status=503, first=3)
        argv = [
            "send",
            str(path),
            "--host",
            sim.host,
            "--port",
            str(sim.port),
            "--concurrency",
            "1",
        ]
        argv += ["--site-id", sim.site_id, "--api-key", sim.api_key, "--no-progress"]
        argv += ["--config", str(config), "--outbox", str(tmp_path / "outbox.sqlite3")]
        code = cli.main(argv)
        out = capsys.readouterr().out
        assert code == cli.EXIT_OK, out
        assert "  sent                           5" in out
        assert sorted(e["data"]["seq"] for e in sim.events("q")) == [0, 1, 2, 3, 4]
        assert sim.stats()["statuses"][503] == 3

    def test_outbox_commands_are_forwarded(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`outbox stats --sqlite PATH` runs resilio's outbox command and exits 0."""
        from resilio.outbox import Outbox

        store = tmp_path / "o.sqlite3"
        made = Outbox.sqlite(store)
        made.stats()  # first use makes the file
        made.close()
        assert cli.main(["outbox", "stats", "--sqlite", str(store)]) == 0
        assert "pending           0" in capsys.readouterr().out

    def test_outbox_drain_replays_through_the_adapters_defaults(
        self, tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`outbox drain --sqlite PATH` with credentials, no --config, delivers queued calls."""
        from resilio.outbox import Outbox, Queued
        from resilio_customerio import ResilientCustomerIO

        store = tmp_path / "o.sqlite3"
        outbox = Outbox.sqlite(store)
        config = {"version": 1, "pipelines": {"customerio.track": [{"timeout": {"seconds": 5}}]}}
        cio = ResilientCustomerIO(**sim.client_kwargs(), outbox=outbox, config=config)
        sim.faults.add("track", status=503, first=3)
        receipts = [cio.track("d", "e", data={"seq": i}) for i in range(3)]
        cio.close()
        outbox.close()
        assert all(isinstance(r, Queued) for r in receipts)
        assert sim.events("d") == []
        argv = ["outbox", "drain", "--sqlite", str(store), "--host", sim.host]
        argv += ["--port", str(sim.port), "--site-id", sim.site_id, "--api-key", sim.api_key]
        assert cli.main(argv) == 0
        assert "delivered 3, retried 0, dead 0" in capsys.readouterr().out
        assert sorted(e["data"]["seq"] for e in sim.events("d")) == [0, 1, 2]

    def test_outbox_drain_without_credentials_names_them(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`outbox drain` without a site id and key is a usage error (2) of this command."""
        for name in ("CUSTOMERIO_SITE_ID", "CUSTOMERIO_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        code = cli.main(["outbox", "drain", "--sqlite", str(tmp_path / "o.sqlite3")])
        assert code == cli.EXIT_USAGE
        assert capsys.readouterr().err == (
            "resilio-customerio: error: missing Customer.io credentials: "
            "--site-id (or CUSTOMERIO_SITE_ID), --api-key (or CUSTOMERIO_API_KEY)\n"
        )

    def test_outbox_drain_with_a_bad_config_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`outbox drain --config bad.yaml` exits 2 with the file's location of the problem."""
        config = tmp_path / "bad.yaml"
        config.write_text("pipelines:\n  customerio.track:\n    - retry: {attempts: 0}\n")
        argv = ["outbox", "drain", "--sqlite", str(tmp_path / "o.sqlite3"), "--config"]
        argv += [str(config), "--site-id", "s", "--api-key", "k"]
        assert cli.main(argv) == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert err.startswith("resilio-customerio: configuration error:\n")
        assert f"{config}:3:25: pipelines.customerio.track[0].retry.attempts" in err

    def test_outbox_stats_reads_the_outbox_of_a_config(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`outbox stats --config FILE` opens the outbox the file declares, without credentials."""
        config = tmp_path / "resilio.yaml"
        store = tmp_path / "c.sqlite3"
        config.write_text(f"version: 1\noutbox:\n  kind: sqlite\n  path: {store}\n")
        assert cli.main(["outbox", "stats", "--config", str(config)]) == 0
        assert "pending           0" in capsys.readouterr().out
        assert store.exists()


class TestPace:
    def test_pace_spaces_hand_overs_by_the_rate(self) -> None:
        """At 10 per second, five hand-overs wait 0.1 s each after the first."""
        from resilio.testing import FakeClock
        from resilio_customerio._send import Pace

        clock = FakeClock()
        pace = Pace(10.0, clock)
        for _ in range(5):
            pace.wait()
        assert clock.sleeps == pytest.approx([0.1] * 4)

    def test_pace_catches_up_at_most_one_second(self) -> None:
        """After a 5 s stall, at most one second's worth of hand-overs go without waiting."""
        from resilio.testing import FakeClock
        from resilio_customerio._send import Pace

        clock = FakeClock()
        pace = Pace(2.0, clock)
        pace.wait()
        clock.advance(5.0)
        for _ in range(4):
            pace.wait()
        assert clock.sleeps == pytest.approx([0.5])

    def test_rate_zero_never_waits(self) -> None:
        """Without a rate, hand-overs never sleep."""
        from resilio.testing import FakeClock
        from resilio_customerio._send import Pace

        clock = FakeClock()
        pace = Pace(0.0, clock)
        for _ in range(3):
            pace.wait()
        assert clock.sleeps == []


class TestBatchOption:
    def test_bare_batch_uses_the_default_size(self) -> None:
        """`--batch` without N sends batches of DEFAULT_BATCH operations."""
        args = cli.build_parser().parse_args(["send", "in.jsonl", "--batch"])
        assert args.batch == cli.DEFAULT_BATCH == 500

    def test_batch_n_and_no_batch(self) -> None:
        """`--batch 50` gives 50; without the option, one request per line (0)."""
        parser = cli.build_parser()
        assert parser.parse_args(["send", "in.jsonl", "--batch", "50"]).batch == 50
        assert parser.parse_args(["send", "in.jsonl"]).batch == 0


class TestJournalWrites:
    def test_recorded_rows_are_read_back_and_durable_after_commit(self, tmp_path: Path) -> None:
        """Rows recorded in bulk are visible at once and still there after commit and reopen."""
        path = tmp_path / "j.journal"
        with Journal(path) as journal:
            journal.record(1, "d1", "pending", [EID_A])
            journal.record(2, "d2", "pending")
            assert [(r.line, r.status, r.event_ids) for r in journal.rows()] == [
                (1, "pending", (EID_A,)),
                (2, "pending", ()),
            ]
            journal.update_many([(1, "sent", None), (2, "dead", "refused")])
            journal.commit()
        with Journal(path) as journal:
            assert [(r.line, r.status, r.detail) for r in journal.rows()] == [
                (1, "sent", None),
                (2, "dead", "refused"),
            ]

    def test_uncommitted_rows_are_lost_with_the_process(self, tmp_path: Path) -> None:
        """A row recorded but never committed is not in the file another reader opens."""
        path = tmp_path / "j.journal"
        journal = Journal(path)
        journal.record(1, "d1", "pending")
        with Journal(path) as other:
            assert list(other.rows()) == []
        journal.close()
