"""The Simulator: a local Customer.io Track and App API for tests, demos and benchmarks."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self

from resilio_customerio.testing._api import INVALID_JSON, Api
from resilio_customerio.testing._certs import TLSMaterial, make_tls
from resilio_customerio.testing._faults import FaultAction, Faults
from resilio_customerio.testing._routes import Route, fault_body, meta_error, route
from resilio_customerio.testing._server import Exchange, SimulatorHTTPServer
from resilio_customerio.testing._state import Delivery, RecordedRequest, Workspace

_REGIONS = ("us", "eu")


class Simulator:
    """A local HTTPS server that answers like Customer.io's Track API (v1, v2) and App API.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`); point the real
    ``customerio`` clients at it with :meth:`client_kwargs` and :meth:`api_client_kwargs`, and
    make them trust its certificate with :meth:`trust`.

    Args:
        site_id: Track API site id the server accepts.
        api_key: Track API key the server accepts.
        app_key: App API key the server accepts.
        region: ``"us"`` or ``"eu"``, reported by ``GET /api/v1/accounts/region``.
        tls: Serve HTTPS with a throwaway CA (the real client only speaks HTTPS).
        port: Port to listen on (loopback only); 0 picks a free one.
        faults: Fault plan; a fresh, empty :class:`Faults` by default.
        clock: Monotonic clock in seconds for fault windows, rate limits and request times;
            ``time.monotonic`` by default.

    Raises:
        ValueError: For an unknown region.
    """

    host = "127.0.0.1"
    url_prefix = "/api/v1"

    def __init__(
        self,
        site_id: str = "site",
        api_key: str = "key",
        app_key: str = "appkey",
        region: str = "us",
        tls: bool = True,
        port: int = 0,
        faults: Faults | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if region not in _REGIONS:
            raise ValueError(f"region must be 'us' or 'eu', got {region!r}")
        self.site_id, self.api_key, self.app_key, self.region = site_id, api_key, app_key, region
        self.tls = tls
        self.faults = faults if faults is not None else Faults()
        self._clock = clock or time.monotonic
        self._requested_port = port
        self._workspace = Workspace()
        self._api = Api(
            self._workspace,
            site_id=site_id,
            api_key=api_key,
            app_key=app_key,
            region=region,
            base_url=lambda: self.api_url,
        )
        self._tls: TLSMaterial | None = None
        self._server: SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._started_at = 0.0
        self.port = port
        self.faults_injected = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving in a background thread.

        Returns:
            The simulator itself.

        Raises:
            RuntimeError: If it is already running.
        """
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._tls = make_tls() if self.tls else None
        self._server = SimulatorHTTPServer(
            self._requested_port,
            self._dispatch,
            self._tls.context if self._tls else None,
            lambda: self.faults.drop_idle,
        )
        self.port = int(self._server.server_address[1])
        self._started_at = self._clock()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"cio-simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and remove the temporary CA file."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._tls is not None:
            self._tls.cleanup()
            self._tls = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses and client settings ----------------------------------------------------

    @property
    def api_url(self) -> str:
        """Base URL of the server (the App API base), e.g. ``https://127.0.0.1:PORT``."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def track_url(self) -> str:
        """Base URL of the Track v1 API, e.g. ``https://127.0.0.1:PORT/api/v1``."""
        return self.api_url + self.url_prefix

    @property
    def ca_path(self) -> str | None:
        """PEM file of the CA clients must trust; None for plain HTTP or when stopped."""
        return self._tls.ca_path if self._tls else None

    def client_kwargs(self) -> dict[str, Any]:
        """Return keyword arguments for ``customerio.CustomerIO`` aimed at this simulator.

        Returns:
            ``site_id``, ``api_key``, ``host``, ``port`` and ``url_prefix``.
        """
        return {
            "site_id": self.site_id,
            "api_key": self.api_key,
            "host": self.host,
            "port": self.port,
            "url_prefix": self.url_prefix,
        }

    def api_client_kwargs(self) -> dict[str, Any]:
        """Return keyword arguments for ``customerio.APIClient`` aimed at this simulator.

        Returns:
            ``key`` and ``url``.
        """
        return {"key": self.app_key, "url": self.api_url}

    @contextlib.contextmanager
    def trust(self) -> Iterator[str | None]:
        """Point ``REQUESTS_CA_BUNDLE`` at the simulator's CA for the duration of the block.

        Yields:
            The CA file path (None for plain HTTP, in which case nothing changes).
        """
        ca_path = self.ca_path
        if ca_path is None:
            yield None
            return
        previous = os.environ.get("REQUESTS_CA_BUNDLE")
        os.environ["REQUESTS_CA_BUNDLE"] = ca_path
        try:
            yield ca_path
        finally:
            if previous is None:
                os.environ.pop("REQUESTS_CA_BUNDLE", None)
            else:
                os.environ["REQUESTS_CA_BUNDLE"] = previous

    # -- recorded state -------------------------------------------------------------------

    def elapsed(self) -> float:
        """Return seconds since :meth:`start`, by the simulator's clock.

        Returns:
            Elapsed seconds.
        """
        return self._clock() - self._started_at

    def customer(self, identifier: str) -> dict[str, Any] | None:
        """Return a copy of a person's attributes; None if never identified or deleted.

        Args:
            identifier: The id the person was created with (or a known email or phone).

        Returns:
            The attributes, or None.
        """
        ws = self._workspace
        with ws.lock:
            key = ws.resolve(("email", identifier) if "@" in identifier else ("id", identifier))
            return None if key is None else copy.deepcopy(ws.people[key])

    def events(self, identifier: str) -> list[dict[str, Any]]:
        """Return the accepted events of a person (duplicates by ``id`` excluded).

        Args:
            identifier: The person's key (the identifier the events were sent with).

        Returns:
            Events as dicts with ``name``, ``id``, ``type``, ``timestamp`` and ``data``.
        """
        with self._workspace.lock:
            return copy.deepcopy(self._workspace.events.get(identifier, []))

    def anonymous_events(self) -> list[dict[str, Any]]:
        """Return accepted anonymous events (``anonymous_id`` included when sent).

        Returns:
            The events, in arrival order.
        """
        with self._workspace.lock:
            return copy.deepcopy(self._workspace.anonymous)

    def devices(self, identifier: str) -> dict[str, dict[str, Any]]:
        """Return a person's devices by device id.

        Args:
            identifier: The person's key.

        Returns:
            Device id to device fields.
        """
        with self._workspace.lock:
            return copy.deepcopy(self._workspace.devices.get(identifier, {}))

    def suppressed(self, identifier: str) -> bool:
        """Return whether a person is suppressed.

        Args:
            identifier: The person's key.

        Returns:
            True when suppressed.
        """
        with self._workspace.lock:
            return identifier in self._workspace.suppressed

    def deliveries(self) -> list[Delivery]:
        """Return accepted transactional sends, in arrival order.

        Returns:
            The deliveries.
        """
        with self._workspace.lock:
            return list(self._workspace.deliveries)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order (including rejected and faulted ones)."""
        with self._workspace.lock:
            return list(self._workspace.requests)

    def stats(self) -> dict[str, Any]:
        """Return counters.

        Returns:
            ``requests``, ``accepted_events``, ``duplicates``, ``deliveries``, ``connections``,
            ``faults_injected`` and ``statuses`` (status code, or None for a reset, to count).
        """
        ws = self._workspace
        with ws.lock:
            return {
                "requests": len(ws.requests),
                "accepted_events": ws.accepted_events,
                "duplicates": ws.duplicates,
                "deliveries": len(ws.deliveries),
                "connections": self._server.connection_count if self._server else 0,
                "faults_injected": self.faults_injected,
                "statuses": dict(ws.statuses),
            }

    def reset(self) -> None:
        """Forget people, events, deliveries and recorded requests (faults are kept)."""
        self._workspace.reset()
        self.faults_injected = 0

    # -- request handling -----------------------------------------------------------------

    def _dispatch(self, exchange: Exchange) -> None:
        path = exchange.path.partition("?")[0]
        where = route(exchange.method, path)
        body: Any = None
        if exchange.body:
            try:
                body = json.loads(exchange.body)
            except ValueError:
                body = INVALID_JSON
        elapsed = self.elapsed()
        action = self.faults.decide(
            name=where.name, family=where.family, method=exchange.method, path=path, elapsed=elapsed
        )
        if action is not None and self._inject(exchange, where, body, elapsed, action):
            return
        status, payload, headers = self._answer(exchange, where, body)
        if action is not None and action.reset == "after":
            self._record(exchange, where, body, elapsed, None, action)
            exchange.reset()
            return
        self._record(exchange, where, body, elapsed, status, action)
        if action is not None and action.delay:
            self._wait(action.delay)
        exchange.respond(status, payload, headers)

    def _inject(
        self, exchange: Exchange, where: Route, body: Any, elapsed: float, action: FaultAction
    ) -> bool:
        """Apply the parts of a fault that come before handling; True when it answered."""
        with self._workspace.lock:
            self.faults_injected += 1
        if action.latency:
            self._wait(action.latency)
        if action.reset == "before":
            self._record(exchange, where, body, elapsed, None, action)
            exchange.reset()
            return True
        if action.status is None:
            return False
        headers = {}
        if action.retry_after is not None:
            headers["Retry-After"] = action.retry_after
        if action.location is not None:
            headers["Location"] = action.location
        payload = (
            action.body.encode()
            if action.body is not None
            else fault_body(where, action.status, action.retry_after)
        )
        self._record(exchange, where, body, elapsed, action.status, action)
        exchange.respond(action.status, payload, headers)
        return True

    def _answer(
        self, exchange: Exchange, where: Route, body: Any
    ) -> tuple[int, bytes, dict[str, str]]:
        if where.name == "unknown":
            return 404, meta_error("Not Found"), {}
        if where.name == "method_not_allowed":
            return 405, meta_error("Method Not Allowed"), {"Allow": ", ".join(where.allowed)}
        if not self._api.authorised(where, exchange.header("Authorization")):
            status, payload = self._api.unauthorised(where)
            return status, payload, {}
        status, payload = self._api.handle(where, body, len(exchange.body))
        return status, payload, {}

    def _record(
        self,
        exchange: Exchange,
        where: Route,
        body: Any,
        elapsed: float,
        status: int | None,
        action: FaultAction | None,
    ) -> None:
        recorded = RecordedRequest(
            method=exchange.method,
            path=exchange.path,
            headers=exchange.headers,
            body=None if body is INVALID_JSON else body,
            status=status,
            time=elapsed,
            endpoint=where.name,
            fault=None if action is None else action.source,
        )
        ws = self._workspace
        with ws.lock:
            ws.requests.append(recorded)
            ws.statuses[status] += 1

    def _wait(self, seconds: float) -> None:
        server = self._server
        if server is None:
            return
        server.stopping.wait(seconds)
