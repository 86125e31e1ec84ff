"""Fixtures for the Customer.io tests."""

import signal
from collections.abc import Callable, Iterator

import pytest

from resilio_customerio.testing import Simulator
from resilio_customerio.testing.pytest_plugin import cio_simulator  # noqa: F401


@pytest.fixture
def make_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Simulator]]:
    """Build started, trusted simulators with custom options; stop them after the test."""
    started: list[Simulator] = []

    def make(**options: object) -> Simulator:
        sim = Simulator(**options).start()  # type: ignore[arg-type]
        started.append(sim)
        if sim.ca_path:
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", sim.ca_path)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    """A buffered adapter installs SIGTERM/SIGINT handlers: put pytest's back after each test."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
