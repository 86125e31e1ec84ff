"""Tests of reading configuration: durations, environment references, YAML safety."""

from __future__ import annotations

from datetime import timedelta

import pytest

import resilio
from resilio.config.durations import parse_duration
from resilio.config.env import EnvText, core_scalar, substitute
from resilio.config.source import looks_like_yaml, read_source


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (3, 3.0),
        (0.5, 0.5),
        ("200ms", 0.2),
        ("10s", 10.0),
        ("1.5m", 90.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        (" 5 s ", 5.0),
        (timedelta(minutes=1), 60.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    """Durations accept numbers, timedeltas and ms/s/m/h/d suffixes."""
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["10", "ten", "-1s", "1w", -1, True, None, float("inf")])
def test_bad_durations(value: object) -> None:
    """Anything else is a ValueError."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_env_substitution_forms() -> None:
    """${VAR}, ${VAR:-default}, an empty variable with a default, and $$ escapes."""
    env = {"A": "1", "EMPTY": ""}
    assert substitute("${A}-${B:-two}-${EMPTY:-d}-$$x", env) == ("1-two-d-$x", [])


def test_missing_and_malformed_references() -> None:
    """A missing variable and a malformed reference are reported by name."""
    _text, problems = substitute("${MISSING} ${bad-name}", {})
    assert problems == [
        "environment variable MISSING is not set (use ${MISSING:-default} for a default)",
        "malformed environment reference ${bad-name..., expected ${NAME} or ${NAME:-default}",
    ]


def test_quoted_reference_stays_a_string() -> None:
    """A quoted ${VAR} stays a string (marked for conversion); a plain one is re-read as YAML."""
    doc = read_source("a: ${N}\nb: '${N}'\nc: 'x${N}'\n", {"N": "5"})
    assert doc.data == {"a": 5, "b": "5", "c": "x5"}
    assert type(doc.data["b"]) is EnvText
    assert type(doc.data["c"]) is str


def test_yaml_12_booleans() -> None:
    """Only true/false in 1.2's spellings are booleans; on/off/yes/no/y/n are strings."""
    doc = read_source(
        "{on: [on, off, yes, no, y, n, Yes, ON], b: [true, True, TRUE, false, False, FALSE]}", {}
    )
    assert doc.data == {
        "on": ["on", "off", "yes", "no", "y", "n", "Yes", "ON"],
        "b": [True, True, True, False, False, False],
    }
    assert not doc.problems


def test_pyyaml_global_resolvers_are_untouched() -> None:
    """Reading a configuration does not change PyYAML's own (YAML 1.1) loaders."""
    import yaml

    read_source("a: on\n", {})
    assert yaml.safe_load("a: on") == {"a": True}


def test_unquoted_reference_in_a_flow_mapping() -> None:
    """A plain ${VAR} works inside flow collections and becomes the scalar its value reads as."""
    doc = read_source("retry: {attempts: ${A:-3}, tags: [${T}, x]}\n", {"T": "on"})
    assert doc.data == {"retry": {"attempts": 3, "tags": ["on", "x"]}}
    assert not doc.problems


def test_flow_reference_problems_keep_their_column() -> None:
    """A missing variable inside a flow mapping is reported at its own line and column."""
    doc = read_source("x: 1\nretry: {attempts: ${MISSING}, more: 2}\n", {})
    assert doc.problems.lines == [
        "<string>:2:19: retry.attempts: environment variable MISSING is not set "
        "(use ${MISSING:-default} for a default)"
    ]


def test_yaml_error_after_a_reference_keeps_its_column() -> None:
    """Hiding references from the scanner moves no position: a later syntax error is exact."""
    doc = read_source("a: {b: ${LONG_VARIABLE_NAME:-1}, c: [}\n", {})
    (line,) = doc.problems.lines
    assert line.startswith("<string>:1:38: (top level): invalid YAML")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("", None),
        ("~", None),
        ("NULL", None),
        ("true", True),
        ("FALSE", False),
        ("on", "on"),
        ("3", 3),
        ("-7", -7),
        ("0o17", 15),
        ("0x1F", 31),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("-.inf", float("-inf")),
        ("1_000", "1_000"),
        ("1:30", "1:30"),
        ("10s", "10s"),
    ],
)
def test_core_scalar(text: str, value: object) -> None:
    """Substituted text is read with the YAML 1.2 core schema's rules."""
    result = core_scalar(text)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize(
    "text",
    [
        "pipelines: {a: [retry: 3]}",
        "version: 1",
        "pipelines:",
        "{pipelines: {}}",
        "# comment",
        "pipelines:\n  a: []",
    ],
)
def test_strings_that_are_yaml_text(text: str) -> None:
    """A newline, ': ', a trailing ':', or a leading '{' or '#' makes a string YAML text."""
    assert looks_like_yaml(text)


@pytest.mark.parametrize("text", ["resilio.yaml", "conf/app.yml", "C:\\conf\\app.yaml"])
def test_strings_that_are_file_names(text: str) -> None:
    """Other strings, Windows drive paths included, are file names."""
    assert not looks_like_yaml(text)


def test_missing_file_hints_at_the_yaml_text_rule() -> None:
    """A string read as a missing file's name says how YAML text is recognised."""
    doc = read_source("retry-3.yaml", {})
    (line,) = doc.problems.lines
    assert "cannot read the file: No such file or directory" in line
    assert "YAML text needs a newline or a 'key: value' mapping" in line


def test_python_tags_are_refused() -> None:
    """Unsafe tags are a problem, never constructed."""
    doc = read_source("a: !!python/object/apply:os.system ['true']\n", {})
    assert doc.problems.lines == [
        "<string>:1:4: a: unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'"
    ]
    assert doc.data == {"a": None}


def test_recursive_alias_is_a_problem() -> None:
    """A self-referencing alias is reported instead of recursing forever."""
    doc = read_source("a: &x [*x]\n", {})
    assert doc.problems.lines == [
        "<string>:1:4: a[0]: a YAML alias refers to itself (recursive structure)"
    ]


def test_merge_keys_work() -> None:
    """YAML merge keys (<<) are applied."""
    doc = read_source("base: &b {attempts: 2}\nr:\n  <<: *b\n  max_delay: 1\n", {})
    assert doc.data["r"] == {"attempts": 2, "max_delay": 1}


def test_non_string_keys() -> None:
    """Keys must be strings."""
    doc = read_source("1: a\n", {})
    assert doc.problems.lines == ["<string>:1:1: (top level): keys must be strings, found 1"]


@pytest.mark.parametrize(
    ("source", "found"),
    [
        (42, "got int$"),
        (None, "got None$"),
        (b"pipelines: {}", "got bytes: decode it to str first"),
    ],
)
def test_load_config_names_a_wrong_source_type(source: object, found: str) -> None:
    """load_config(42), (None) or (bytes) is a TypeError saying what a source may be."""
    with pytest.raises(TypeError, match=r"a file path .*YAML text or a mapping, " + found):
        resilio.load_config(source)  # type: ignore[arg-type]
