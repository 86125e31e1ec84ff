"""Property tests: any YAML text or data gives a registry or a clean ConfigError, never a crash."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilio import ConfigError
from resilio.config import load_config

KEYS = st.sampled_from(
    [
        "version",
        "pipelines",
        "policies",
        "defaults",
        "stores",
        "outbox",
        "retry",
        "timeout",
        "fallback",
        "circuit_breaker",
        "bulkhead",
        "rate_limiter",
        "idempotency",
        "attempts",
        "backoff",
        "kind",
        "ref",
        "name",
        "seconds",
        "value",
        "store",
        "max_delay",
        "p",
        "exponential",
        "memory",
        "x",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["10s", "200ms", "1m", "x", "${HOME}", "${NOPE}", "${A:-3}", "exponential", ""]
    ),
    st.text(max_size=8),
)
DATA = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)
    ),
    max_leaves=25,
)


def _problems(source: Any) -> list[str] | None:
    try:
        load_config(source, telemetry=False, environ={"HOME": "/h"})
    except ConfigError as exc:
        return exc.problems
    return None


def _load(source: Any) -> None:
    problems = _problems(source)
    if problems is not None:
        assert problems
        assert all(isinstance(line, str) and line for line in problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, DATA, max_size=5))
def test_random_dicts(data: dict[str, Any]) -> None:
    """A random mapping loads or raises ConfigError only."""
    _load(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, DATA, max_size=5))
def test_random_yaml_documents(data: dict[str, Any]) -> None:
    """Random data dumped as YAML text loads or raises ConfigError only."""
    _load(yaml.safe_dump(data) + "\n")


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="pipelns:retyimo -[]{},&*!\n\t'\"#%@`|>0123456789$", max_size=60))
def test_random_text(text: str) -> None:
    """Arbitrary (mostly broken) YAML text loads or raises ConfigError only."""
    _load(text + "\n")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["retry", "timeout", "fallback", "circuit_breaker", "bulkhead"]),
            DATA,
            min_size=1,
            max_size=1,
        ),
        max_size=4,
    )
)
def test_random_pipelines(entries: list[dict[str, Any]]) -> None:
    """Random policy entries with random options load or raise ConfigError only."""
    _load({"version": 1, "pipelines": {"p": entries}})
