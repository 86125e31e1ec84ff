"""Tests of reading configuration: durations, environment references, YAML safety."""

from __future__ import annotations

from datetime import timedelta

import pytest

from resilio.config.durations import parse_duration
from resilio.config.env import substitute
from resilio.config.source import read_source


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (3, 3.0),
        (0.5, 0.5),
        ("200ms", 0.2),
        ("10s", 10.0),
        ("1.5m", 90.0),
        ("2h", 7200.0),
        (" 5 s ", 5.0),
        (timedelta(minutes=1), 60.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    """Durations accept numbers, timedeltas and ms/s/m/h suffixes."""
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["10", "ten", "-1s", "1d", -1, True, None, float("inf")])
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
    """A quoted ${VAR} stays a string; a plain one is re-read as a YAML scalar."""
    doc = read_source("a: ${N}\nb: '${N}'\n", {"N": "5"})
    assert doc.data == {"a": 5, "b": "5"}


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
