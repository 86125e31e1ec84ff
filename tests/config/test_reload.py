"""Tests of hot reload: atomic swap, kept state for unchanged policies, errors change nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from resilio import CircuitBreaker, CircuitOpen, ConfigError
from resilio.config import load_config
from resilio.policies._breaker_state import CircuitState
from resilio.testing import FakeClock
from tests.config.conftest import Counter

Write = Callable[..., Path]

BASE = """
policies:
  shared: {counter: {limit: 1}}
pipelines:
  a:
    - counter: {limit: 5}
    - counter: {ref: shared}
  b:
    - timeout: 1s
"""


@pytest.fixture(autouse=True)
def _dummies(dummy_plugin: object) -> None:
    """Every reload test uses the dummy policy types."""


class TestReload:
    def test_unchanged_policies_keep_their_instances(self, write: Write) -> None:
        """A reload keeps instances (and state) of policies whose configuration is the same."""
        path = write(BASE)
        registry = load_config(path, telemetry=False)
        a = registry.pipeline("a")
        registry.pipeline("a").execute(lambda: None)
        inline, shared = a.policies
        path.write_text(BASE.replace("timeout: 1s", "timeout: 2s"), encoding="utf-8")
        registry.reload()
        assert registry.pipeline("a") is a
        assert registry.pipeline("a").policies[0] is inline
        assert registry.policy("shared") is shared
        assert isinstance(inline, Counter)
        assert inline.calls == 1
        assert registry.pipeline("b").policies[0].options.seconds == 2.0

    def test_changed_policy_is_rebuilt(self, write: Write) -> None:
        """A policy whose options changed is a new instance; its neighbours are kept."""
        path = write(BASE)
        registry = load_config(path, telemetry=False)
        inline, shared = registry.pipeline("a").policies
        path.write_text(BASE.replace("limit: 5", "limit: 6"), encoding="utf-8")
        registry.reload(path)
        new_inline, new_shared = registry.pipeline("a").policies
        assert new_inline is not inline
        assert new_inline.options.limit == 6
        assert new_shared is shared

    def test_changed_shared_policy_is_rebuilt_everywhere(self, write: Write) -> None:
        """Changing a shared policy gives every referring pipeline the new instance."""
        path = write(BASE)
        registry = load_config(path, telemetry=False)
        old = registry.policy("shared")
        path.write_text(BASE.replace("limit: 1", "limit: 9"), encoding="utf-8")
        registry.reload()
        assert registry.policy("shared") is not old
        assert registry.pipeline("a").policies[1] is registry.policy("shared")

    def test_reload_with_errors_changes_nothing(self, write: Write) -> None:
        """A reload with problems raises them all and leaves every pipeline as it was."""
        path = write(BASE)
        registry = load_config(path, telemetry=False)
        before = registry.pipelines
        path.write_text(BASE.replace("limit: 5", "limit: x") + "  c: 3\n", encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            registry.reload()
        assert len(info.value.problems) == 2
        assert registry.pipelines == before

    def test_removed_pipeline_is_gone(self, write: Write) -> None:
        """A pipeline removed from the file is no longer served after reload."""
        path = write(BASE)
        registry = load_config(path, telemetry=False)
        path.write_text(BASE.split("  b:")[0], encoding="utf-8")
        registry.reload()
        assert set(registry.pipelines) == {"a"}

    def test_call_in_flight_finishes_on_old_pipeline_and_new_calls_use_new(
        self, write: Write
    ) -> None:
        """A call held inside the old pipeline finishes there; a call after reload uses the new."""
        path = write(BASE)
        registry = load_config(path, telemetry=False)
        old_pipeline = registry.pipeline("a")
        old_counter = old_pipeline.policies[0]
        assert isinstance(old_counter, Counter)
        in_call = threading.Event()
        release = threading.Event()
        results: list[str] = []

        def slow() -> str:
            in_call.set()
            release.wait(5)
            return "held done"

        held = threading.Thread(target=lambda: results.append(old_pipeline.execute(slow)))
        held.start()
        assert in_call.wait(5)
        path.write_text(BASE.replace("limit: 5", "limit: 6"), encoding="utf-8")
        registry.reload()
        new_pipeline = registry.pipeline("a")
        new_counter = new_pipeline.policies[0]
        assert new_pipeline is not old_pipeline
        assert isinstance(new_counter, Counter)
        assert new_counter.options.limit == 6
        assert new_pipeline.execute(lambda: "new") == "new"  # while the old call is still held
        assert held.is_alive()
        release.set()
        held.join(5)
        assert results == ["held done"]
        assert (old_counter.calls, new_counter.calls) == (1, 1)

    def test_concurrent_callers_see_complete_pipelines_in_reload_order(self, write: Write) -> None:
        """Threads calling during reloads see whole pipelines, never an older one after a newer.

        Once the last reload returned, every new call runs on its pipeline.
        """
        path = write(BASE)
        registry = load_config(path, telemetry=False)
        stop = threading.Event()
        errors: list[BaseException] = []
        seen: dict[int, list[int]] = {}
        after_reloads: dict[int, int] = {}

        def caller(number: int) -> None:
            limits = seen.setdefault(number, [])
            try:
                while not stop.is_set():
                    pipeline = registry.pipeline("a")
                    assert len(pipeline.policies) == 2
                    limits.append(pipeline.policies[0].options.limit)
                    pipeline.execute(lambda: None)
                final = registry.pipeline("a")
                final.execute(lambda: None)
                after_reloads[number] = final.policies[0].options.limit
            except BaseException as exc:  # reported by the test
                errors.append(exc)

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for limit in range(6, 30):
            path.write_text(BASE.replace("limit: 5", f"limit: {limit}"), encoding="utf-8")
            registry.reload()
        stop.set()
        for t in threads:
            t.join(5)
        assert errors == []
        assert after_reloads == dict.fromkeys(range(4), 29)
        for limits in seen.values():
            assert limits == sorted(limits)
            assert set(limits) <= set(range(5, 30))
        final_counter = registry.pipeline("a").policies[0]
        assert isinstance(final_counter, Counter)
        assert final_counter.calls >= 4  # each thread's call after the reloads ran on it

    def test_open_breaker_stays_open_when_unchanged_and_a_changed_one_is_rebuilt(
        self, write: Write, clock: FakeClock
    ) -> None:
        """An open CircuitBreaker whose options did not change keeps its instance and state."""
        text = """
        pipelines:
          kept:
            - circuit_breaker: {{failure_threshold: 2, break_duration: 60s}}
          changed:
            - circuit_breaker: {{failure_threshold: {threshold}, break_duration: 60s}}
        """
        path = write(text.format(threshold=2))
        registry = load_config(path, telemetry=False, clock=clock)
        breakers = {}
        for name in ("kept", "changed"):
            breaker = registry.pipeline(name).policies[0]
            assert isinstance(breaker, CircuitBreaker)
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    registry.pipeline(name).execute(_refused)
            assert breaker.state is CircuitState.OPEN
            breakers[name] = breaker
        write(text.format(threshold=3))
        registry.reload()
        kept = registry.pipeline("kept").policies[0]
        assert kept is breakers["kept"]
        assert isinstance(kept, CircuitBreaker)
        assert kept.state is CircuitState.OPEN
        assert kept.snapshot().failures == 2
        with pytest.raises(CircuitOpen):
            registry.pipeline("kept").execute(lambda: "not run")
        changed = registry.pipeline("changed").policies[0]
        assert changed is not breakers["changed"]
        assert isinstance(changed, CircuitBreaker)
        assert changed.options.failure_threshold == 3
        assert changed.state is CircuitState.CLOSED
        assert registry.pipeline("changed").execute(lambda: "ran") == "ran"

    def test_reload_without_source(self) -> None:
        """reload() with nothing loaded before is a clear ValueError."""
        from resilio.config import Registry

        with pytest.raises(ValueError, match="nothing to reload"):
            Registry(telemetry=False).reload()


def _refused() -> None:
    raise ConnectionError("refused")
