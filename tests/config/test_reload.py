"""Tests of hot reload: atomic swap, kept state for unchanged policies, errors change nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from resilio import ConfigError
from resilio.config import load_config
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

    def test_calls_in_flight_finish_on_old_pipeline_under_concurrency(self, write: Write) -> None:
        """Threads calling while another reloads always see a complete pipeline, old or new."""
        path = write(BASE)
        registry = load_config(path, telemetry=False)
        stop = threading.Event()
        errors: list[BaseException] = []
        seen_limits: set[int] = set()
        in_call = threading.Event()
        release = threading.Event()

        def slow() -> None:
            in_call.set()
            release.wait(5)

        def caller() -> None:
            try:
                while not stop.is_set():
                    pipeline = registry.pipeline("a")
                    assert len(pipeline.policies) == 2
                    seen_limits.add(pipeline.policies[0].options.limit)
                    pipeline.execute(lambda: None)
            except BaseException as exc:  # reported by the test
                errors.append(exc)

        # One call is held inside the old pipeline while the reload happens.
        old_pipeline = registry.pipeline("a")
        held = threading.Thread(target=lambda: old_pipeline.execute(slow))
        held.start()
        assert in_call.wait(5)
        threads = [threading.Thread(target=caller) for _ in range(4)]
        for t in threads:
            t.start()
        for limit in range(6, 30):
            path.write_text(BASE.replace("limit: 5", f"limit: {limit}"), encoding="utf-8")
            registry.reload()
        release.set()
        held.join(5)
        stop.set()
        for t in threads:
            t.join(5)
        assert errors == []
        assert registry.pipeline("a").policies[0].options.limit == 29
        assert old_pipeline.policies[0].options.limit == 5
        held_policy = old_pipeline.policies[0]
        assert isinstance(held_policy, Counter)
        assert held_policy.calls >= 1
        assert len(seen_limits) >= 1

    def test_reload_without_source(self) -> None:
        """reload() with nothing loaded before is a clear ValueError."""
        from resilio.config import Registry

        with pytest.raises(ValueError, match="nothing to reload"):
            Registry(telemetry=False).reload()
