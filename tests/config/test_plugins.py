"""Tests of plugin discovery: entry points, blocking, failures, clashes and the hot-path hooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import resilio
from resilio import Context, Pipeline
from resilio.classify import Classification, ErrorKind
from resilio.errors import PluginError
from resilio.plugins import _runtime, manager
from resilio.testing import FakeClock
from tests.config.conftest import make_distribution

ACME_PLUGIN = """
import resilio
from resilio.classify import Classification, ErrorKind

EVENTS = []

class AcmeError(Exception):
    pass

@resilio.hookimpl
def resilio_register_operations(registry):
    registry.add(resilio.Operation(name="acme.ping", idempotent=True))

@resilio.hookimpl
def resilio_classify(error, context):
    if isinstance(error, AcmeError):
        return Classification(kind=ErrorKind.PERMANENT, reason="acme")
    return None

@resilio.hookimpl
def resilio_event(event):
    EVENTS.append(event)
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path where tests install tiny distributions."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    return path


class TestDiscovery:
    def test_builtin_plugin_registers_builtin_policies(self) -> None:
        """The built-in plugin registers the built-in policy types through the same hook."""
        system = manager.plugin_system()
        assert system.plugins[0].name == manager.BUILTIN
        assert "retry" in system.catalog.policy_types
        assert system.catalog.policy_types.provider("retry") == manager.BUILTIN
        assert "memory" in system.catalog.store_kinds

    def test_plugin_from_a_real_entry_point(self, site: Path) -> None:
        """A distribution's entry point in group 'resilio' is loaded and its hooks used."""
        make_distribution(
            site, "acme_dist", {"acme": "acme_ep_plugin"}, {"acme_ep_plugin.py": ACME_PLUGIN}
        )
        system = manager.plugin_system()
        info = next(p for p in system.plugins if p.name == "acme")
        assert info.distribution == "acme_dist"
        assert info.source == "acme_ep_plugin"
        assert info.hooks == ("resilio_classify", "resilio_event", "resilio_register_operations")
        assert system.catalog.operations.provider("acme.ping") == "acme"

    def test_manager_is_built_when_a_pipeline_is_constructed(self) -> None:
        """Constructing a pipeline builds the plugin manager, so no failure has to build it."""
        assert manager._system is None
        Pipeline([], name="p", telemetry=False)
        assert manager._system is not None
        assert _runtime._loaded is True

    def test_importing_loads_no_plugin_machinery_and_a_failure_imports_nothing(self) -> None:
        """In a fresh process, import loads no pluggy; the first failure imports no module."""
        import subprocess
        import sys

        code = (
            "import sys, resilio\n"
            "names = ('pluggy', 'resilio.plugins.manager', 'importlib.metadata')\n"
            "print(sorted(m for m in names if m in sys.modules))\n"
            "p = resilio.Pipeline([resilio.Retry(attempts=2)], name='p', telemetry=False,\n"
            "                     clock=__import__('resilio.testing').testing.FakeClock())\n"
            "print(sorted(m for m in names if m in sys.modules))\n"
            "before = set(sys.modules)\n"
            "def fail():\n"
            "    raise ConnectionError('down')\n"
            "try:\n"
            "    p.execute(fail)\n"
            "except ConnectionError:\n"
            "    pass\n"
            "print(sorted(set(sys.modules) - before))\n"
        )
        root = Path(__file__).resolve().parents[2]
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=root,
            env={"PYTHONPATH": str(root), "PATH": ""},
            check=True,
            timeout=60,
        )
        at_import, after_construction, at_failure = proc.stdout.strip().splitlines()
        assert at_import == "[]"
        assert after_construction == "['importlib.metadata', 'pluggy', 'resilio.plugins.manager']"
        assert at_failure == "[]"

    def test_plugin_constructing_a_pipeline_while_loading_does_not_recurse(
        self, site: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A plugin module that builds a pipeline at import is loaded once, without recursion."""
        make_distribution(
            site,
            "eager_dist",
            {"eager": "eager_plugin"},
            {
                "eager_plugin.py": ACME_PLUGIN.replace("acme.ping", "eager.ping")
                + "\nPIPE = resilio.Pipeline([], name='eager', telemetry=False)\n"
            },
        )
        builds = []
        real_build = manager._build

        def counting_build() -> manager.PluginSystem:
            builds.append(1)
            return real_build()

        monkeypatch.setattr(manager, "_build", counting_build)
        Pipeline([], name="p", telemetry=False)
        system = manager.plugin_system()
        assert len(builds) == 1
        assert [p.name for p in system.plugins].count("eager") == 1
        assert "eager.ping" in system.catalog.operations

    def test_blocked_plugin_is_not_loaded(
        self, site: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """RESILIO_DISABLE_PLUGINS blocks a plugin by name, even one that would fail to import."""
        make_distribution(site, "bad_dist", {"bad": "no_such_module_xyz"}, {})
        make_distribution(
            site, "acme_dist", {"acme": "acme_ep_plugin2"}, {"acme_ep_plugin2.py": ACME_PLUGIN}
        )
        monkeypatch.setenv(manager.DISABLE_ENV, " bad , acme")
        system = manager.plugin_system()
        blocked = {p.name for p in system.plugins if p.blocked}
        assert blocked == {"bad", "acme"}
        assert "acme.ping" not in system.catalog.operations

    def test_failing_plugin_is_named_in_the_error(self, site: Path) -> None:
        """A plugin that fails to import makes a PluginError naming it, its target and its dist."""
        make_distribution(
            site, "broken_dist", {"broken": "broken_plugin"}, {"broken_plugin.py": "1/0\n"}
        )
        with pytest.raises(PluginError) as info:
            manager.plugin_system()
        (problem,) = info.value.problems
        assert problem.startswith("plugin 'broken' (broken_plugin from distribution 'broken_dist')")
        assert "ZeroDivisionError" in problem
        assert "RESILIO_DISABLE_PLUGINS=broken" in problem

    def test_missing_plugin_module_is_named(self, site: Path) -> None:
        """An entry point whose module does not exist is reported, not a traceback."""
        make_distribution(site, "ghost_dist", {"ghost": "ghost_module_xyz"}, {})
        with pytest.raises(PluginError, match=r"plugin 'ghost'.*ModuleNotFoundError"):
            manager.catalog()

    def test_clashing_policy_type_names_both_plugins(self, site: Path) -> None:
        """A plugin registering a taken policy type name is an error naming both plugins."""
        make_distribution(
            site,
            "clash_dist",
            {"clash": "clash_plugin"},
            {
                "clash_plugin.py": """
                import resilio
                from resilio.policies.retry import Retry

                @resilio.hookimpl
                def resilio_register_policies(registry):
                    registry.add(Retry)
                """
            },
        )
        with pytest.raises(PluginError) as info:
            manager.plugin_system()
        assert info.value.problems == [
            "plugin 'clash' registers policy type 'retry', which plugin 'resilio.builtin' "
            "already registered"
        ]

    def test_clashing_operation_names(self) -> None:
        """Two plugins registering the same operation name is an error."""

        class One:
            @resilio.hookimpl
            def resilio_register_operations(self, registry: Any) -> None:
                registry.add(resilio.Operation(name="x.op", idempotent=True))

        manager.register(One(), name="one")
        manager.register(One(), name="two")
        with pytest.raises(PluginError, match=r"plugin 'two' registers operation 'x\.op'.*'one'"):
            manager.catalog()

    def test_unknown_hook_is_reported(self) -> None:
        """A hookimpl for a hook that does not exist is named in the error."""

        class Typo:
            @resilio.hookimpl
            def resilio_register_policy(self, registry: Any) -> None:
                """A misspelt hook."""

        manager.register(Typo(), name="typo")
        with pytest.raises(PluginError, match="plugin 'typo' implements unknown hook"):
            manager.catalog()

    def test_policy_class_breaking_the_convention(self) -> None:
        """A policy class without options_class is refused with a message naming the plugin."""

        class NoOptions(resilio.Policy):
            kind = "no_options"

            def make_layer(self, inner: Any, env: Any) -> Any:
                return inner

        class Bad:
            @resilio.hookimpl
            def resilio_register_policies(self, registry: Any) -> None:
                registry.add(NoOptions)

        manager.register(Bad(), name="bad")
        with pytest.raises(PluginError, match=r"plugin 'bad' registers policy class.*options"):
            manager.catalog()

    def test_plugin_raising_in_a_hook(self) -> None:
        """An exception inside a register hook is reported with the plugin and hook names."""

        class Boom:
            @resilio.hookimpl
            def resilio_register_stores(self, registry: Any) -> None:
                raise RuntimeError("no")

        manager.register(Boom(), name="boom")
        with pytest.raises(PluginError) as info:
            manager.catalog()
        assert info.value.problems == [
            "plugin 'boom' failed in resilio_register_stores: RuntimeError: no"
        ]


class TestRuntime:
    def test_classify_hook_is_used_on_failure(self, clock: FakeClock) -> None:
        """resilio_classify's first non-None answer classifies a failure (here: no retry)."""

        class Permanent:
            @resilio.hookimpl
            def resilio_classify(self, error: BaseException, context: Any) -> Any:
                if isinstance(error, KeyError):
                    return Classification(kind=ErrorKind.PERMANENT, reason="key")
                return None

        manager.register(Permanent(), name="permanent")
        calls = []

        def fail() -> None:
            calls.append(1)
            raise KeyError("k")

        pipeline = Pipeline([resilio.Retry(attempts=3)], name="p", clock=clock, telemetry=False)
        with pytest.raises(KeyError):
            pipeline.execute(fail)
        assert len(calls) == 1

    def test_event_hook_receives_events_and_errors_are_contained(self, clock: FakeClock) -> None:
        """Every resilio_event implementation sees events, even after another one raised."""
        seen: list[str] = []

        class Raises:
            @resilio.hookimpl
            def resilio_event(self, event: Any) -> None:
                raise RuntimeError("observer bug")

        class Records:
            @resilio.hookimpl
            def resilio_event(self, event: Any) -> None:
                seen.append(event.name)

        manager.register(Raises(), name="raises")
        manager.register(Records(), name="records")
        attempts = iter([ConnectionError(), None])

        def flaky() -> str:
            error = next(attempts)
            if error is not None:
                raise error
            return "ok"

        pipeline = Pipeline([resilio.Retry(attempts=2)], name="p", clock=clock, telemetry=False)
        assert pipeline.execute(flaky) == "ok"
        assert seen == ["retry.scheduled"]

    def test_no_event_hook_means_nothing_to_call(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without resilio_event implementations, emitting only loops the global listeners."""
        monkeypatch.setenv(manager.DISABLE_ENV, "customerio")  # installed plugins stay out
        manager.reset()
        manager.plugin_system()
        assert _runtime._event_impls == ()
        assert _runtime._classify_hook is None

    def test_broken_plugin_does_not_break_calls(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
    ) -> None:
        """On the call path a broken plugin is dropped and calls go on."""
        site = tmp_path / "s"
        make_distribution(site, "broken2", {"broken2": "broken2_mod"}, {"broken2_mod.py": "1/0"})
        monkeypatch.syspath_prepend(str(site))
        pipeline = Pipeline([resilio.Retry(attempts=2)], name="p", clock=clock, telemetry=False)
        with pytest.raises(ValueError, match="x"):
            pipeline.execute(_raise_value_error)
        assert _runtime._loaded is True

    def test_operation_classifier_and_idempotence(self, clock: FakeClock) -> None:
        """A registered operation's classifier applies and its idempotence fills the context."""
        seen: list[Any] = []

        def classify(error: BaseException, context: Any) -> Classification:
            seen.append(context.idempotent)
            return Classification(kind=ErrorKind.AMBIGUOUS)

        class Ops:
            @resilio.hookimpl
            def resilio_register_operations(self, registry: Any) -> None:
                registry.add(resilio.Operation(name="x.put", idempotent=True, classifier=classify))

        manager.register(Ops(), name="ops")
        calls = []

        def put() -> None:
            calls.append(1)
            raise OSError("reset")

        pipeline = Pipeline([resilio.Retry(attempts=3)], name="p", clock=clock, telemetry=False)
        with pytest.raises(OSError):
            pipeline.execute(put, context=Context("x.put"))
        assert len(calls) == 3  # AMBIGUOUS but idempotent: retried
        assert seen[0] is True

    @pytest.mark.parametrize("idempotent", [True, False])
    def test_operation_idempotence_applies_when_the_pipeline_classifier_answers(
        self, clock: FakeClock, idempotent: bool
    ) -> None:
        """The operation's idempotence reaches Retry even when the pipeline's classifier decides."""

        class Ops:
            @resilio.hookimpl
            def resilio_register_operations(self, registry: Any) -> None:
                registry.add(resilio.Operation(name="x.send", idempotent=idempotent))

        manager.register(Ops(), name="ops")
        calls = []

        def send() -> None:
            calls.append(1)
            raise OSError("reset after sending")

        pipeline = Pipeline(
            [resilio.Retry(attempts=3)],
            name="p",
            clock=clock,
            telemetry=False,
            classifier=lambda error, context: Classification(kind=ErrorKind.AMBIGUOUS),
        )
        ctx = Context("x.send")
        with pytest.raises(OSError):
            pipeline.execute(send, context=ctx)
        assert ctx.idempotent is idempotent
        assert len(calls) == (3 if idempotent else 1)

    def test_callers_idempotence_wins_over_the_operation(self, clock: FakeClock) -> None:
        """An explicit context.idempotent is kept; the operation only fills a None."""

        class Ops:
            @resilio.hookimpl
            def resilio_register_operations(self, registry: Any) -> None:
                registry.add(resilio.Operation(name="x.send", idempotent=True))

        manager.register(Ops(), name="ops")
        calls = []

        def send() -> None:
            calls.append(1)
            raise OSError("reset after sending")

        pipeline = Pipeline(
            [resilio.Retry(attempts=3)],
            name="p",
            clock=clock,
            telemetry=False,
            classifier=lambda error, context: Classification(kind=ErrorKind.AMBIGUOUS),
        )
        with pytest.raises(OSError):
            pipeline.execute(send, context=Context("x.send", idempotent=False))
        assert len(calls) == 1


class _KeyErrorIsPermanent:
    """A working plugin: KeyError is PERMANENT, and operation 'good.read' is idempotent."""

    @resilio.hookimpl
    def resilio_classify(self, error: BaseException, context: Any) -> Any:
        if isinstance(error, KeyError):
            return Classification(kind=ErrorKind.PERMANENT, reason="key")
        return None

    @resilio.hookimpl
    def resilio_register_operations(self, registry: Any) -> None:
        registry.add(resilio.Operation(name="good.read", idempotent=True))


class _RaisesInRegisterOperations:
    """A broken plugin, unrelated to the working one."""

    @resilio.hookimpl
    def resilio_register_operations(self, registry: Any) -> None:
        raise RuntimeError("plugin bug")


def _failing(calls: list[int], error: BaseException) -> Any:
    def call() -> None:
        calls.append(1)
        raise error

    return call


class TestOneBrokenPlugin:
    """A faulty plugin is dropped on its own; the other plugins keep working."""

    @pytest.fixture
    def good_and_broken(self) -> None:
        manager.register(_KeyErrorIsPermanent(), name="good")
        manager.register(_RaisesInRegisterOperations(), name="broken")

    @pytest.mark.usefixtures("good_and_broken")
    def test_other_plugins_classify_hook_still_applies(self, clock: FakeClock) -> None:
        """The good plugin's KeyError-is-PERMANENT holds: one attempt, not three."""
        calls: list[int] = []
        pipeline = Pipeline([resilio.Retry(attempts=3)], name="p", clock=clock, telemetry=False)
        with pytest.raises(KeyError):
            pipeline.execute(_failing(calls, KeyError("k")))
        assert len(calls) == 1

    @pytest.mark.usefixtures("good_and_broken")
    def test_other_plugins_operation_idempotence_still_applies(self, clock: FakeClock) -> None:
        """The good plugin's idempotent operation still lets an AMBIGUOUS failure be retried."""
        calls: list[int] = []
        pipeline = Pipeline(
            [resilio.Retry(attempts=3)],
            name="p",
            clock=clock,
            telemetry=False,
            classifier=lambda error, context: Classification(kind=ErrorKind.AMBIGUOUS),
        )
        ctx = Context("good.read")
        with pytest.raises(OSError):
            pipeline.execute(_failing(calls, OSError("reset")), context=ctx)
        assert ctx.idempotent is True
        assert len(calls) == 3

    @pytest.mark.usefixtures("good_and_broken")
    def test_strict_users_still_get_the_error_naming_the_plugin(self, write: Any) -> None:
        """plugin_system(), catalog() and load_config still raise, naming the broken plugin."""
        from resilio.config import load_config

        expected = [
            "plugin 'broken' failed in resilio_register_operations: RuntimeError: plugin bug"
        ]
        for attempt in (manager.plugin_system, manager.catalog):
            with pytest.raises(PluginError) as info:
                attempt()
            assert info.value.problems == expected
        with pytest.raises(PluginError) as info:
            load_config(write("pipelines: {}\n"), telemetry=False)
        assert info.value.problems == expected

    @pytest.mark.usefixtures("good_and_broken")
    def test_non_strict_system_lists_the_dropped_plugin(self) -> None:
        """Without strict, the system keeps the good plugin and names the dropped one."""
        system = manager.plugin_system(strict=False)
        names = [p.name for p in system.plugins]
        assert "good" in names
        assert "broken" not in names
        assert system.failed == {"broken": ("RuntimeError in resilio_register_operations",)}
        assert system.catalog.operations.provider("good.read") == "good"
        assert system.manager.get_plugin("broken") is None

    def test_dropped_plugin_loses_its_hooks_and_what_it_registered(self, clock: FakeClock) -> None:
        """A plugin failing in a later hook is dropped whole: its operation and classify go too."""

        class Half:
            @resilio.hookimpl
            def resilio_register_operations(self, registry: Any) -> None:
                registry.add(resilio.Operation(name="half.op", idempotent=True))

            @resilio.hookimpl
            def resilio_register_stores(self, registry: Any) -> None:
                registry.add("half_store", dict, options={"size": int})
                raise RuntimeError("late bug")

            @resilio.hookimpl
            def resilio_classify(self, error: BaseException, context: Any) -> Any:
                return Classification(kind=ErrorKind.PERMANENT, reason="half")

        manager.register(Half(), name="half")
        system = manager.plugin_system(strict=False)
        assert "half.op" not in system.catalog.operations
        assert "half_store" not in system.catalog.store_kinds
        assert system.catalog.store_kinds.options("half_store") is None
        classifiers = system.manager.hook.resilio_classify.get_hookimpls()
        assert "half" not in [impl.plugin_name for impl in classifiers]
        calls: list[int] = []
        pipeline = Pipeline([resilio.Retry(attempts=2)], name="p", clock=clock, telemetry=False)
        with pytest.raises(ValueError):
            pipeline.execute(_failing(calls, ValueError("v")))
        assert len(calls) == 2  # TRANSIENT by default: Half's PERMANENT answer is gone

    def test_clash_drops_the_second_plugin_and_keeps_the_first(self, clock: FakeClock) -> None:
        """Of two plugins registering one operation name, the first keeps it; the second goes."""

        class First:
            @resilio.hookimpl
            def resilio_register_operations(self, registry: Any) -> None:
                registry.add(resilio.Operation(name="x.op", idempotent=True))

        class Second:
            @resilio.hookimpl
            def resilio_register_operations(self, registry: Any) -> None:
                registry.add(resilio.Operation(name="x.op", idempotent=False))

        manager.register(First(), name="first")
        manager.register(Second(), name="second")
        system = manager.plugin_system(strict=False)
        assert system.catalog.operations.provider("x.op") == "first"
        assert system.catalog.operations.get("x.op").idempotent is True
        assert list(system.failed) == ["second"]

    def test_plugin_refused_for_a_taken_name_leaves_the_holder(
        self, site: Path, clock: FakeClock
    ) -> None:
        """A code plugin refused for an entry point's name leaves the entry point working."""
        make_distribution(
            site, "twin_dist", {"twin": "twin_ep_plugin"}, {"twin_ep_plugin.py": ACME_PLUGIN}
        )
        manager.register(_RaisesInRegisterOperations(), name="twin")
        system = manager.plugin_system(strict=False)
        assert list(system.failed) == ["twin"]
        assert system.manager.get_plugin("twin") is not None
        assert system.catalog.operations.provider("acme.ping") == "twin"
        assert [p.source for p in system.plugins if p.name == "twin"] == ["twin_ep_plugin"]
        with pytest.raises(PluginError, match="plugin 'twin' could not be registered"):
            manager.plugin_system()

    def test_plugin_taking_a_builtin_name_first_is_the_one_dropped(self) -> None:
        """Even sorted before the built-in plugin (trylast), a plugin taking 'retry' is dropped."""
        from resilio.policies.retry import Retry

        class Early:
            @resilio.hookimpl(trylast=True)
            def resilio_register_policies(self, registry: Any) -> None:
                registry.add(Retry)

        manager.register(Early(), name="early")
        system = manager.plugin_system(strict=False)
        assert list(system.failed) == ["early"]
        assert system.plugins[0].name == manager.BUILTIN
        for kind in ("retry", "circuit_breaker"):
            assert system.catalog.policy_types.provider(kind) == manager.BUILTIN
        with pytest.raises(PluginError, match=r"plugin 'early' registers policy type 'retry'"):
            manager.plugin_system()

    def test_entry_point_failing_to_import_leaves_the_others(
        self, site: Path, clock: FakeClock
    ) -> None:
        """An installed plugin that fails to import does not take an installed good one down."""
        make_distribution(site, "bad_dist", {"bad": "bad_plugin"}, {"bad_plugin.py": "1/0\n"})
        make_distribution(
            site, "acme_dist", {"acme": "acme_ep_plugin3"}, {"acme_ep_plugin3.py": ACME_PLUGIN}
        )
        pipeline = Pipeline([resilio.Retry(attempts=3)], name="p", clock=clock, telemetry=False)
        import acme_ep_plugin3  # type: ignore[import-not-found]

        calls: list[int] = []
        with pytest.raises(acme_ep_plugin3.AcmeError):
            pipeline.execute(_failing(calls, acme_ep_plugin3.AcmeError()))
        assert len(calls) == 1  # acme's classifier: PERMANENT
        assert manager.plugin_system(strict=False).failed == {
            "bad": ("ZeroDivisionError on import",)
        }


class TestSubscribe:
    def test_subscriber_sees_every_pipelines_events_until_unsubscribed(
        self, clock: FakeClock
    ) -> None:
        """resilio.plugins.subscribe sends events of every pipeline; unsubscribe stops them."""
        from resilio.events import RetryScheduled
        from resilio.plugins import subscribe

        seen: list[Any] = []
        unsubscribe = subscribe(seen.append)
        first = Pipeline([resilio.Retry(attempts=2)], name="a", clock=clock, telemetry=False)
        second = Pipeline([resilio.Retry(attempts=2)], name="b", clock=clock, telemetry=False)
        for pipeline in (first, second):
            with pytest.raises(ValueError):
                pipeline.execute(_raise_value_error)
        assert [(type(e), e.pipeline) for e in seen if isinstance(e, RetryScheduled)] == [
            (RetryScheduled, "a"),
            (RetryScheduled, "b"),
        ]
        unsubscribe()
        unsubscribe()  # a second call does nothing
        count = len(seen)
        with pytest.raises(ValueError):
            first.execute(_raise_value_error)
        assert len(seen) == count

    def test_subscriber_gets_nothing_on_first_try_success(self, clock: FakeClock) -> None:
        """A first-try success emits no event, so a subscriber is not called."""
        from resilio.plugins import subscribe

        seen: list[Any] = []
        unsubscribe = subscribe(seen.append)
        try:
            pipeline = Pipeline([resilio.Retry(attempts=2)], name="a", clock=clock, telemetry=False)
            assert pipeline.execute(lambda: 7) == 7
        finally:
            unsubscribe()
        assert seen == []


def _raise_value_error() -> None:
    raise ValueError("x")
