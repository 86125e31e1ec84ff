"""Tests of loading configurations: pipelines built, and every problem with its exact location."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import resilio
from resilio import ConfigError
from resilio.config import NotRegisteredError, load_config
from resilio.policies.retry import Retry
from resilio.policies.timeout import Timeout
from tests.config.conftest import Color, Counter, Dummy

Write = Callable[..., Path]


def problems_of(source: object, **kw: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(source, telemetry=False, **kw)  # type: ignore[arg-type]
    return info.value.problems


class TestBuilding:
    def test_spec_example_builds_pipeline_in_order(self, write: Write) -> None:
        """The issue's example builds one pipeline with the policies outermost first."""
        path = write(
            """
            version: 1
            defaults:
              retry: {attempts: 3}
            policies:
              cio: {circuit_breaker: {failure_threshold: 5, break_duration: 30s}}
            pipelines:
              orders.create:
                - timeout: 10s
                - retry:
                    attempts: 5
                    backoff: {kind: exponential, initial: 200ms, max: 10s, jitter: full}
                - circuit_breaker: {ref: cio}
                - timeout: 2s
            """
        )
        registry = load_config(path, telemetry=False)
        pipeline = registry.pipeline("orders.create")
        assert isinstance(pipeline, resilio.Pipeline)
        kinds = [p.kind for p in pipeline.policies]
        assert kinds == ["timeout", "retry", "circuit_breaker", "timeout"]
        outer, retry, breaker, inner = pipeline.policies
        assert outer.options.seconds == 10.0
        assert inner.options.seconds == 2.0
        assert retry.options.attempts == 5
        assert retry.options.backoff == resilio.backoff.Exponential(initial=0.2, max=10.0)
        assert breaker is registry.policy("cio")
        assert breaker.name == "cio"
        assert breaker.options.break_duration == 30.0

    def test_defaults_merge_and_entry_wins(self) -> None:
        """defaults are merged into every policy of that type; the entry's own values win."""
        registry = load_config(
            {
                "defaults": {"retry": {"attempts": 4, "max_delay": "5s"}},
                "pipelines": {"a": [{"retry": {"attempts": 2}}], "b": [{"retry": None}]},
            },
            telemetry=False,
        )
        a = registry.pipeline("a").policies[0]
        b = registry.pipeline("b").policies[0]
        assert (a.options.attempts, a.options.max_delay) == (2, 5.0)
        assert (b.options.attempts, b.options.max_delay) == (4, 5.0)

    def test_env_references_are_substituted(self, write: Write) -> None:
        """${VAR} and ${VAR:-default} are replaced, and a plain scalar keeps its YAML type."""
        path = write(
            """
            pipelines:
              p:
                - retry:
                    attempts: ${ATTEMPTS}
                    max_delay: ${MAX_DELAY:-2s}
            """
        )
        registry = load_config(path, telemetry=False, environ={"ATTEMPTS": "7"})
        retry = registry.pipeline("p").policies[0]
        assert (retry.options.attempts, retry.options.max_delay) == (7, 2.0)

    def test_policy_name_key(self) -> None:
        """A 'name' key names the policy instead of becoming an option."""
        registry = load_config(
            {"pipelines": {"p": [{"timeout": {"seconds": 1, "name": "overall"}}]}}, telemetry=False
        )
        assert registry.pipeline("p").policies[0].name == "overall"

    def test_dummy_policy_types_convert(self, dummy_plugin: object) -> None:
        """Every supported option type converts: int, duration, bool, literal, tuple, enum."""
        registry = load_config(
            """
            pipelines:
              p:
                - dummy: {count: 2, wait: 1.5m, enabled: false, mode: slow, label: x,
                          tags: [a, b], color: blue}
            """,
            telemetry=False,
        )
        options = registry.pipeline("p").policies[0].options
        assert options.count == 2
        assert options.wait == 90.0
        assert options.enabled is False
        assert options.mode == "slow"
        assert options.tags == ("a", "b")
        assert options.color is Color.BLUE
        assert isinstance(registry.pipeline("p").policies[0], Dummy)

    def test_unknown_pipeline_suggests(self) -> None:
        """An unknown pipeline name is a NotRegisteredError with close matches."""
        registry = load_config({"pipelines": {"orders.create": []}}, telemetry=False)
        with pytest.raises(NotRegisteredError, match=r"did you mean 'orders.create'\?"):
            registry.pipeline("orders.creat")


def test_shared_ref_is_one_object_in_two_pipelines(dummy_plugin: object) -> None:
    """Two pipelines referring to one shared policy get the same instance (and its state)."""
    registry = load_config(
        {
            "policies": {"c": {"counter": {"limit": 2}}},
            "pipelines": {"a": [{"counter": {"ref": "c"}}], "b": [{"counter": {"ref": "c"}}]},
        },
        telemetry=False,
    )
    a = registry.pipeline("a").policies[0]
    b = registry.pipeline("b").policies[0]
    assert a is b is registry.policy("c")
    assert isinstance(a, Counter)
    registry.pipeline("a").execute(lambda: None)
    registry.pipeline("b").execute(lambda: None)
    assert a.calls == 2


class TestProblems:
    def test_every_problem_is_reported_at_once_with_locations(self, write: Write) -> None:
        """All mistakes of a file come in one ConfigError, each with line, column and key path."""
        path = write(
            """
            version: 1
            pipelines:
              orders.create:
                - timeout: 10s
                - retry: {attempts: three}
                - retyr: {}
                - retry: {atempts: 2}
                - timeout: soon
            """
        )
        problems = problems_of(path)
        assert problems == [
            f"{path}:5:25: pipelines.orders.create[1].retry.attempts: "
            "expected an integer, found 'three'",
            f"{path}:6:7: pipelines.orders.create[2].retyr: "
            "unknown policy type 'retyr' (did you mean 'retry'?)",
            f"{path}:7:15: pipelines.orders.create[3].retry.atempts: "
            "unknown option 'atempts' (did you mean 'attempts'?)",
            f"{path}:8:16: pipelines.orders.create[4].timeout.seconds: "
            "expected a duration like 200ms, 10s, 5m, 1h or a number of seconds, found 'soon'",
        ]

    def test_str_lists_every_problem(self, write: Write) -> None:
        """str(ConfigError) has a header line and one line per problem."""
        path = write("pipelines:\n  p:\n    - retry: {attempts: 0}\n    - nope: 1\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, telemetry=False)
        lines = str(info.value).splitlines()
        assert lines[0] == f"2 problems in {path}:"
        assert len(lines) == 3

    def test_validator_message_points_at_the_field(self, write: Write) -> None:
        """A policy's own validator error is placed at the option it names."""
        path = write("pipelines:\n  p:\n    - retry: {attempts: 0}\n")
        assert problems_of(path) == [
            f"{path}:3:25: pipelines.p[0].retry.attempts: retry attempts must be an integer "
            ">= 1, got 0"
        ]

    def test_missing_env_variable_is_named_with_its_location(self, write: Write) -> None:
        """A missing ${VAR} without default names the variable and where it is, only once."""
        path = write("pipelines:\n  p:\n    - timeout:\n        seconds: ${NOT_SET_VAR}\n")
        assert problems_of(path, environ={}) == [
            f"{path}:4:18: pipelines.p[0].timeout.seconds: environment variable NOT_SET_VAR "
            "is not set (use ${NOT_SET_VAR:-default} for a default)",
        ]

    def test_duplicate_keys_are_rejected(self, write: Write) -> None:
        """A key given twice in one mapping is an error at the second one."""
        path = write("pipelines:\n  p: []\n  p: []\n")
        assert problems_of(path) == [
            f"{path}:3:3: pipelines.p: duplicate key 'p' (first at line 2)"
        ]

    def test_invalid_yaml_has_a_location(self, write: Write) -> None:
        """A YAML syntax error is reported with its line and column."""
        path = write("pipelines:\n  p: [\n")
        (problem,) = problems_of(path)
        assert problem.startswith(f"{path}:3:1: (top level): invalid YAML:")

    def test_unknown_section_and_version(self, write: Write) -> None:
        """Unknown top-level keys and a wrong version are reported, in file order."""
        path = write("version: 2\npipeline: {}\n")
        assert problems_of(path) == [
            f"{path}:1:1: (top level): missing section 'pipelines'",
            f"{path}:1:10: version: expected 1, found 2",
            f"{path}:2:1: pipeline: unknown section 'pipeline' (did you mean 'pipelines'?)",
        ]

    def test_wrong_ref_kind_and_unknown_ref(self, write: Write) -> None:
        """A ref must name a shared policy of the same type."""
        path = write(
            """
            policies:
              t: {timeout: 1s}
            pipelines:
              p:
                - retry: {ref: t}
                - timeout: {ref: tt}
                - timeout: {ref: t, seconds: 2}
            """
        )
        assert problems_of(path) == [
            f"{path}:5:20: pipelines.p[0].retry.ref: shared policy 't' is a timeout, not a retry",
            f"{path}:6:22: pipelines.p[1].timeout.ref: unknown shared policy 'tt' "
            "(did you mean 't'?) (see 'policies')",
            f"{path}:7:25: pipelines.p[2].timeout.seconds: a {{ref: ...}} entry takes no other "
            "option, found 'seconds'; configure the shared policy under 'policies'",
        ]

    def test_entry_shape_errors(self, write: Write) -> None:
        """An entry must be a one-key mapping; a pipeline must be a list."""
        path = write("pipelines:\n  p:\n    - retry\n    - {retry: {}, timeout: 1}\n  q: 3\n")
        assert problems_of(path) == [
            f"{path}:3:7: pipelines.p[0]: expected a mapping with one policy type "
            "(like 'retry: {attempts: 3}'), found 'retry'",
            f"{path}:4:7: pipelines.p[1]: expected a mapping with one policy type "
            "(like 'retry: {attempts: 3}'), found 2 keys",
            f"{path}:5:6: pipelines.q: expected a list of policies, found 3",
        ]

    def test_defaults_errors_point_at_defaults(self, write: Write) -> None:
        """A bad value merged from defaults is reported once, where it is in defaults."""
        path = write(
            """
            defaults:
              retry: {attempts: x}
            pipelines:
              a: [{retry: {}}]
              b: [{retry: {}}]
            """
        )
        assert problems_of(path) == [
            f"{path}:2:21: defaults.retry.attempts: expected an integer, found 'x'"
        ]

    def test_unknown_store_and_kind(self, write: Write) -> None:
        """A store of unknown kind, and a policy naming an unknown store, are reported."""
        path = write(
            """
            stores:
              mem: {kind: memroy}
            pipelines:
              p:
                - circuit_breaker: {store: redis}
            """
        )
        problems = problems_of(path)
        assert problems[0].startswith(
            f"{path}:2:15: stores.mem.kind: expected a store kind (memory"
        )
        assert problems[0].endswith("found 'memroy' (did you mean 'memory'?)")
        assert problems[1] == (
            f"{path}:5:32: pipelines.p[0].circuit_breaker.store: unknown store 'redis' "
            "(see 'stores')"
        )

    def test_dict_source_has_key_paths(self) -> None:
        """A dict configuration reports key paths without line numbers."""
        assert problems_of({"pipelines": {"p": [{"retry": {"attempts": "x"}}]}}) == [
            "<dict>: pipelines.p[0].retry.attempts: expected an integer, found 'x'"
        ]

    def test_missing_file(self, tmp_path: Path) -> None:
        """A file that cannot be read is a ConfigError naming it."""
        (problem,) = problems_of(tmp_path / "nope.yaml")
        assert problem.startswith(f"{tmp_path / 'nope.yaml'}: (top level): cannot read the file")

    def test_required_option_missing(self, dummy_plugin: object) -> None:
        """A required option that is missing is reported."""
        assert problems_of({"pipelines": {"p": [{"counter": {}}]}}) == [
            "<dict>: pipelines.p[0].counter: missing required option 'limit'"
        ]


class TestStores:
    def test_memory_store_is_shared_by_name(self) -> None:
        """Two breakers naming one memory store share the one store object."""
        registry = load_config(
            {
                "stores": {"local": {"kind": "memory"}},
                "pipelines": {
                    "a": [{"circuit_breaker": {"store": "local"}}],
                    "b": [{"circuit_breaker": {"store": "local"}}],
                },
            },
            telemetry=False,
        )
        a = registry.pipeline("a").policies[0].options.store
        b = registry.pipeline("b").policies[0].options.store
        assert a is b
        assert a is registry.store("local")
        assert type(a).__name__ == "MemoryStore"

    def test_sqlite_store_kind(self, tmp_path: Path) -> None:
        """A store kind the stores package registers (sqlite) is declarable and referenced."""
        registry = load_config(
            {
                "stores": {"db": {"kind": "sqlite", "path": str(tmp_path / "s.sqlite3")}},
                "pipelines": {"a": [{"circuit_breaker": {"store": "db"}}]},
            },
            telemetry=False,
        )
        assert registry.pipeline("a").policies[0].options.store is registry.store("db")

    def test_store_options_are_checked_at_their_keys(self, write: Write) -> None:
        """Unknown and malformed store options are problems at their own keys, with hints."""
        path = write(
            """
            stores:
              m: {kind: memory, size: 1}
              db: {kind: sqlite, pth: x.db, busy_timeout: soon}
            pipelines: {}
            """
        )
        assert problems_of(path) == [
            f"{path}:2:21: stores.m.size: unknown option 'size'; it takes none",
            f"{path}:3:22: stores.db.pth: unknown option 'pth' (did you mean 'path'?)",
            f"{path}:3:47: stores.db.busy_timeout: expected a duration like 200ms, 10s, 5m, 1h "
            "or a number of seconds, found 'soon'",
        ]

    def test_store_durations_take_units(self, tmp_path: Path) -> None:
        """A store's duration options accept units like the policies' do."""
        registry = load_config(
            {
                "stores": {
                    "db": {"kind": "sqlite", "path": str(tmp_path / "s.db"), "busy_timeout": "2s"}
                },
                "pipelines": {},
            },
            telemetry=False,
        )
        assert registry.store("db")._busy_ms == 2000

    def test_store_factory_refusal_is_reported(self) -> None:
        """A store factory's own refusal is a problem at the store's path."""
        problems = problems_of({"stores": {"r": {"kind": "redis"}}, "pipelines": {}})
        assert problems == [
            "<dict>: stores.r: cannot create the redis store: store (kind redis): "
            "missing option 'url'"
        ]


def test_retry_budget_options_are_checked_where_they_are(write: Write) -> None:
    """Mistakes inside a retry budget mapping point at the budget's own keys."""
    path = write(
        """
        pipelines:
          p:
            - retry:
                budget: {ratoi: 0.2, window: 10x}
        """
    )
    assert problems_of(path) == [
        f"{path}:4:18: pipelines.p[0].retry.budget.ratoi: unknown option 'ratoi' "
        "(did you mean 'ratio'?)",
        f"{path}:4:38: pipelines.p[0].retry.budget.window: expected a duration like 200ms, "
        "10s, 5m, 1h or a number of seconds, found '10x'",
    ]


def test_retry_and_timeout_types() -> None:
    """The built-in classes are what the YAML names map to."""
    registry = load_config({"pipelines": {"p": [{"timeout": 1}, {"retry": {}}]}}, telemetry=False)
    assert [type(p) for p in registry.pipeline("p").policies] == [Timeout, Retry]


def test_full_issue_example_and_outbox(write: Write, tmp_path: Path) -> None:
    """The complete example of the issue builds, and enqueue: outbox refers to the outbox."""
    path = write(
        f"""
        version: 1
        defaults:
          retry: {{attempts: 3}}
        outbox: {{kind: sqlite, path: {tmp_path / "outbox.sqlite3"}}}
        policies:
          cio: {{circuit_breaker: {{failure_threshold: 5, break_duration: 30s}}}}
        pipelines:
          orders.create:
            - fallback: {{value: null}}
            - timeout: 10s
            - retry: {{attempts: 5, backoff: {{kind: exponential, initial: 200ms, max: 10s}}}}
            - circuit_breaker: {{ref: cio}}
            - rate_limiter: {{rate: 100, per: 1s}}
            - bulkhead: {{max_concurrent: 10, max_queued: 100}}
            - timeout: 2s
          orders.queue:
            - fallback: {{enqueue: outbox}}
        """
    )
    registry = load_config(path, telemetry=False)
    policies = registry.pipeline("orders.create").policies
    assert [p.kind for p in policies] == [
        "fallback",
        "timeout",
        "retry",
        "circuit_breaker",
        "rate_limiter",
        "bulkhead",
        "timeout",
    ]
    assert policies[0].options.value is None
    assert (policies[4].options.rate, policies[4].options.per) == (100.0, 1.0)
    assert (policies[5].options.max_concurrent, policies[5].options.max_queued) == (10, 100)
    assert registry.pipeline("orders.queue").policies[0].options.enqueue is registry.outbox


def test_enqueue_without_outbox_section() -> None:
    """enqueue: outbox without an outbox section is a precise problem."""
    assert problems_of({"pipelines": {"p": [{"fallback": {"enqueue": "outbox"}}]}}) == [
        "<dict>: pipelines.p[0].fallback.enqueue: 'outbox' refers to the outbox section, "
        "which is missing"
    ]


def test_outbox_name_null_is_a_problem(tmp_path: Path) -> None:
    """outbox.name: null is reported, not an outbox labelled None in metrics and health."""
    path = tmp_path / "o.sqlite3"
    source = {"outbox": {"kind": "sqlite", "path": str(path), "name": None}, "pipelines": {}}
    [problem] = problems_of(source)
    assert problem == (
        "<dict>: outbox: cannot create the outbox: outbox name must be a non-empty string, got None"
    )


class TestPipelineOptions:
    def test_classifier_and_clock_reach_every_pipeline(
        self, clock: resilio.testing.FakeClock
    ) -> None:
        """load_config(classifier=...) classifies in every pipeline it builds."""
        permanent = resilio.Classification(kind=resilio.ErrorKind.PERMANENT, reason="mine")
        registry = load_config(
            {"pipelines": {"a": [{"retry": {"attempts": 3}}], "b": [{"retry": {"attempts": 3}}]}},
            telemetry=False,
            clock=clock,
            classifier=lambda error, context: permanent,
        )
        for name in ("a", "b"):
            pipeline = registry.pipeline(name)
            calls: list[int] = []
            with pytest.raises(ConnectionError):
                pipeline.execute(_fail_counting, calls)
            assert len(calls) == 1  # the classifier said PERMANENT: not retried
            assert pipeline.clock is clock

    def test_tracer_provider_reaches_every_pipeline(self) -> None:
        """load_config(tracer_provider=...) makes every pipeline trace into that provider."""
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        registry = load_config(
            {"pipelines": {"a": [{"timeout": "1s"}]}},
            tracer_provider=provider,
            trace_attempts=True,
        )
        assert registry.pipeline("a").execute(lambda: 5) == 5
        assert [span.name for span in exporter.get_finished_spans()] == [
            "resilio a attempt",
            "resilio a",
        ]

    def test_pipeline_factory_builds_each_pipeline(self) -> None:
        """pipeline_factory(name, policies) builds every pipeline, also on reload."""
        built: list[tuple[str, list[str]]] = []

        def factory(name: str, policies: object) -> resilio.Pipeline:
            built.append((name, [p.kind for p in policies]))  # type: ignore[attr-defined]
            return resilio.Pipeline(list(policies), name=name, telemetry=False)  # type: ignore[call-overload]

        registry = load_config(
            {"pipelines": {"a": [{"timeout": "1s"}, {"retry": {}}]}}, pipeline_factory=factory
        )
        assert built == [("a", ["timeout", "retry"])]
        assert registry.pipeline("a").policies[0].kind == "timeout"
        registry.reload({"pipelines": {"a": [{"timeout": "2s"}]}})
        assert built[-1] == ("a", ["timeout"])

    def test_pipeline_factory_excludes_pipeline_options(self) -> None:
        """Combining pipeline_factory with a pipeline option is a TypeError naming the option."""
        with pytest.raises(TypeError, match="do not also give telemetry, trace_attempts"):
            load_config(
                {"pipelines": {}},
                pipeline_factory=lambda name, policies: resilio.Pipeline(policies, name=name),
                telemetry=False,
                trace_attempts=True,
            )

    def test_pipeline_factory_must_return_a_pipeline(self) -> None:
        """A factory returning something else is reported at the pipeline's key path."""
        with pytest.raises(ConfigError) as info:
            load_config({"pipelines": {"a": []}}, pipeline_factory=lambda name, policies: [])
        assert info.value.problems == [
            "<dict>: pipelines.a: pipeline_factory returned list, not a Pipeline"
        ]


def _fail_counting(calls: list[int]) -> None:
    calls.append(1)
    raise ConnectionError("down")


class TestFallbackOn:
    def test_on_key_in_a_flow_mapping(self, write: Write) -> None:
        """An unquoted `on:` key is the option, not the boolean true."""
        path = write(
            "pipelines:\n  p:\n    - fallback: {value: 1, on: [transient, 'builtins:KeyError']}\n"
        )
        policy = load_config(path, telemetry=False).pipeline("p").policies[0]
        assert policy.options.on == (resilio.ErrorKind.TRANSIENT, KeyError)

    def test_misspelt_kind_names_the_entry_and_suggests(self, write: Write) -> None:
        """A wrong `on` entry is reported at its index with what is accepted and a suggestion."""
        path = write("pipelines:\n  p:\n    - fallback: {value: 1, on: [permanent, transiant]}\n")
        assert problems_of(path) == [
            f"{path}:3:44: pipelines.p[0].fallback.on[1]: expected an error kind (transient, "
            "ambiguous, throttled, permanent) or an exception type path like "
            "'builtins:ConnectionError', found 'transiant' (did you mean 'transient'?)"
        ]

    def test_misspelt_kind_as_a_single_value(self) -> None:
        """`on: <kind>` without a list gets the same message at the option."""
        assert problems_of(
            {"pipelines": {"p": [{"fallback": {"value": 1, "on": "trottled"}}]}}
        ) == [
            "<dict>: pipelines.p[0].fallback.on: expected an error kind (transient, ambiguous, "
            "throttled, permanent) or an exception type path like 'builtins:ConnectionError', "
            "found 'trottled' (did you mean 'throttled'?)"
        ]

    def test_bad_exception_path_says_why(self) -> None:
        """An import path that does not import is reported with the import problem."""
        (problem,) = problems_of(
            {"pipelines": {"p": [{"fallback": {"value": 1, "on": ["builtins:ConectionError"]}}]}}
        )
        assert problem.startswith(
            "<dict>: pipelines.p[0].fallback.on[0]: cannot import 'builtins:ConectionError'"
        )


class TestEnvironmentValues:
    def test_unquoted_reference_in_a_flow_mapping_is_an_integer(self, write: Write) -> None:
        """`retry: {attempts: ${A:-3}}` is valid YAML and gives the integer."""
        path = write("pipelines:\n  p:\n    - retry: {attempts: ${A:-3}}\n")
        assert (
            load_config(path, telemetry=False, environ={"A": "4"})
            .pipeline("p")
            .policies[0]
            .options.attempts
            == 4
        )
        assert (
            load_config(path, telemetry=False, environ={})
            .pipeline("p")
            .policies[0]
            .options.attempts
            == 3
        )

    def test_quoted_whole_reference_takes_the_option_type(self, write: Write) -> None:
        """A quoted "${VAR}" is converted for non-string options and kept for string ones."""
        path = write(
            """
            pipelines:
              p:
                - fallback: {value: "${V}", on: ["${K}"]}
                - retry: {attempts: "${A:-3}", retry_ambiguous: "${R}"}
                - timeout: "${T}"
                - circuit_breaker: {failure_rate: "${F}", name: "${N}"}
            """
        )
        env = {"V": "0x10", "K": "throttled", "R": "TRUE", "T": "1.5", "F": "0.5", "N": "42"}
        fallback, retry, timeout, breaker = (
            load_config(path, telemetry=False, environ=env).pipeline("p").policies
        )
        assert fallback.options.value == 16
        assert fallback.options.on == (resilio.ErrorKind.THROTTLED,)
        assert retry.options.attempts == 3
        assert retry.options.retry_ambiguous is True
        assert timeout.options.seconds == 1.5
        assert breaker.options.failure_rate == 0.5
        assert breaker.name == "42"
        assert type(breaker.name) is str

    def test_quoted_reference_with_a_wrong_value(self, write: Write) -> None:
        """A quoted reference whose value is not an integer says what it found."""
        path = write('pipelines:\n  p:\n    - retry: {attempts: "${A}"}\n')
        assert problems_of(path, environ={"A": "three"}) == [
            f"{path}:3:25: pipelines.p[0].retry.attempts: expected an integer, found 'three'"
        ]

    def test_missing_variable_for_a_scalar_entry_is_one_problem(self, write: Write) -> None:
        """`- timeout: ${T}` with T unset reports only the variable, not a missing option."""
        path = write('pipelines:\n  p:\n    - timeout: ${T}\n    - retry: "${A}"\n')
        assert problems_of(path, environ={}) == [
            f"{path}:3:16: pipelines.p[0].timeout: environment variable T is not set "
            "(use ${T:-default} for a default)",
            f"{path}:4:14: pipelines.p[1].retry: environment variable A is not set "
            "(use ${A:-default} for a default)",
        ]

    def test_missing_variable_keeps_unknown_key_problem(self, write: Write) -> None:
        """An unknown option whose value is an unset variable is still reported as unknown."""
        path = write("pipelines:\n  p:\n    - retry: {atempts: ${A}}\n")
        problems = problems_of(path, environ={})
        assert len(problems) == 2
        assert "3:15: pipelines.p[0].retry.atempts: unknown option 'atempts'" in problems[0]
        assert "3:24: pipelines.p[0].retry.atempts: environment variable A" in problems[1]


def test_problems_are_listed_in_file_order(write: Write) -> None:
    """Problems found by different checks (environment, types, names) come out by line."""
    path = write(
        "pipelines:\n"
        "  p:\n"
        "    - retry: {attempts: three}\n"
        "    - timeout: ${UNSET}\n"
        "    - retyr: {}\n"
    )
    lines = [int(problem.split(":")[1]) for problem in problems_of(path, environ={})]
    assert lines == [3, 4, 5]


class TestScalarForms:
    def test_fallback_null_is_value_null(self, write: Write) -> None:
        """`- fallback: null` (and `- fallback:`) means `value: null`."""
        path = write("pipelines:\n  p:\n    - fallback: null\n    - fallback:\n")
        registry = load_config(path, telemetry=False)
        for policy in registry.pipeline("p").policies:
            assert policy.options.value is None
        assert registry.pipeline("p").execute(lambda: 1 / 0) is None

    def test_empty_retry_still_means_defaults(self) -> None:
        """`- retry:` (null) keeps meaning all defaults."""
        registry = load_config({"pipelines": {"p": [{"retry": None}]}}, telemetry=False)
        assert registry.pipeline("p").policies[0].options.attempts == 3

    def test_empty_timeout_still_reports_the_required_option(self) -> None:
        """`- timeout:` is still a missing required option, not a null one."""
        assert problems_of({"pipelines": {"p": [{"timeout": None}]}}) == [
            "<dict>: pipelines.p[0].timeout: missing required option 'seconds'"
        ]


class TestTextOrPath:
    def test_one_line_yaml_text(self) -> None:
        """A one-line string with 'key: value' is YAML text, not a file name."""
        registry = load_config("pipelines: {a: [retry: 3]}", telemetry=False)
        assert registry.pipeline("a").policies[0].options.attempts == 3

    def test_missing_file_name_string_hints(self) -> None:
        """A string read as a file name that does not exist says how YAML text is told apart."""
        (problem,) = problems_of("pipelines-a.yaml")
        assert problem.startswith("pipelines-a.yaml: (top level): cannot read the file")
        assert "YAML text needs a newline or a 'key: value' mapping" in problem
