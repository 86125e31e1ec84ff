"""Logs: event names, levels and fields for policy events; structlog or stdlib ``logging``."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
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


@pytest.fixture
def unconfigured_structlog() -> Iterator[None]:
    """structlog as an application that never configured it leaves it (then reset again)."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


class TestDestination:
    def test_unconfigured_structlog_goes_to_stdlib_logging(
        self,
        clock: FakeClock,
        unconfigured_structlog: None,
        capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Without structlog configured, a retry writes nothing to stdout and logs on "resilio"."""
        assert not structlog.is_configured()
        p = Pipeline([Retry(attempts=2, backoff=0.5)], name="std", clock=clock)
        with caplog.at_level(logging.DEBUG, logger="resilio"), pytest.raises(ConnectionError):
            p.execute(_failing)
        assert capsys.readouterr().out == ""
        records = [r for r in caplog.records if r.name == "resilio"]
        assert [(r.levelno, r.resilio_event) for r in records] == [  # type: ignore[attr-defined]
            (logging.WARNING, "resilio.retry.scheduled"),
            (logging.WARNING, "resilio.retry.gave_up"),
        ]
        message = records[0].getMessage()
        assert message.startswith("resilio.retry.scheduled pipeline=std policy=retry ")
        assert "attempt=1 delay=0.5 kind=transient error_type=ConnectionError" in message
        assert records[0].resilio_fields["attempt"] == 1  # type: ignore[attr-defined]

    def test_unconfigured_no_handler_prints_warnings_to_stderr(
        self,
        clock: FakeClock,
        unconfigured_structlog: None,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """With no logging config at all, warnings reach stderr (last resort), never stdout."""
        root = logging.getLogger()
        monkeypatch.setattr(root, "handlers", [])
        monkeypatch.setattr(logging.getLogger("resilio"), "handlers", [])
        monkeypatch.setattr(logging, "lastResort", logging.StreamHandler(_Stderr()))
        p = Pipeline([Retry(attempts=2, backoff=0)], name="bare", clock=clock)
        with pytest.raises(ConnectionError):
            p.execute(_failing)
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "resilio.retry.scheduled pipeline=bare" in captured.err

    def test_levels_below_the_logger_are_skipped(
        self, clock: FakeClock, unconfigured_structlog: None, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Through logging, debug events are dropped when the "resilio" logger is at WARNING."""
        p = Pipeline([CircuitBreaker(failure_threshold=1)], name="lv", clock=clock)
        with caplog.at_level(logging.WARNING, logger="resilio"):
            with pytest.raises(ConnectionError):
                p.execute(_failing)
            with pytest.raises(Exception, match="open"):
                p.execute(lambda: 1)
        events = [r.resilio_event for r in caplog.records if r.name == "resilio"]  # type: ignore[attr-defined]
        assert events == ["resilio.circuit.opened"]

    def test_configured_structlog_is_used(
        self,
        clock: FakeClock,
        unconfigured_structlog: None,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Under capture_logs (structlog configured) events go to structlog, not to logging."""
        p = Pipeline([Retry(attempts=2, backoff=0)], name="sl", clock=clock)
        with (
            caplog.at_level(logging.DEBUG, logger="resilio"),
            capture_logs() as logs,
            pytest.raises(ConnectionError),
        ):
            p.execute(_failing)
        assert [e["event"] for e in logs] == ["resilio.retry.scheduled", "resilio.retry.gave_up"]
        assert [r for r in caplog.records if r.name == "resilio"] == []


class _Stderr:
    """A stream that writes to whatever sys.stderr is when it is written to (capsys swaps it)."""

    def write(self, text: str) -> int:
        import sys

        return sys.stderr.write(text)

    def flush(self) -> None:
        import sys

        sys.stderr.flush()
