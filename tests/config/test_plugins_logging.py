"""Log lines of the plugin runtime: on the ``resilio`` logger, names only, nothing on stdout."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

import resilio
from resilio import Pipeline
from resilio.events import Event
from resilio.plugins import manager, subscribe
from resilio.testing import FakeClock
from tests.config.conftest import make_distribution

SECRET = "card=4242424242424242"


@pytest.fixture
def unconfigured_structlog() -> Iterator[None]:
    """structlog as an application that never configured it leaves it (then reset again)."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def _flaky() -> Any:
    attempts = iter([ConnectionError(SECRET), None])

    def call() -> str:
        error = next(attempts)
        if error is not None:
            raise error
        return "ok"

    return call


def _raise_secret(event: Event) -> None:
    raise RuntimeError(SECRET)


def _records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "resilio_event", None) == name]


class TestObserverFailures:
    def test_raising_subscriber_logs_names_only_and_nothing_on_stdout(
        self,
        clock: FakeClock,
        unconfigured_structlog: None,
        capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A subscriber that raises is logged on "resilio" without its message; stdout is empty."""
        pipeline = Pipeline([resilio.Retry(attempts=2)], name="p", clock=clock, telemetry=False)
        unsubscribe = subscribe(_raise_secret)
        try:
            with caplog.at_level(logging.DEBUG, logger="resilio"):
                assert pipeline.execute(_flaky()) == "ok"
        finally:
            unsubscribe()
        captured = capsys.readouterr()
        assert captured.out == ""
        assert SECRET not in captured.err
        [record] = _records(caplog, "resilio.observer.failed")
        assert record.levelno == logging.ERROR
        assert record.exc_info is None
        assert record.resilio_fields == {  # type: ignore[attr-defined]
            "observer": "listener",
            "name": "_raise_secret",
            "event_name": "retry.scheduled",
            "error_type": "RuntimeError",
        }
        assert SECRET not in caplog.text

    def test_raising_listener_object_is_named_by_its_type(
        self,
        clock: FakeClock,
        unconfigured_structlog: None,
        capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A callable object is named by its class, never by its repr (which may hold data)."""

        class Listener:
            def __repr__(self) -> str:
                return SECRET

            def __call__(self, event: Event) -> None:
                raise KeyError(SECRET)

        unsubscribe = subscribe(Listener())
        try:
            with caplog.at_level(logging.DEBUG, logger="resilio"):
                pipeline = Pipeline(
                    [resilio.Retry(attempts=2)], name="p", clock=clock, telemetry=False
                )
                assert pipeline.execute(_flaky()) == "ok"
        finally:
            unsubscribe()
        [record] = _records(caplog, "resilio.observer.failed")
        fields = record.resilio_fields  # type: ignore[attr-defined]
        assert (fields["name"], fields["error_type"]) == (Listener.__qualname__, "KeyError")
        assert SECRET not in caplog.text
        assert capsys.readouterr().out == ""

    def test_raising_event_hook_is_logged_as_a_plugin(
        self,
        clock: FakeClock,
        unconfigured_structlog: None,
        capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A resilio_event implementation that raises is logged with the plugin's name."""

        class Raises:
            @resilio.hookimpl
            def resilio_event(self, event: Event) -> None:
                raise RuntimeError(SECRET)

        manager.register(Raises(), name="raises")
        pipeline = Pipeline([resilio.Retry(attempts=2)], name="p", clock=clock, telemetry=False)
        with caplog.at_level(logging.DEBUG, logger="resilio"):
            assert pipeline.execute(_flaky()) == "ok"
        [record] = _records(caplog, "resilio.observer.failed")
        fields = record.resilio_fields  # type: ignore[attr-defined]
        assert (fields["observer"], fields["name"]) == ("plugin", "raises")
        assert SECRET not in caplog.text
        assert capsys.readouterr().out == ""

    def test_configured_structlog_gets_the_line(
        self, clock: FakeClock, unconfigured_structlog: None
    ) -> None:
        """With structlog configured the line goes to structlog, as a plain error line."""
        pipeline = Pipeline([resilio.Retry(attempts=2)], name="p", clock=clock, telemetry=False)
        unsubscribe = subscribe(_raise_secret)
        try:
            with capture_logs() as logs:
                assert pipeline.execute(_flaky()) == "ok"
        finally:
            unsubscribe()
        [line] = [entry for entry in logs if entry["event"] == "resilio.observer.failed"]
        assert line == {
            "event": "resilio.observer.failed",
            "log_level": "error",
            "observer": "listener",
            "name": "_raise_secret",
            "event_name": "retry.scheduled",
            "error_type": "RuntimeError",
        }


class TestBrokenPlugin:
    def test_broken_plugin_is_logged_as_a_warning_not_on_stdout(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        clock: FakeClock,
        unconfigured_structlog: None,
        capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A plugin failing to load is one warning on "resilio" naming it; stdout stays empty."""
        site = tmp_path / "s"
        make_distribution(site, "broken3", {"broken3": "broken3_mod"}, {"broken3_mod.py": "1/0"})
        monkeypatch.syspath_prepend(str(site))
        with caplog.at_level(logging.DEBUG, logger="resilio"):
            Pipeline([], name="p", clock=clock, telemetry=False)
            Pipeline([], name="q", clock=clock, telemetry=False)  # logged once per build
        [record] = _records(caplog, "resilio.plugins.failed")
        assert record.levelno == logging.WARNING
        assert record.resilio_fields == {  # type: ignore[attr-defined]
            "plugin": "broken3",
            "reason": "ZeroDivisionError on import",
        }
        assert capsys.readouterr().out == ""

    def test_broken_plugin_line_holds_names_only(
        self, clock: FakeClock, unconfigured_structlog: None, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The warning names the plugin, the hook and the error type, never the error's message."""

        class Leaky:
            @resilio.hookimpl
            def resilio_register_operations(self, registry: Any) -> None:
                raise RuntimeError(SECRET)

        manager.register(Leaky(), name="leaky")
        with caplog.at_level(logging.DEBUG, logger="resilio"):
            Pipeline([], name="p", clock=clock, telemetry=False)
        [record] = _records(caplog, "resilio.plugins.failed")
        assert record.resilio_fields == {  # type: ignore[attr-defined]
            "plugin": "leaky",
            "reason": "RuntimeError in resilio_register_operations",
        }
        assert SECRET not in caplog.text
