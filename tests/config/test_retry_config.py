"""The retry policy's options declared in YAML text."""

from __future__ import annotations

import pytest

import resilio
from resilio.config import load_config
from resilio.config.dump import policy_to_config
from resilio.testing import FakeClock


def _retry(yaml_text: str) -> resilio.Retry:
    policy = load_config(yaml_text, telemetry=False).pipeline("p").policies[0]
    assert isinstance(policy, resilio.Retry)
    return policy


def test_wait_on_open_circuit_from_yaml_text() -> None:
    """``wait_on_open_circuit: true`` in YAML sets the option; leaving it out keeps False."""
    on = _retry(
        "version: 1\npipelines:\n  p:\n    - retry: {attempts: 4, wait_on_open_circuit: true}\n"
    )
    off = _retry("version: 1\npipelines:\n  p:\n    - retry: {attempts: 4}\n")
    assert on.options.wait_on_open_circuit is True
    assert off.options.wait_on_open_circuit is False


def test_wait_on_open_circuit_must_be_a_boolean() -> None:
    """A non-boolean value is a configuration error naming the option's path."""
    with pytest.raises(resilio.ConfigError, match=r"p\[0\]\.retry\.wait_on_open_circuit"):
        _retry("version: 1\npipelines:\n  p:\n    - retry: {wait_on_open_circuit: sometimes}\n")


def test_wait_on_open_circuit_round_trips() -> None:
    """A policy built in code with the option is written out and read back equal."""
    policy = resilio.Retry(attempts=3, wait_on_open_circuit=True)
    loaded = (
        load_config({"version": 1, "pipelines": {"p": [policy_to_config(policy)]}}, telemetry=False)
        .pipeline("p")
        .policies[0]
    )
    assert loaded.options == policy.options


@pytest.mark.parametrize(("wait", "sleeps", "outcome"), [("true", [30], "ok"), ("false", [], None)])
def test_yaml_declared_option_changes_behaviour(
    wait: str, sleeps: list[float], outcome: str | None
) -> None:
    """Declared in YAML, the option decides whether the retry waits out the circuit's break.

    The zero backoff after the opening failure is not slept; only the break is.
    """
    clock = FakeClock(start=1000.0)
    registry = load_config(
        "version: 1\n"
        "pipelines:\n"
        "  p:\n"
        "    - retry: {attempts: 3, backoff: {kind: constant, seconds: 0},"
        f" wait_on_open_circuit: {wait}}}\n"
        "    - circuit_breaker: {failure_threshold: 1, break_duration: 30s}\n",
        telemetry=False,
        clock=clock,
    )
    calls: list[int] = []

    def fails_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("down")  # opens the breaker
        return "ok"

    p = registry.pipeline("p")
    if outcome is None:
        with pytest.raises(resilio.CircuitOpen):
            p.execute(fails_once)
    else:
        assert p.execute(fails_once) == outcome
    assert clock.sleeps == sleeps
