"""Endpoint behaviour: authentication, checks, and effects on the workspace."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from typing import Any

from resilio_customerio.testing import _validate as v
from resilio_customerio.testing._routes import Route, dumps, meta_error, v1_errors, v2_error
from resilio_customerio.testing._state import Delivery, Identifier, Workspace, v1_identifier
from resilio_customerio.testing._ulid import new_ulid

INVALID_JSON = object()
"""Marker for a body that is present but is not JSON."""

Answer = tuple[int, bytes]

_OK: Answer = (200, b"{}")
_PERSON_KEYS = ("id", "email", "phone", "cio_id")
_PERSON_ACTIONS = frozenset(
    {
        "identify",
        "delete",
        "event",
        "page",
        "screen",
        "add_relationships",
        "delete_relationships",
        "add_device",
        "delete_device",
        "merge",
        "suppress",
        "unsuppress",
    }
)
_OBJECT_ACTIONS = frozenset(
    {"identify", "identify_anonymous", "delete", "add_relationships", "delete_relationships"}
)
_DELIVERY_METRICS = ("opened", "converted", "delivered")
_SEND_MESSAGE = "Request entity must be JSON encoded and not exceed 2048 KB."


class Api:
    """Answers routed requests on behalf of one simulated workspace.

    Args:
        workspace: The state to read and change.
        site_id: Track API site id (Basic auth user).
        api_key: Track API key (Basic auth password).
        app_key: App API key (Bearer token).
        region: ``"us"`` or ``"eu"``, reported by the region endpoint.
        base_url: Callable returning the simulator's base URL, reported by the region endpoint.
    """

    def __init__(
        self,
        workspace: Workspace,
        *,
        site_id: str,
        api_key: str,
        app_key: str,
        region: str,
        base_url: Callable[[], str],
    ) -> None:
        self.workspace = workspace
        token = base64.b64encode(f"{site_id}:{api_key}".encode()).decode()
        self._basic = f"Basic {token}"
        self._bearer = f"Bearer {app_key}"
        self.region = region
        self._base_url = base_url

    def authorised(self, route: Route, authorization: str | None) -> bool:
        """Return whether the ``Authorization`` header is right for the route's API.

        Args:
            route: The request's route.
            authorization: The header value, if sent.

        Returns:
            True when the credentials match.
        """
        if authorization is None:
            return False
        if route.family == "app_api":
            return authorization == self._bearer
        if authorization == self._basic:
            return True
        # Tolerate a different base64 spelling of the same credentials.
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            return False
        return f"Basic {base64.b64encode(decoded).decode()}" == self._basic

    def unauthorised(self, route: Route) -> Answer:
        """Return the 401 answer for the route's API (an empty body on the Track API).

        Args:
            route: The request's route.

        Returns:
            Status and body.
        """
        if route.family == "app_api":
            return 401, meta_error("Unauthorized request: check your App API key")
        return 401, b""

    def handle(self, route: Route, body: Any, length: int) -> Answer:
        """Answer an authorised request for a known endpoint.

        Args:
            route: The request's route.
            body: Parsed JSON body, None when empty, or :data:`INVALID_JSON`.
            length: Size of the raw body in bytes.

        Returns:
            Status and body.
        """
        name = route.name
        if name.startswith("send_"):
            return self._send(name[5:], body, length)
        if name == "entity":
            return self._entity(body, length)
        if name == "batch":
            return self._batch(body, length)
        if name == "region":
            environment = {"us": 1, "eu": 2}.get(self.region, 1)
            url = self._base_url()
            return 200, dumps({"url": url, "region": self.region, "environment_id": environment})
        if name == "merge_customers":
            return self._merge(body)
        return self._v1(route, body)

    # -- Track v1 -------------------------------------------------------------------------

    def _v1(self, route: Route, body: Any) -> Answer:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            return 400, v1_errors("request body must be a JSON object")
        ws, name = self.workspace, route.name
        ident: Identifier | None = None
        if route.params:
            problem = v.check_identifier(route.params[0], "identifier")
            if problem:
                return 400, v1_errors(problem)
            ident = v1_identifier(route.params[0])
        if name in ("track", "track_anonymous"):
            errors = v.check_event(body, "data")
            if errors:
                return 400, v1_errors(*(message for _, message in errors))
            ws.add_event(ident, v.normalise_event(body, "data", None))
        elif ident is None:  # pragma: no cover - every other v1 route has a path id
            return 404, b""
        elif name == "identify":
            messages = v.check_attributes(body)
            if messages:
                return 400, v1_errors(*messages)
            ws.identify(ident, body)
        elif name == "delete":
            ws.delete(ident)
        elif name == "add_device":
            errors = v.check_device(body.get("device"), "id")
            if errors:
                return 400, v1_errors(*(message for _, message in errors))
            ws.add_device(ident, dict(body["device"]))
        elif name == "delete_device":
            ws.delete_device(ident, route.params[1])
        else:
            ws.suppress(ident, on=name == "suppress")
        return _OK

    def _merge(self, body: Any) -> Answer:
        if not isinstance(body, dict):
            return 400, meta_error("request body must be a JSON object")
        primary, problem = v.merge_party(body.get("primary"), "primary")
        if primary is None:
            return 400, meta_error(problem or "invalid primary")
        secondary, problem = v.merge_party(body.get("secondary"), "secondary")
        if secondary is None:
            return 400, meta_error(problem or "invalid secondary")
        self.workspace.merge(primary, secondary)
        return _OK

    # -- Track v2 -------------------------------------------------------------------------

    def _entity(self, body: Any, length: int) -> Answer:
        if length > v.MAX_V2_OP_BYTES:
            message = f"request must be {v.MAX_V2_OP_BYTES} bytes or less"
            return 400, dumps({"errors": [v2_error("too_large", "", message)]})
        errors = self._op(body)
        if errors:
            return 400, dumps({"errors": errors})
        return _OK

    def _batch(self, body: Any, length: int) -> Answer:
        if length > v.MAX_V2_BATCH_BYTES:
            message = f"batch must be {v.MAX_V2_BATCH_BYTES} bytes or less"
            return 400, dumps({"errors": [v2_error("too_large", "batch", message)]})
        ops = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(ops, list) or not ops:
            message = "batch must be a non-empty array of operations"
            return 400, dumps({"errors": [v2_error("required", "batch", message)]})
        failures: list[dict[str, Any]] = []
        for index, op in enumerate(ops):
            if v.size(op) > v.MAX_V2_OP_BYTES:
                message = f"operation must be {v.MAX_V2_OP_BYTES} bytes or less"
                errors = [v2_error("too_large", "", message)]
            else:
                errors = self._op(op)
            failures.extend({"batch_index": index, **error} for error in errors)
        if failures:
            return 207, dumps({"errors": failures})
        return _OK

    def _op(self, op: Any) -> list[dict[str, str]]:
        """Check one v2 operation and apply it when valid; return its errors."""
        if not isinstance(op, dict):
            return [v2_error("invalid", "", "operation must be a JSON object")]
        kind, action = op.get("type"), op.get("action")
        actions = {
            "person": _PERSON_ACTIONS,
            "object": _OBJECT_ACTIONS,
            "delivery": frozenset({"event"}),
        }.get(kind if isinstance(kind, str) else "")
        if actions is None:
            return [v2_error("invalid", "type", "type must be person, object or delivery")]
        if action not in actions:
            return [v2_error("invalid", "action", f"action is not valid for type {kind}")]
        if kind == "person":
            return self._person_op(op, action)
        identifiers = op.get("identifiers")
        if not isinstance(identifiers, dict) or not identifiers:
            return [v2_error("required", "identifiers", "identifiers must be an object")]
        if kind == "delivery":
            if op.get("name") not in _DELIVERY_METRICS:
                message = "name must be one of opened, converted, delivered"
                return [v2_error("invalid", "name", message)]
            with self.workspace.lock:
                self.workspace.delivery_metrics.append(op)
            return []
        errors = v.check_attributes(op.get("attributes") or {})
        if errors:
            return [v2_error("too_large", "attributes", message) for message in errors]
        key = (str(identifiers.get("object_type_id")), str(identifiers.get("object_id")))
        with self.workspace.lock:
            if action == "delete":
                self.workspace.objects.pop(key, None)
            elif action.startswith("identify"):
                self.workspace.objects.setdefault(key, {}).update(op.get("attributes") or {})
        return []

    def _person_op(self, op: dict[str, Any], action: str) -> list[dict[str, str]]:
        ws = self.workspace
        if action == "merge":
            primary, problem = v.merge_party(op.get("primary"), "primary")
            secondary, problem2 = v.merge_party(op.get("secondary"), "secondary")
            if primary is None or secondary is None:
                field = "primary" if primary is None else "secondary"
                return [v2_error("invalid", field, problem or problem2 or "invalid")]
            ws.merge(primary, secondary)
            return []
        identifiers = op.get("identifiers")
        if not isinstance(identifiers, dict) or len(identifiers) != 1:
            message = "identifiers must hold exactly one of id, email, phone or cio_id"
            return [v2_error("invalid", "identifiers", message)]
        ((id_kind, id_value),) = identifiers.items()
        problem = v.check_identifier(id_value, f"identifiers.{id_kind}")
        if id_kind not in _PERSON_KEYS:
            problem = "identifiers must hold exactly one of id, email, phone or cio_id"
        if problem:
            return [v2_error("invalid", "identifiers", problem)]
        ident = (str(id_kind), str(id_value))
        if action in ("event", "page", "screen"):
            errors = v.check_event(op, "attributes", within=v.MAX_V2_OP_BYTES)
            if errors:
                return [v2_error("invalid", field, message) for field, message in errors]
            ws.add_event(ident, v.normalise_event(op, "attributes", action))
        elif action == "identify":
            attributes = op.get("attributes") or {}
            messages = v.check_attributes(attributes)
            if messages:
                return [v2_error("invalid", "attributes", message) for message in messages]
            if "timestamp" in op:
                attributes = {**attributes, "_timestamp": op["timestamp"]}
            ws.identify(ident, attributes)
        elif action in ("add_device", "delete_device"):
            device = op.get("device")
            errors = v.check_device(device, "token")
            if action == "delete_device":
                errors = [e for e in errors if e[0] != "device.platform"]
            if errors:
                return [v2_error("invalid", field, message) for field, message in errors]
            assert isinstance(device, dict)
            if action == "add_device":
                ws.add_device(ident, {"id": device["token"], **device})
            else:
                ws.delete_device(ident, device["token"])
        elif action == "delete":
            ws.delete(ident)
        elif action in ("suppress", "unsuppress"):
            ws.suppress(ident, on=action == "suppress")
        return []

    # -- App API --------------------------------------------------------------------------

    def _send(self, kind: str, body: Any, length: int) -> Answer:
        if length > v.MAX_SEND_BYTES or not isinstance(body, dict):
            return 400, meta_error(_SEND_MESSAGE)
        template = body.get("transactional_message_id")
        inline = kind == "email" and all(body.get(k) for k in ("body", "subject", "from"))
        if template in (None, "") and not inline:
            return 400, meta_error("'transactional_message_id' is required")
        identifiers = body.get("identifiers")
        if (
            not isinstance(identifiers, dict)
            or len(identifiers) != 1
            or next(iter(identifiers)) not in ("id", "email", "cio_id")
            or next(iter(identifiers.values())) in (None, "")
        ):
            return 400, meta_error("'identifiers' must hold exactly one of id, email or cio_id")
        delivery = Delivery(
            kind=kind, body=body, delivery_id=new_ulid(), queued_at=int(time.time())
        )
        with self.workspace.lock:
            self.workspace.deliveries.append(delivery)
        return 200, dumps({"delivery_id": delivery.delivery_id, "queued_at": delivery.queued_at})
