"""Building adapters aimed at a simulator, for the adapter tests."""

from __future__ import annotations

import base64
from typing import Any

from resilio.testing import FakeClock
from resilio_customerio import AsyncResilientCustomerIO, ResilientCustomerIO
from resilio_customerio.testing import RecordedRequest, Simulator


def adapter_kwargs(sim: Simulator, clock: FakeClock, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments that aim an adapter at ``sim`` with a fake clock."""
    kwargs: dict[str, Any] = {
        "site_id": sim.site_id,
        "api_key": sim.api_key,
        "app_key": sim.app_key,
        "host": sim.host,
        "port": sim.port,
        "url_prefix": sim.url_prefix,
        "api_url": sim.api_url,
        "clock": clock,
        "timeout": 2.0,
        "replay": False,
    }
    kwargs.update(overrides)
    return kwargs


def make(sim: Simulator, clock: FakeClock, **overrides: Any) -> ResilientCustomerIO:
    """A synchronous adapter aimed at ``sim``."""
    return ResilientCustomerIO(**adapter_kwargs(sim, clock, **overrides))


def make_async(sim: Simulator, clock: FakeClock, **overrides: Any) -> AsyncResilientCustomerIO:
    """An asyncio adapter aimed at ``sim``."""
    return AsyncResilientCustomerIO(**adapter_kwargs(sim, clock, **overrides))


def basic_auth(sim: Simulator) -> str:
    """The Authorization header the Track API expects."""
    token = base64.b64encode(f"{sim.site_id}:{sim.api_key}".encode()).decode()
    return f"Basic {token}"


def header(request: RecordedRequest, name: str) -> str | None:
    """A request header, case-insensitively."""
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return value
    return None


def last(sim: Simulator) -> RecordedRequest:
    """The last request the simulator received."""
    return sim.requests[-1]
