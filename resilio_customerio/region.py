"""Regions: ``"us"``, ``"eu"``, or ``"auto"`` resolved once through ``/api/v1/accounts/region``.

Customer.io answers a call to the wrong region with a redirect (EU workspaces on the US host) or
an error; following redirects drops credentials and turns POSTs into GETs. The adapter never
follows redirects, so the region must be right up front: give it, or let ``"auto"`` ask the
Track API once when the adapter is built.
"""

from __future__ import annotations

from typing import Any

import requests
from customerio import CustomerIOException, Regions
from customerio.regions import Region

from resilio_customerio._transport import ResponseTap
from resilio_customerio.classify import parse_retry_after, translate
from resilio_customerio.errors import ConfigurationProblem

__all__ = ["REGIONS", "resolve_region"]

REGIONS: dict[str, Region] = {"us": Regions.US, "eu": Regions.EU}
"""The regions by name."""

OPERATION = "customerio.region"


def _base(host: str, port: int | None) -> str:
    host = host.split("://", 1)[-1].strip("/")
    return f"https://{host}" if port in (None, 443) else f"https://{host}:{port}"


def resolve_region(
    region: str | Region,
    *,
    site_id: str | None = None,
    api_key: str | None = None,
    host: str | None = None,
    port: int | None = None,
    timeout: float = 10.0,
) -> Region:
    """Return the :class:`customerio.regions.Region` to use.

    Args:
        region: ``"us"``, ``"eu"``, a ``Region``, or ``"auto"`` to ask the Track API (once).
        site_id: Track site id (for ``"auto"``).
        api_key: Track API key (for ``"auto"``).
        host: Track host to ask (default: the US host, which answers for both regions).
        port: Its port.
        timeout: Seconds to wait for the answer.

    Returns:
        The region.

    Raises:
        ConfigurationProblem: For an unknown region name or an answer naming none.
        CustomerIOError: If the region endpoint could not be asked (classified as usual).
    """
    if isinstance(region, Region):
        return region
    if not isinstance(region, str):
        raise ConfigurationProblem(OPERATION, None, "region must be 'us', 'eu' or 'auto'")
    name = region.strip().lower()
    if name in REGIONS:
        return REGIONS[name]
    if name != "auto":
        raise ConfigurationProblem(OPERATION, None, "region must be 'us', 'eu' or 'auto'")
    url = _base(host or Regions.US.track_host, port) + "/api/v1/accounts/region"
    tap = ResponseTap()
    body: Any = None
    with requests.Session() as session:
        session.max_redirects = 0
        session.hooks["response"] = [tap.hook]
        session.headers["User-Agent"] = "resilio-customerio"
        if site_id is not None and api_key is not None:
            session.auth = (site_id, api_key)
        try:
            response = session.get(url, timeout=timeout, allow_redirects=False)
            status = response.status_code
            body = response.json() if status == 200 else None
        except Exception as exc:
            raise translate(exc, OPERATION) from exc
    if status != 200:
        raise translate(
            CustomerIOException(f"{status}: region lookup"),
            OPERATION,
            retry_after=parse_retry_after(tap.retry_after),
        )
    found = body.get("region") if isinstance(body, dict) else None
    if not isinstance(found, str) or found.lower() not in REGIONS:
        raise ConfigurationProblem(OPERATION, 200, "the region endpoint named no known region")
    return REGIONS[found.lower()]
