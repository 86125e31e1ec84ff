"""The adapter's active health probe, against the simulator with the real client's stack."""

from __future__ import annotations

import pytest

import resilio
from resilio.testing import FakeClock
from resilio_customerio import AuthenticationFailed
from resilio_customerio.testing import Simulator

from ._adapter import make


def region_requests(sim: Simulator) -> list[str]:
    return [r.path for r in sim.requests if r.path == "/api/v1/accounts/region"]


def test_probe_asks_the_region_endpoint_once(cio_simulator: Simulator, clock: FakeClock) -> None:
    """probe() is one GET of the region endpoint with the Track credentials, and passes."""
    with make(cio_simulator, clock) as cio:
        before = len(region_requests(cio_simulator))
        assert cio.probe() is True
        assert len(region_requests(cio_simulator)) == before + 1


def test_probe_with_wrong_credentials_raises_an_auth_error(
    cio_simulator: Simulator, clock: FakeClock
) -> None:
    """A key the API refuses makes the probe raise AuthenticationFailed, naming no secret."""
    with make(cio_simulator, clock, api_key="wrong-key-canary") as cio:
        with pytest.raises(AuthenticationFailed) as info:
            cio.probe()
        assert "wrong-key-canary" not in str(info.value)


def test_registered_probe_drives_the_health_report(
    cio_simulator: Simulator, clock: FakeClock
) -> None:
    """register_health_probe(): health(probe=True) is healthy, then unhealthy on a 503; close()
    removes the probe."""
    cio = make(cio_simulator, clock)
    cio.register_health_probe(timeout=1.0)
    try:
        report = resilio.health([], probe=True)
        assert report.status == "healthy"
        assert report.probes["customerio.track"]["ok"] is True
        cio_simulator.faults.add("region", status=503)
        report = resilio.health([], probe=True)
        assert report.status == "unhealthy"
        assert (
            report.probes["customerio.track"]["error_type"]
            == "resilio_customerio.errors.ServiceUnavailable"
        )
        assert "probe 'customerio.track': failed" in report.reasons
    finally:
        cio.close()
    assert "customerio.track" not in resilio.health([], probe=True).probes
