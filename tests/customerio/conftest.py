"""Fixtures for the Customer.io tests."""

from collections.abc import Callable, Iterator

import pytest

from resilio_customerio.testing import Simulator
from resilio_customerio.testing.pytest_plugin import cio_simulator  # noqa: F401


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


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
