"""Operations, the plugin hooks, default pipelines and configuration overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from customerio import CustomerIOException

import resilio
from resilio import Context
from resilio.classify import ErrorKind
from resilio.plugins import _runtime, manager
from resilio.testing import FakeClock
from resilio_customerio import ServiceUnavailable
from resilio_customerio._pipelines import default_config
from resilio_customerio.client import ensure_plugin
from resilio_customerio.operations import (
    APP_OPERATIONS,
    SPECS,
    TRACK_OPERATIONS,
    operations,
    replay_client,
    set_replay_client,
)
from resilio_customerio.testing import Simulator

from ._adapter import make, make_async


class TestOperations:
    def test_every_client_method_is_an_operation(self) -> None:
        """Every Track method and App send of the client is registered as customerio.<name>."""
        assert TRACK_OPERATIONS == (
            "identify", "track", "track_anonymous", "pageview", "backfill", "delete",
            "add_device", "delete_device", "suppress", "unsuppress", "merge_customers", "batch",
        )  # fmt: skip
        assert set(APP_OPERATIONS) == {
            "send_email", "send_push", "send_sms", "send_whatsapp", "send_inbox_message",
            "send_in_app",
        }  # fmt: skip

    def test_idempotency(self) -> None:
        """Track operations are idempotent; transactional sends are not."""
        by_name = {op.name: op for op in operations()}
        assert all(by_name[f"customerio.{m}"].idempotent for m in TRACK_OPERATIONS)
        assert not any(by_name[f"customerio.{m}"].idempotent for m in APP_OPERATIONS)
        assert all(op.pipeline_name == op.name for op in by_name.values())

    def test_registered_through_the_hook(self) -> None:
        """The plugin registers the operations in resilio's catalog."""
        ensure_plugin()
        registered = manager.catalog().operations
        assert registered.get("customerio.track").idempotent is True
        assert registered.get("customerio.send_email").idempotent is False

    def test_classify_hook(self) -> None:
        """resilio_classify claims raw client errors inside customerio operations only."""
        ensure_plugin()
        raw = CustomerIOException("503: https://x/api/v1/customers/1 {} ")
        inside = _runtime.classify_with_plugins(raw, Context("customerio.identify"))
        assert inside is not None
        assert inside.kind is ErrorKind.TRANSIENT
        import requests

        outside = _runtime.classify_with_plugins(requests.ReadTimeout(), Context("other.op"))
        assert outside is None

    def test_replay_handlers_use_the_registered_client(
        self, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """Module-level handlers replay with the adapter registered for replays."""
        set_replay_client(None)
        handler = {op.name: op for op in operations()}["customerio.identify"].handler
        assert handler is not None
        with pytest.raises(RuntimeError, match="no ResilientCustomerIO"):
            handler({"id": "9", "attributes": {"a": 1}})
        with make(cio_simulator, clock, replay=True) as cio:
            assert replay_client() is cio
            handler({"id": "9", "attributes": {"a": 1}})
        assert cio_simulator.customer("9") == {"a": 1}
        with pytest.raises(RuntimeError):
            replay_client()

    def test_hand_made_payloads(self, cio_simulator: Simulator, clock: FakeClock) -> None:
        """A minimal hand-made payload replays; one missing a field is PERMANENT, nothing sent."""
        from resilio_customerio import InvalidRequest

        with make(cio_simulator, clock) as cio:
            handler = cio.operation("customerio.track").handler
            assert handler is not None
            handler({"customer_id": "42", "name": "signed_up"})
            with pytest.raises(InvalidRequest, match="does not fit"):
                handler({"name": "no customer"})
        assert [e["name"] for e in cio_simulator.events("42")] == ["signed_up"]
        assert len(cio_simulator.requests) == 1


class TestDefaults:
    def test_every_operation_has_a_default_pipeline(self) -> None:
        """pipelines.yaml defines a pipeline for every operation, in the documented order."""
        pipelines = default_config()["pipelines"]
        assert set(pipelines) == set(SPECS)
        kinds = [next(iter(entry)) for entry in pipelines["customerio.track"]]
        assert kinds == [
            "timeout", "retry", "circuit_breaker", "rate_limiter", "bulkhead", "timeout",
        ]  # fmt: skip

    def test_track_operations_share_one_breaker(
        self, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """Every Track pipeline holds the same breaker object; sends have their own."""
        with make(cio_simulator, clock) as cio:
            breakers = {
                name: next(p for p in cio.pipeline(name).policies if p.kind == "circuit_breaker")
                for name in SPECS
            }
        track = {id(breakers[f"customerio.{m}"]) for m in TRACK_OPERATIONS}
        app = {id(breakers[f"customerio.{m}"]) for m in APP_OPERATIONS}
        assert len(track) == 1
        assert len(app) == 1
        assert track != app


def default_yaml_lines() -> list[str]:
    """The lines of the packaged pipelines.yaml."""
    from importlib import resources

    return resources.files("resilio_customerio").joinpath("pipelines.yaml").read_text().splitlines()


class TestOverrides:
    def test_dict_config_is_merged_over_defaults(
        self, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """A pipeline given in config replaces the default of that name only."""
        config = {"pipelines": {"customerio.identify": [{"retry": {"attempts": 2}}]}}
        cio_simulator.faults.add("*", status=500)
        with make(cio_simulator, clock, config=config) as cio:
            with pytest.raises(ServiceUnavailable):
                cio.identify("1", a=1)
            assert len(cio_simulator.requests) == 2
            with pytest.raises(ServiceUnavailable):
                cio.track("1", "e")
            assert len(cio_simulator.requests) == 2 + 5

    def test_yaml_file_config(
        self, cio_simulator: Simulator, clock: FakeClock, tmp_path: Path
    ) -> None:
        """A YAML file can retune a shared policy for every pipeline that refers to it."""
        path = tmp_path / "cio.yaml"
        path.write_text(
            "policies:\n"
            "  customerio.track.breaker:\n"
            "    circuit_breaker: {failure_threshold: 2, break_duration: 60}\n"
        )
        cio_simulator.faults.add("*", status=503)
        with (
            make(cio_simulator, clock, config=str(path)) as cio,
            pytest.raises(resilio.ResilioError),
        ):
            cio.identify("1", a=1)
        assert len(cio_simulator.requests) == 2  # the breaker opened after two failures

    def test_invalid_config_lists_problems(
        self, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """An invalid override is a ConfigError naming where it is."""
        config = {"pipelines": {"customerio.track": [{"retry": {"attempts": 0}}]}}
        with pytest.raises(resilio.ConfigError, match=r"customerio\.track"):
            make(cio_simulator, clock, config=config)

    def test_problem_in_a_yaml_file_names_its_file_line_and_column(
        self, cio_simulator: Simulator, clock: FakeClock, tmp_path: Path
    ) -> None:
        """A bad value in the user's file is reported at its place in that file."""
        path = tmp_path / "bad.yaml"
        path.write_text(
            "# my tuning\n"
            "version: 1\n"
            "\n"
            "pipelines:\n"
            "  customerio.identify:\n"
            "    - timeout: {seconds: 60}\n"
            "    - retry:\n"
            "        attempts: eight\n"
        )
        with pytest.raises(resilio.ConfigError) as info:
            make(cio_simulator, clock, config=str(path))
        assert info.value.problems == [
            f"{path}:8:19: pipelines.customerio.identify[1].retry.attempts: "
            "expected an integer, found 'eight'"
        ]
        assert str(info.value).startswith(f"1 problem in {path}:")

    def test_problem_in_a_default_entry_points_at_the_packaged_defaults(
        self, cio_simulator: Simulator, clock: FakeClock, tmp_path: Path
    ) -> None:
        """A default pipeline broken by an override is located in pipelines.yaml, not the file."""
        path = tmp_path / "swap.yaml"
        path.write_text("policies:\n  customerio.track.breaker:\n    rate_limiter: {rate: 5}\n")
        with pytest.raises(resilio.ConfigError) as info:
            make(cio_simulator, clock, config=str(path))
        identify = [p for p in info.value.problems if "customerio.identify[" in p]
        line = next(
            n
            for n, text in enumerate(default_yaml_lines(), 1)
            if "circuit_breaker: {ref: customerio.track.breaker}" in text
        )
        assert identify == [
            f"resilio_customerio/pipelines.yaml:{line}:30: "
            "pipelines.customerio.identify[2].circuit_breaker.ref: shared policy "
            "'customerio.track.breaker' is a rate_limiter, not a circuit_breaker"
        ]

    @pytest.mark.parametrize(
        ("value", "error", "message"),
        [
            (-1, ValueError, "timeout= must be a finite number of seconds above 0, got -1"),
            (0, ValueError, "timeout= must be a finite number of seconds above 0, got 0"),
            (float("nan"), ValueError, "above 0, got nan"),
            (float("inf"), ValueError, "above 0, got inf"),
            ("abc", TypeError, "timeout= must be a number of seconds, got str"),
            (True, TypeError, "timeout= must be a number of seconds, got bool"),
        ],
    )
    def test_invalid_timeout_is_refused_at_construction(
        self,
        cio_simulator: Simulator,
        clock: FakeClock,
        value: object,
        error: type[Exception],
        message: str,
    ) -> None:
        """A timeout that is not a finite number of seconds above 0 raises, naming timeout=."""
        with pytest.raises(error) as info:
            make(cio_simulator, clock, timeout=value)
        assert message in str(info.value)
        assert cio_simulator.requests == []

    def test_invalid_timeout_is_refused_by_the_async_adapter(
        self, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """The async adapter checks timeout= the same way."""
        with pytest.raises(ValueError, match=r"timeout= must be a finite number"):
            make_async(cio_simulator, clock, timeout=0)

    def test_invalid_pool_size_is_refused(self, cio_simulator: Simulator, clock: FakeClock) -> None:
        """pool_size= below 1 raises naming it."""
        with pytest.raises(ValueError, match=r"pool_size= must be at least 1, got 0"):
            make(cio_simulator, clock, pool_size=0)

    def test_code_pipelines_win(self, cio_simulator: Simulator, clock: FakeClock) -> None:
        """pipelines= replaces a configured pipeline with policies given in code."""
        cio_simulator.faults.add("*", status=500)
        with (
            make(cio_simulator, clock, pipelines={"customerio.delete": []}) as cio,
            pytest.raises(ServiceUnavailable),
        ):
            cio.delete("1")
        assert len(cio_simulator.requests) == 1

    @pytest.mark.redis
    def test_shared_rate_limit_through_redis(
        self, cio_simulator: Simulator, clock: FakeClock, redis_url: str
    ) -> None:
        """The stores section can put the Track rate limiter's state in Redis."""
        import redis

        config = {
            "stores": {"shared": {"kind": "redis", "url": redis_url}},
            "policies": {
                "customerio.track.rate": {
                    "rate_limiter": {"rate": 100, "per": 1, "max_wait": 5, "store": "shared"}
                }
            },
        }
        with make(cio_simulator, clock, config=config) as cio:
            cio.identify("1", a=1)
        client = redis.Redis.from_url(redis_url)
        try:
            assert client.keys("*")
        finally:
            client.close()
