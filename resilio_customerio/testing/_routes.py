"""Request routing and the error envelopes of the Track and App APIs."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from attrs import frozen

# (path pattern, {method: endpoint name}); "{}" matches one percent-encoded segment.
_TABLE: tuple[tuple[tuple[str, ...], dict[str, str]], ...] = (
    (("api", "v1", "accounts", "region"), {"GET": "region"}),
    (("api", "v1", "customers", "{}"), {"PUT": "identify", "DELETE": "delete"}),
    (("api", "v1", "customers", "{}", "events"), {"POST": "track"}),
    (("api", "v1", "customers", "{}", "devices"), {"PUT": "add_device"}),
    (("api", "v1", "customers", "{}", "devices", "{}"), {"DELETE": "delete_device"}),
    (("api", "v1", "customers", "{}", "suppress"), {"POST": "suppress"}),
    (("api", "v1", "customers", "{}", "unsuppress"), {"POST": "unsuppress"}),
    (("api", "v1", "events"), {"POST": "track_anonymous"}),
    (("api", "v1", "merge_customers"), {"POST": "merge_customers"}),
    (("api", "v2", "entity"), {"POST": "entity"}),
    (("api", "v2", "batch"), {"POST": "batch"}),
    (("v1", "send", "{}"), {"POST": "send"}),
)

SEND_KINDS = frozenset({"email", "push", "sms", "in_app", "inbox_message", "whatsapp"})

ENDPOINTS = (
    "region",
    "identify",
    "delete",
    "track",
    "add_device",
    "delete_device",
    "suppress",
    "unsuppress",
    "track_anonymous",
    "merge_customers",
    "entity",
    "batch",
    *sorted(f"send_{kind}" for kind in SEND_KINDS),
)
"""Every endpoint name a fault rule can select."""


@frozen
class Route:
    """Where a request goes.

    Attributes:
        name: Endpoint name (``"unknown"`` when no path matched).
        family: ``"track_api"``, ``"app_api"`` or ``"unknown"``.
        params: Percent-decoded path parameters.
        allowed: Methods the matched path accepts (empty when no path matched).
    """

    name: str
    family: str
    params: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()


def route(method: str, path: str) -> Route:
    """Match a request to an endpoint.

    Args:
        method: HTTP method.
        path: Raw path without the query string.

    Returns:
        The route; ``name`` is ``"unknown"`` for no matching path and
        ``"method_not_allowed"`` when the path exists but not for this method.
    """
    segments = path.split("/")[1:]
    for pattern, methods in _TABLE:
        if len(pattern) != len(segments):
            continue
        params: list[str] = []
        for want, got in zip(pattern, segments, strict=True):
            if want == "{}":
                if not got:
                    break
                params.append(unquote(got))
            elif want != got:
                break
        else:
            family = "app_api" if pattern[0] == "v1" else "track_api"
            allowed = tuple(methods)
            name = methods.get(method)
            if name is None:
                return Route("method_not_allowed", family, tuple(params), allowed)
            if name == "send":
                if params[0] not in SEND_KINDS:
                    continue
                name = f"send_{params[0]}"
            return Route(name, family, tuple(params), allowed)
    return Route("unknown", "unknown")


def dumps(value: Any) -> bytes:
    """Serialise a response body compactly.

    Args:
        value: A JSON-compatible value.

    Returns:
        UTF-8 JSON bytes.
    """
    return json.dumps(value, separators=(",", ":")).encode()


def v1_errors(*messages: str) -> bytes:
    """Return the Track v1 400 envelope ``{"meta":{"errors":[...]}}``.

    Args:
        *messages: Error descriptions.

    Returns:
        The body bytes.
    """
    return dumps({"meta": {"errors": list(messages)}})


def meta_error(message: str) -> bytes:
    """Return the ``{"meta":{"error":"..."}}`` envelope (App API and merge errors).

    Args:
        message: Error description.

    Returns:
        The body bytes.
    """
    return dumps({"meta": {"error": message}})


def v2_error(reason: str, field: str, message: str) -> dict[str, str]:
    """Return one Track v2 error item.

    Args:
        reason: Short machine-readable reason.
        field: The offending field.
        message: Human-readable description.

    Returns:
        The error item.
    """
    return {"reason": reason, "field": field, "message": message}


def fault_body(route_: Route, status: int, retry_after: str | None) -> bytes:
    """Return the body the real service would plausibly send with an injected status.

    Args:
        route_: The request's route.
        status: The injected status code.
        retry_after: The ``Retry-After`` value sent, if any.

    Returns:
        The body bytes (empty for Track 401s and for 5xx and 3xx answers).
    """
    if status == 429:
        detail = "rate limited" + (f", retry after {retry_after} s" if retry_after else "")
        return dumps({"errors": [{"detail": detail, "status": "429"}]})
    if status < 400 or status >= 500 or (status == 401 and route_.family != "app_api"):
        return b""
    message = f"simulated {status} error"
    if route_.family == "app_api" or route_.name == "merge_customers":
        return meta_error(message)
    if route_.name in ("entity", "batch"):
        return dumps({"errors": [v2_error("simulated", "", message)]})
    return v1_errors(message)
