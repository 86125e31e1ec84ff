"""The health endpoint: WSGI app called directly, ASGI app, and a real loopback server."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from resilio import CircuitBreaker, Pipeline
from resilio.telemetry.http import asgi_app, make_health_server, wsgi_app
from resilio.testing import FakeClock


def _open(clock: FakeClock) -> Pipeline:
    p = Pipeline([CircuitBreaker(failure_threshold=1, break_duration=10)], name="h", clock=clock)

    def failing() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        p.execute(failing)
    return p


def _call_wsgi(app: Any, path: str = "/health", method: str = "GET") -> tuple[str, bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO()}
    body = b"".join(app(environ, start_response))
    return seen["status"], body


class TestWsgi:
    def test_healthy_200(self, clock: FakeClock) -> None:
        """A healthy pipeline answers 200 with the JSON report."""
        p = Pipeline([CircuitBreaker()], name="ok", clock=clock)
        status, body = _call_wsgi(wsgi_app([p]))
        assert status == "200 OK"
        assert json.loads(body)["status"] == "healthy"

    def test_open_breaker_503(self, clock: FakeClock) -> None:
        """An open breaker answers 503 with status unhealthy."""
        status, body = _call_wsgi(wsgi_app([_open(clock)]))
        assert status == "503 Service Unavailable"
        assert json.loads(body)["status"] == "unhealthy"

    def test_unknown_path_and_method(self) -> None:
        """Unknown paths get 404 and non-GET methods 405."""
        assert _call_wsgi(wsgi_app([]), "/nope")[0] == "404 Not Found"
        assert _call_wsgi(wsgi_app([]), "/", "POST")[0] == "405 Method Not Allowed"


class TestServer:
    def test_real_loopback_server(self, clock: FakeClock) -> None:
        """A real server on loopback answers 200, then 503 once the breaker opened."""
        pipelines: list[Pipeline] = [Pipeline([CircuitBreaker()], name="fine", clock=clock)]
        server = make_health_server(0, pipelines)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                assert response.status == 200
                assert json.loads(response.read())["pipelines"][0]["name"] == "fine"
            pipelines.append(_open(clock))
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(url, timeout=5)
            assert info.value.code == 503
            assert json.loads(info.value.read())["status"] == "unhealthy"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


class TestAsgi:
    async def test_asgi_503(self, clock: FakeClock) -> None:
        """The ASGI app answers 503 and the JSON report for an open breaker."""
        app = asgi_app([_open(clock)])
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app({"type": "http", "method": "GET", "path": "/"}, receive, send)
        assert sent[0]["status"] == 503
        assert json.loads(sent[1]["body"])["status"] == "unhealthy"

    async def test_asgi_lifespan(self) -> None:
        """The ASGI app completes the lifespan startup and shutdown handshake."""
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        sent: list[str] = []

        async def receive() -> dict[str, Any]:
            return next(messages)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        await asgi_app([])({"type": "lifespan"}, receive, send)
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
