"""Round trips code ↔ YAML for every built-in policy type present, and for plugin types."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
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


def key_of_first_argument(args: tuple[Any, ...], kwargs: dict[str, Any], ctx: Any) -> str:
    """An idempotency key function importable by path."""
    return str(args[0])


def fallback_handler(error: BaseException) -> str:
    """A fallback handler importable by path."""
    return "fallback"


# Each entry sets options away from their defaults; together they set every option of every
# built-in policy type (test_samples_exercise_every_option checks), except the ones holding an
# object the configuration names instead of describing: ``store`` (an entry of ``stores:``) and
# a fallback's ``enqueue`` (the configuration's ``outbox``).
NAMED_OBJECTS = {"store", "enqueue"}
SAMPLES: dict[str, Callable[[], Policy]] = {
    "timeout": lambda: _policy("timeout", seconds=2.5, name="overall"),
    "timeout_thread": lambda: _policy("timeout", seconds=0.75, mode="thread", max_workers=3),
    "retry": lambda: _policy(
        "retry",
        attempts=5,
        backoff={"kind": "exponential", "initial": 0.2, "max": 10, "jitter": "equal"},
        max_delay=30.0,
        retry_ambiguous=True,
        retry_if_result=is_connection_error,
    ),
    "retry_budget": lambda: _policy(
        "retry",
        wait_on_open_circuit=True,
        budget={"ratio": 0.25, "min_retries_per_second": 3, "window": 20},
        rng=42,
    ),
    "fallback": lambda: _policy(
        "fallback", value={"status": "queued"}, on=(ConnectionError, ErrorKind.THROTTLED)
    ),
    "fallback_handler": lambda: _policy(
        "fallback", handler=fallback_handler, on=is_connection_error, name="degrade"
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
    "circuit_breaker_slow": lambda: _policy(
        "circuit_breaker",
        failure_threshold=7,
        slow_call_duration=2.5,
        slow_call_rate=0.8,
        window_size=50,
        minimum_calls=5,
        success_threshold=3,
        half_open_max_calls=4,
        sync_interval=0.5,
    ),
    "bulkhead": lambda: _policy("bulkhead", max_concurrent=4, max_queued=8, queue_timeout=1.5),
    "rate_limiter": lambda: _policy("rate_limiter", rate=100, per=1.0),
    "rate_limiter_burst": lambda: _policy(
        "rate_limiter", rate=5, per=60.0, burst=12, max_wait=2.5, name="api"
    ),
    "idempotency": lambda: _policy("idempotency"),
    "idempotency_options": lambda: _policy(
        "idempotency",
        ttl=120.0,
        key=key_of_first_argument,
        wait=False,
        lease=15.0,
        max_entries=500,
        poll_interval=0.25,
    ),
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
    assert _comparable(loaded.options) == _comparable(policy.options)
    assert loaded.name == policy.name


def _comparable(options: Any) -> Any:
    """The options, with a RetryBudget (stateful, compared by identity) as its parameters."""
    budget = getattr(options, "budget", None)
    if budget is None:
        return options
    return (attrs.evolve(options, budget=None), budget.to_mapping())


def test_samples_exercise_every_option() -> None:
    """Every option of every built-in policy type differs from its default in some sample."""
    exercised: dict[str, set[str]] = {}
    for make in SAMPLES.values():
        policy = make()
        seen = exercised.setdefault(policy.kind, set())
        for field in attrs.fields(type(policy.options)):
            if getattr(policy.options, field.name) != _default(field):
                seen.add(field.name)
    missing = {
        kind: sorted({f.name for f in attrs.fields(_options_class(kind))} - seen - NAMED_OBJECTS)
        for kind, seen in exercised.items()
    }
    assert set(exercised) == set(BUILTIN_POLICIES)
    assert missing == {kind: [] for kind in BUILTIN_POLICIES}


def _options_class(kind: str) -> type:
    module_name, class_name = BUILTIN_POLICIES[kind]
    options_class: type = getattr(importlib.import_module(module_name), class_name).options_class
    return options_class


def _default(field: Any) -> Any:
    default = field.default
    factory = getattr(default, "factory", None)  # an attrs.Factory (the retry backoff)
    if factory is not None:
        return factory()
    if field.converter is not None and default is not attrs.NOTHING:
        return field.converter(default)
    return default


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
