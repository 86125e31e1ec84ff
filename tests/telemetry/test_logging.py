"""Logs: structlog event names, levels and fields for policy events."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from resilio import CircuitBreaker, Pipeline, Retry, telemetry
from resilio.testing import FakeClock


def _failing() -> None:
    raise ConnectionError("down")


class TestLogs:
    def test_nothing_on_first_try_success(self, clock: FakeClock) -> None:
        """A first-try success through retry and a closed breaker logs nothing."""
        p = Pipeline([Retry(attempts=3), CircuitBreaker()], name="q", clock=clock)
        with capture_logs() as logs:
            assert p.execute(lambda: 1) == 1
        assert logs == []

    def test_retry_logs_warning_with_fields(self, clock: FakeClock) -> None:
        """Retries and giving up are warnings named resilio.<event> with the event's fields."""
        p = Pipeline([Retry(attempts=2, backoff=0.5)], name="r", clock=clock)
        with capture_logs() as logs, pytest.raises(ConnectionError):
            p.execute(_failing)
        assert [(e["event"], e["log_level"]) for e in logs] == [
            ("resilio.retry.scheduled", "warning"),
            ("resilio.retry.gave_up", "warning"),
        ]
        scheduled = logs[0]
        assert scheduled["pipeline"] == "r"
        assert scheduled["policy"] == "retry"
        assert scheduled["attempt"] == 1
        assert scheduled["delay"] == pytest.approx(0.5)
        assert scheduled["error_type"] == "ConnectionError"

    def test_breaker_levels(self, clock: FakeClock) -> None:
        """Opening is a warning, half-opening and rejections debug, closing info."""
        p = Pipeline([CircuitBreaker(failure_threshold=1, break_duration=1)], name="b", clock=clock)
        with capture_logs() as logs:
            with pytest.raises(ConnectionError):
                p.execute(_failing)
            with pytest.raises(Exception, match="open"):
                p.execute(lambda: 1)
            clock.advance(2)
            p.execute(lambda: 1)
        levels = {e["event"]: e["log_level"] for e in logs}
        assert levels == {
            "resilio.circuit.opened": "warning",
            "resilio.call.rejected": "debug",
            "resilio.circuit.half_opened": "debug",
            "resilio.circuit.closed": "info",
        }

    def test_logging_switch(self, clock: FakeClock) -> None:
        """configure(logging=False) silences the logs of pipelines already built."""
        p = Pipeline([Retry(attempts=2, backoff=0)], name="s", clock=clock)
        telemetry.configure(logging=False)
        with capture_logs() as logs, pytest.raises(ConnectionError):
            p.execute(_failing)
        assert logs == []
