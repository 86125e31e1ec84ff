"""A tiny health endpoint: a WSGI app, an ASGI app, and a threaded server.

Each answers ``GET /`` (also ``/health`` and ``/healthz``) with the JSON of a
:class:`~resilio.telemetry.health.HealthReport`: status 200 when healthy or degraded, 503 when
unhealthy. Other paths get 404, other methods 405. The report holds names, states, times and
counts only.
"""

from __future__ import annotations

import asyncio
import json
import socketserver
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from resilio.telemetry._settings import start_health_statistics
from resilio.telemetry.health import health

__all__ = ["PATHS", "asgi_app", "make_health_server", "serve", "wsgi_app"]

PATHS = frozenset({"/", "/health", "/healthz"})
"""The paths that answer with the report."""

_REASONS = {
    200: "200 OK",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    503: "503 Service Unavailable",
}


def _answer(method: str, path: str, source: Any, probe: bool) -> tuple[int, bytes]:
    if path not in PATHS:
        return 404, b'{"error": "not found"}'
    if method not in ("GET", "HEAD"):
        return 405, b'{"error": "method not allowed"}'
    report = health(source, probe=probe)
    body = json.dumps(report.to_dict(), sort_keys=True).encode()
    return report.http_status, body


def wsgi_app(source: Any = None, *, probe: bool = False) -> Callable[..., Iterable[bytes]]:
    """Return a WSGI application serving health reports.

    Args:
        source: What to report on, as for :func:`resilio.health` (``None``: every live pipeline).
        probe: Run registered probes on each request.

    Returns:
        A WSGI callable, to mount in any WSGI server or framework.
    """
    start_health_statistics()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        status, body = _answer(method, environ.get("PATH_INFO", "/") or "/", source, probe)
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
        start_response(_REASONS[status], headers)
        return [b"" if method == "HEAD" else body]

    return app


def asgi_app(source: Any = None, *, probe: bool = False) -> Callable[..., Any]:
    """Return an ASGI (3.0) application serving health reports.

    Args:
        source: What to report on, as for :func:`resilio.health`.
        probe: Run registered probes on each request (in a worker thread, off the event loop).

    Returns:
        An ASGI callable; it also answers the lifespan protocol.
    """
    start_health_statistics()

    async def app(
        scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method, path = scope.get("method", "GET"), scope.get("path", "/")
        if probe:
            status, body = await asyncio.to_thread(_answer, method, path, source, True)
        else:
            status, body = _answer(method, path, source, False)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    return app


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Drop the per-request access log line."""


def make_health_server(
    port: int, source: Any = None, *, host: str = "127.0.0.1", probe: bool = False
) -> WSGIServer:
    """Return a threaded HTTP server for the health endpoint, bound but not yet serving.

    Args:
        port: TCP port (0 picks a free one; read it back from ``server.server_port``).
        source: What to report on, as for :func:`resilio.health`.
        host: Address to bind (loopback by default).
        probe: Run registered probes on each request.

    Returns:
        The server; call ``serve_forever()`` (and ``shutdown()``/``server_close()`` to stop).
    """
    return make_server(
        host,
        port,
        wsgi_app(source, probe=probe),
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )


def serve(port: int, source: Any = None, *, host: str = "127.0.0.1", probe: bool = False) -> None:
    """Serve the health endpoint until interrupted (blocking).

    Args:
        port: TCP port.
        source: What to report on, as for :func:`resilio.health`.
        host: Address to bind (loopback by default; ``"0.0.0.0"`` for every interface).
        probe: Run registered probes on each request.
    """
    server = make_health_server(port, source, host=host, probe=probe)
    try:
        server.serve_forever()
    finally:
        server.server_close()
