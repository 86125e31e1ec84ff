"""pytest fixture that provides a started, trusted Customer.io simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from resilio_customerio.testing._simulator import Simulator


@pytest.fixture
def cio_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    """Yield a running :class:`Simulator` whose CA ``requests`` trusts for the test.

    ``REQUESTS_CA_BUNDLE`` is set to the simulator's CA for the duration of the test, so the
    real ``customerio`` clients built from ``sim.client_kwargs()`` and
    ``sim.api_client_kwargs()`` connect without further setup.

    Args:
        monkeypatch: pytest's monkeypatch fixture.

    Yields:
        The running simulator; it is stopped after the test.
    """
    with Simulator() as sim:
        assert sim.ca_path is not None
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", sim.ca_path)
        yield sim
