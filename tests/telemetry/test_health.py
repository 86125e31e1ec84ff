"""Health reports: statuses through breaker states, latencies, outboxes, probes."""

from __future__ import annotations

import gc
import json
import socket
import weakref
from pathlib import Path
from typing import Any, ClassVar

import pytest

import resilio
from resilio import CircuitBreaker, Pipeline, telemetry
from resilio.events import CircuitClosed, CircuitOpened
from resilio.policies._base import Env, Layer, Policy
from resilio.stores import MemoryBreakerStore
from resilio.stores._protocols import SharedBreakerState
from resilio.stores.redis import StoreUnavailable
from resilio.telemetry import metrics as resilio_metrics
from resilio.telemetry.health import health, register_probe, unregister_probe
from resilio.testing import EventRecorder, FakeClock


def _failing() -> None:
    raise ConnectionError("down")


class _Limiter(Policy):
    kind: ClassVar[str] = "rate_limiter"

    def __init__(self) -> None:
        self.name = "rl"
        self.options = type("O", (), {"burst": 10})()
        self.available = 2.5

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        return Layer(inner, env, self)


class _FlakyStore(MemoryBreakerStore):
    """A breaker store that raises StoreUnavailable, as a real one does, while ``down``."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.down = True

    def load(self, name: str) -> SharedBreakerState:
        if self.down:
            raise StoreUnavailable("breaker store is unavailable")
        return super().load(name)

    def record(self, name: str, **kwargs: Any) -> SharedBreakerState:
        if self.down:
            raise StoreUnavailable("breaker store is unavailable")
        return super().record(name, **kwargs)


class TestStatus:
    def test_through_breaker_states(self, clock: FakeClock) -> None:
        """Healthy when closed, unhealthy when open, degraded when half-open, healthy again."""
        breaker = CircuitBreaker(failure_threshold=1, break_duration=10, half_open_max_calls=1)
        p = Pipeline([breaker], name="svc", clock=clock)
        p.execute(lambda: 1)
        report = resilio.health(p)
        assert report.status == "healthy"
        assert report.pipeline("svc").policies[0].state == "closed"
        with pytest.raises(ConnectionError):
            p.execute(_failing)
        report = resilio.health([p])
        assert (report.status, report.http_status) == ("unhealthy", 503)
        assert report.pipeline("svc").policies[0].state == "open"
        clock.advance(11)
        seen: dict[str, Any] = {}

        def trial() -> int:
            seen["report"] = health({"svc": p})
            return 1

        p.execute(trial)
        assert seen["report"].status == "degraded"
        assert seen["report"].http_status == 200
        assert health(p).status == "healthy"

    def test_isolated_breaker_is_unhealthy(self, clock: FakeClock) -> None:
        """An isolate()d breaker refuses every call: unhealthy (503), its reason "isolated"."""
        breaker = CircuitBreaker(name="cb", break_duration=1)
        p = Pipeline([breaker], name="iso", clock=clock)
        breaker.isolate()
        clock.advance(3600)  # isolation has no break to elapse
        report = health(p)
        assert (report.status, report.http_status) == ("unhealthy", 503)
        policy = report.pipeline("iso").policies[0]
        assert (policy.state, policy.status, policy.reason) == ("isolated", "unhealthy", "isolated")
        assert report.reasons == ("pipeline 'iso': circuit_breaker 'cb': isolated",)
        breaker.reset()
        assert health(p).status == "healthy"

    def test_elapsed_break_is_degraded(self, clock: FakeClock) -> None:
        """Open with its break over (the next call is a trial): degraded (200), not unhealthy."""
        breaker = CircuitBreaker(name="cb", failure_threshold=1, break_duration=10)
        p = Pipeline([breaker], name="elapsed", clock=clock)
        with pytest.raises(ConnectionError):
            p.execute(_failing)
        clock.advance(9.5)
        report = health(p)
        assert (report.status, report.http_status) == ("unhealthy", 503)
        assert report.pipeline("elapsed").policies[0].reason == "open"
        clock.advance(0.5)
        report = health(p)
        assert (report.status, report.http_status) == ("degraded", 200)
        policy = report.pipeline("elapsed").policies[0]
        assert (policy.state, policy.status, policy.reason) == (
            "open",
            "degraded",
            "break elapsed: the next call is a trial",
        )
        assert report.reasons == (
            "pipeline 'elapsed': circuit_breaker 'cb': break elapsed: the next call is a trial",
        )
        assert p.execute(lambda: 1) == 1  # the trial succeeds and closes the circuit
        assert health(p).status == "healthy"

    def test_last_times_and_latency(self, clock: FakeClock) -> None:
        """Last success/failure are wall times and latencies give p50/p95/p99 of recent calls."""
        p = Pipeline([], name="lat", clock=clock)
        health([])  # the first use of health starts the statistics
        for ms in range(1, 101):

            def call(ms: int = ms) -> int:
                clock.advance(ms / 1000)
                return ms

            p.execute(call)
        with pytest.raises(ConnectionError):
            p.execute(_failing)
        entry = health(p).pipeline("lat")
        assert entry.latency["p50"] == pytest.approx(0.050)
        assert entry.latency["p95"] == pytest.approx(0.095)
        assert entry.latency["p99"] == pytest.approx(0.099)
        assert entry.latency["count"] == 101
        assert entry.last_success == pytest.approx(clock.time())
        assert entry.last_failure == pytest.approx(clock.time())

    def test_statistics_start_at_first_use(self, clock: FakeClock) -> None:
        """Latencies and last times are kept only once health was used, unless configured."""
        p = Pipeline([], name="lazy", clock=clock)
        p.execute(lambda: 1)
        assert telemetry.settings()["health"] is None
        first = health(p).pipeline("lazy")
        assert (first.latency, first.last_success) == ({}, None)
        clock.advance(0.5)
        p.execute(lambda: 1)
        second = health(p).pipeline("lazy")
        assert second.latency["count"] == 1
        assert second.last_success == pytest.approx(clock.time())

    def test_restoring_settings_keeps_first_use(self, clock: FakeClock) -> None:
        """Passing settings() back to configure() does not pin health statistics off."""
        before = telemetry.configure(logging=False)
        telemetry.configure(**before)
        p = Pipeline([], name="restored", clock=clock)
        health(p)
        p.execute(lambda: 1)
        assert health(p).pipeline("restored").latency["count"] == 1

    def test_configured_off_stays_off(self, clock: FakeClock) -> None:
        """configure(health=False) is not undone by using health."""
        telemetry.configure(health=False)
        p = Pipeline([], name="off", clock=clock)
        health(p)
        p.execute(lambda: 1)
        assert health(p).pipeline("off").latency == {}

    def test_registry_and_saturation(self) -> None:
        """A registry with a pipelines mapping is accepted; limiter saturation is computed."""
        p = Pipeline([_Limiter()], name="reg")

        class Registry:
            pipelines: ClassVar[dict[str, Any]] = {"reg": p}

        entry = health(Registry()).pipeline("reg")
        assert entry.policies[0].saturation == pytest.approx(0.75)
        assert entry.policies[0].details["available"] == 2.5

    def test_real_limiter_and_bulkhead(self, clock: FakeClock) -> None:
        """A real rate limiter's spent tokens and a real bulkhead's free slots are reported."""
        p = Pipeline(
            [resilio.Bulkhead(max_concurrent=4), resilio.RateLimiter(rate=10, burst=10)],
            name="real",
            clock=clock,
        )
        for _ in range(5):
            p.execute(lambda: 1)
        bulkhead, limiter = health(p).pipeline("real").policies
        assert (bulkhead.saturation, bulkhead.details["capacity"]) == (0.0, 4)
        assert limiter.saturation == pytest.approx(0.5)

    def test_default_source_lists_live_pipelines(self) -> None:
        """health() with no argument reports every live instrumented pipeline."""
        p = Pipeline([], name="everywhere")
        names = [e.name for e in health().pipelines]
        assert "everywhere" in names
        del p


class TestOutboxesAndProbes:
    def test_growing_outbox_degrades(self) -> None:
        """An outbox whose depth grew at three reports in a row makes the report degraded."""
        depth = iter([1, 5, 9, 9])
        resilio_metrics.observe_outbox("grow", lambda: next(depth))
        try:
            statuses = [health([]).status for _ in range(4)]
        finally:
            resilio_metrics.unobserve_outbox("grow")
        assert statuses == ["healthy", "healthy", "degraded", "healthy"]

    def test_failing_probe_is_unhealthy(self) -> None:
        """A probe that raises makes the report unhealthy and names only the error type."""

        def probe() -> None:
            raise ConnectionError("secret-host-name")

        register_probe("svc.ping", probe)
        try:
            assert health([]).probes == {}
            report = health([], probe=True)
        finally:
            unregister_probe("svc.ping")
        assert report.status == "unhealthy"
        assert report.probes["svc.ping"]["error_type"] == "ConnectionError"
        assert "secret-host-name" not in json.dumps(report.to_dict())

    def test_to_dict_is_json(self, clock: FakeClock) -> None:
        """to_dict() is JSON-serialisable and carries status, pipelines, outboxes and probes."""
        p = Pipeline([CircuitBreaker(name="cb")], name="j", clock=clock)
        p.execute(lambda: 1)
        data = json.loads(json.dumps(health(p).to_dict()))
        assert data["status"] == "healthy"
        assert data["pipelines"][0]["policies"][0] == {
            "name": "cb",
            "kind": "circuit_breaker",
            "state": "closed",
            "saturation": None,
            "status": "healthy",
            "reason": None,
        }
        assert data["pipelines"][0]["reasons"] == []
        assert data["pipelines"][0]["duplicate_name"] is False
        assert set(data) == {
            "status",
            "checked_at",
            "pipelines",
            "outboxes",
            "probes",
            "reasons",
            "warnings",
        }


class TestSharedBreaker:
    def test_unreachable_store_degrades_then_recovers(self, clock: FakeClock) -> None:
        """A breaker whose shared store fails degrades its pipeline and the report, with reasons."""
        store = _FlakyStore(clock)
        breaker = CircuitBreaker(name="cb", store=store, sync_interval=1.0)
        p = Pipeline([breaker], name="billing", clock=clock)
        assert p.execute(lambda: 1) == 1
        report = health(p)
        assert (report.status, report.http_status) == ("degraded", 200)
        entry = report.pipeline("billing")
        assert entry.status == "degraded"
        assert entry.policies[0].state == "closed"
        assert (entry.policies[0].status, entry.policies[0].reason) == (
            "degraded",
            "store_degraded",
        )
        assert entry.policies[0].details == {"store_degraded": True}
        assert entry.reasons == ("circuit_breaker 'cb': store_degraded",)
        assert report.reasons == ("pipeline 'billing': circuit_breaker 'cb': store_degraded",)
        store.down = False
        clock.advance(2)
        p.execute(lambda: 1)
        report = health(p)
        assert report.status == "healthy"
        assert report.pipeline("billing").policies[0].details == {"store_degraded": False}
        assert report.reasons == ()

    def test_redis_store_on_a_closed_port_degrades(self) -> None:
        """A breaker sharing state through a RedisStore that cannot connect is reported degraded."""
        from resilio.stores.redis import RedisStore

        with socket.socket() as sock:  # a port nothing listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        store = RedisStore(url=f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
        p = Pipeline([CircuitBreaker(name="shared", store=store)], name="redis-down")
        assert p.execute(lambda: 7) == 7
        report = health(p)
        assert report.status == "degraded"
        assert report.pipeline("redis-down").policies[0].reason == "store_degraded"

    def test_open_beats_store_degraded(self, clock: FakeClock) -> None:
        """An open shared breaker with an unreachable store is unhealthy, its reason "open"."""
        breaker = CircuitBreaker(name="cb", failure_threshold=1, store=_FlakyStore(clock))
        p = Pipeline([breaker], name="both", clock=clock)
        with pytest.raises(ConnectionError):
            p.execute(_failing)
        report = health(p)
        assert report.status == "unhealthy"
        policy = report.pipeline("both").policies[0]
        assert (policy.state, policy.reason, policy.details) == (
            "open",
            "open",
            {"store_degraded": True},
        )


class TestDuplicateNames:
    def test_same_name_is_reported_twice_with_a_warning(self, clock: FakeClock) -> None:
        """Two pipelines with one name both appear, marked duplicate_name, with a report warning."""
        a = Pipeline([CircuitBreaker(failure_threshold=1)], name="dup", clock=clock)
        b = Pipeline([CircuitBreaker()], name="dup", clock=clock)
        other = Pipeline([], name="solo", clock=clock)
        with pytest.raises(ConnectionError):
            a.execute(_failing)
        report = health([a, b, other])
        assert [(e.name, e.status, e.duplicate_name) for e in report.pipelines] == [
            ("dup", "unhealthy", True),
            ("dup", "healthy", True),
            ("solo", "healthy", False),
        ]
        assert report.warnings == ("2 pipelines are named 'dup'",)
        assert report.status == "unhealthy"
        assert report.to_dict()["warnings"] == ["2 pipelines are named 'dup'"]
        with pytest.raises(LookupError, match="2 pipelines are named 'dup'"):
            report.pipeline("dup")
        assert report.pipeline("solo").name == "solo"

    def test_same_pipeline_listed_twice_is_one_entry(self, clock: FakeClock) -> None:
        """A pipeline given twice (or under two keys) is one entry, not a duplicate name."""
        p = Pipeline([], name="once", clock=clock)
        report = health({"a": p, "b": p})
        assert [(e.name, e.duplicate_name) for e in report.pipelines] == [("once", False)]
        assert report.warnings == ()


RELOADED = """
policies:
  cb: {circuit_breaker: {failure_threshold: %(threshold)d}}
pipelines:
  %(p)s:
    - retry: {attempts: %(attempts)d}
    - circuit_breaker: {ref: cb}
  %(q)s:
    - retry: {attempts: %(attempts)d}
    - circuit_breaker: 3
"""


def _config(prefix: str, threshold: int, attempts: int) -> str:
    names = {"p": f"{prefix}-p", "q": f"{prefix}-q"}
    return RELOADED % {"threshold": threshold, "attempts": attempts, **names}


def _entries(report: resilio.HealthReport, prefix: str) -> list[str]:
    return [e.name for e in report.pipelines if e.name.startswith(f"{prefix}-")]


class TestReloadedPipelines:
    def test_replaced_pipelines_are_freed_and_not_reported(self, tmp_path: Path) -> None:
        """After reloads, one live pipeline per name; health() lists each once."""
        path = tmp_path / "resilio.yaml"
        path.write_text(_config("freed", 3, 2), encoding="utf-8")
        registry = resilio.load_config(path)
        names = ("freed-p", "freed-q")
        seen = [weakref.ref(registry.pipeline(name)) for name in names]
        for attempts in range(3, 23):
            path.write_text(_config("freed", 3, attempts), encoding="utf-8")
            registry.reload()
            assert registry.pipeline("freed-p").execute(lambda: 1) == 1
            seen += [weakref.ref(registry.pipeline(name)) for name in names]
        gc.collect()
        alive = [ref() for ref in seen if ref() is not None]
        assert alive == [registry.pipeline(name) for name in names]
        report = health()
        assert sorted(_entries(report, "freed")) == ["freed-p", "freed-q"]
        assert not [w for w in report.warnings if "freed-" in w]
        assert report.pipeline("freed-p").status == "healthy"

    def test_replaced_pipelines_leave_the_report_before_any_collection(
        self, tmp_path: Path
    ) -> None:
        """Right after reloads, with the cyclic collector off, health() lists each name once."""
        path = tmp_path / "resilio.yaml"
        path.write_text(_config("retired", 1, 1), encoding="utf-8")
        registry = resilio.load_config(path)
        with pytest.raises(ConnectionError):  # opens the old pipeline's breaker (threshold 1)
            registry.pipeline("retired-p").execute(_failing)
        names = ("retired-p", "retired-q")
        old = [weakref.ref(registry.pipeline(name)) for name in names]
        gc.collect()
        gc.disable()
        try:
            for attempts in range(2, 5):  # a new shared breaker (threshold 2), closed
                path.write_text(_config("retired", 2, attempts), encoding="utf-8")
                registry.reload()
            # The replaced pipelines are still alive: only the cyclic collector frees them.
            assert all(ref() is not None for ref in old)
            current = registry.pipelines
            assert [ref() is current[n] for ref, n in zip(old, names, strict=True)] == [False] * 2
            report = health()
        finally:
            gc.enable()
        assert sorted(_entries(report, "retired")) == ["retired-p", "retired-q"]
        assert not [w for w in report.warnings if "retired-" in w]
        assert report.pipeline("retired-p").status == "healthy"  # not the old, open breaker
        assert not [r for r in report.reasons if "retired-" in r]
        # A replaced pipeline passed explicitly is still reported.
        stale = old[0]()
        assert stale is not None
        assert health(stale).pipeline("retired-p").status == "unhealthy"

    def test_pipeline_kept_by_a_reload_stays_reported(self, tmp_path: Path) -> None:
        """A reload that changes nothing keeps the pipelines, and health() keeps listing them."""
        path = tmp_path / "resilio.yaml"
        path.write_text(_config("kept", 1, 2), encoding="utf-8")
        registry = resilio.load_config(path)
        before = registry.pipeline("kept-p")
        registry.reload()
        assert registry.pipeline("kept-p") is before
        assert sorted(_entries(health(), "kept")) == ["kept-p", "kept-q"]

    def test_stale_open_breaker_no_longer_reported(self, tmp_path: Path) -> None:
        """A breaker opened, then replaced by a reload, leaves health with its pipeline."""
        path = tmp_path / "resilio.yaml"
        path.write_text(_config("stale", 1, 1), encoding="utf-8")
        registry = resilio.load_config(path)
        with pytest.raises(ConnectionError):
            registry.pipeline("stale-p").execute(_failing)
        assert health().pipeline("stale-p").status == "unhealthy"
        path.write_text(_config("stale", 2, 1), encoding="utf-8")
        registry.reload()  # a new breaker (its options changed), closed
        gc.collect()
        report = health()
        assert sorted(_entries(report, "stale")) == ["stale-p", "stale-q"]
        assert report.pipeline("stale-p").status == "healthy"
        assert not [r for r in report.reasons if "stale-" in r]

    def test_manual_transition_reported_once_after_reloads(self, tmp_path: Path) -> None:
        """isolate() and reset() of a breaker kept across reloads: one event each."""
        path = tmp_path / "resilio.yaml"
        path.write_text(_config("manual", 3, 2), encoding="utf-8")
        rec = EventRecorder()
        registry = resilio.load_config(path, listeners=[rec])
        for attempts in range(3, 8):
            path.write_text(_config("manual", 3, attempts), encoding="utf-8")
            registry.reload()
        gc.collect()
        breaker = registry.pipeline("manual-p").policies[1]
        assert isinstance(breaker, CircuitBreaker)
        breaker.isolate()
        breaker.reset()
        assert [(type(e), e.pipeline) for e in rec.events] == [
            (CircuitOpened, "manual-p"),
            (CircuitClosed, "manual-p"),
        ]


class TestDroppedPipelines:
    def test_pipeline_with_an_open_breaker_is_freed(self, clock: FakeClock) -> None:
        """Health holds pipelines weakly, even when their policies' state leads back to them."""
        p = Pipeline([CircuitBreaker(failure_threshold=1)], name="dropped-open", clock=clock)
        with pytest.raises(ConnectionError):
            p.execute(_failing)
        assert health().pipeline("dropped-open").status == "unhealthy"
        ref = weakref.ref(p)
        del p
        gc.collect()
        assert ref() is None
        assert "dropped-open" not in [e.name for e in health().pipelines]
