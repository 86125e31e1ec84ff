"""Round trips code ↔ YAML for every built-in policy type present, and for plugin types."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from resilio.classify import ErrorKind
from resilio.config import load_config
from resilio.config.dump import UnrepresentableError, policy_to_config, value_to_config
from resilio.plugins.builtin import BUILTIN_POLICIES
from resilio.policies._base import Policy
from tests.config.conftest import Color, Dummy


def _policy(kind: str, **options: Any) -> Policy:
    module_name, class_name = BUILTIN_POLICIES[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        pytest.skip(f"{kind} is not part of this build yet")
    cls: type[Policy] = getattr(module, class_name)
    return cls(**options)


def is_connection_error(error: BaseException) -> bool:
    """A predicate importable by path, for round trips of callable options."""
    return isinstance(error, ConnectionError)


SAMPLES: dict[str, Callable[[], Policy]] = {
    "timeout": lambda: _policy("timeout", seconds=2.5, name="overall"),
    "retry": lambda: _policy(
        "retry",
        attempts=5,
        backoff={"kind": "exponential", "initial": 0.2, "max": 10, "jitter": "equal"},
        max_delay=30.0,
        retry_ambiguous=True,
        retry_if_result=is_connection_error,
    ),
    "fallback": lambda: _policy(
        "fallback", value={"status": "queued"}, on=(ConnectionError, ErrorKind.THROTTLED)
    ),
    "circuit_breaker": lambda: _policy(
        "circuit_breaker",
        failure_threshold=None,
        failure_rate=0.5,
        minimum_calls=20,
        window=60.0,
        break_duration=15.0,
        break_duration_multiplier=2.0,
        max_break_duration=300.0,
        half_open_max_calls=2,
    ),
    "bulkhead": lambda: _policy("bulkhead", max_concurrent=4, max_queued=8, queue_timeout=1.5),
    "rate_limiter": lambda: _policy("rate_limiter", rate=100, per=1.0),
    "idempotency": lambda: _policy("idempotency"),
}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_code_to_yaml_to_code(kind: str, tmp_path: Path) -> None:
    """A policy built in code, written as YAML and loaded back, has equal options and name."""
    policy = SAMPLES[kind]()
    entry = policy_to_config(policy)
    path = tmp_path / "roundtrip.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "pipelines": {"p": [entry]}}), encoding="utf-8")
    loaded = load_config(path, telemetry=False).pipeline("p").policies[0]
    assert type(loaded) is type(policy)
    assert loaded.options == policy.options
    assert loaded.name == policy.name


def test_spelled_forms_equal_code() -> None:
    """Durations with units and mapping forms give the same options as code does."""
    registry = load_config(
        """
        pipelines:
          p:
            - timeout: 1500ms
            - retry: {attempts: 4, max_delay: 1m, backoff: {kind: constant, seconds: 2s}}
        """,
        telemetry=False,
    )
    timeout, retry = registry.pipeline("p").policies
    assert timeout.options == SAMPLES["timeout"]().options.__class__(seconds=1.5)
    expected = _policy(
        "retry", attempts=4, max_delay=60.0, backoff={"kind": "constant", "seconds": 2}
    )
    assert retry.options == expected.options


def test_plugin_policy_round_trip(dummy_plugin: object) -> None:
    """A plugin's policy type round-trips through its configuration form too."""
    policy = Dummy(count=3, wait=0.25, mode="slow", tags=("x",), color=Color.BLUE, name="d")
    entry = policy_to_config(policy)
    assert entry == {
        "dummy": {
            "count": 3,
            "wait": 0.25,
            "mode": "slow",
            "tags": ["x"],
            "color": "blue",
            "name": "d",
        }
    }
    loaded = load_config({"pipelines": {"p": [entry]}}, telemetry=False).pipeline("p").policies[0]
    assert loaded.options == policy.options


def test_retry_budget_mapping_round_trip() -> None:
    """A RetryBudget dumps to its mapping form; durations with units load back inside it."""
    from resilio.policies.retry import RetryBudget

    policy = _policy("retry", budget=RetryBudget(0.5, min_retries_per_second=2, window=30))
    entry = policy_to_config(policy)
    assert entry == {
        "retry": {"budget": {"ratio": 0.5, "min_retries_per_second": 2.0, "window": 30.0}}
    }
    entry["retry"]["budget"]["window"] = "30s"
    loaded = load_config({"pipelines": {"p": [entry]}}, telemetry=False).pipeline("p").policies[0]
    budget = loaded.options.budget  # type: ignore[attr-defined]
    assert (budget.ratio, budget.min_retries_per_second, budget.window) == (0.5, 2.0, 30.0)


def test_unrepresentable_value() -> None:
    """A lambda has no configuration form and says so."""
    with pytest.raises(UnrepresentableError, match="function has no configuration form"):
        value_to_config(lambda: None)
