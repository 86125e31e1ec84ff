"""The threaded HTTP/1.1 server: connection handling, keep-alive, resets and idle drops."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_READ_TICK = 0.2
_HANDSHAKE_TIMEOUT = 5.0
_LINGER_RESET = struct.pack("ii", 1, 0)
_MAX_LINE = 65536
_MAX_HEADERS = 100


class Exchange:
    """One request being answered: what the dispatcher reads and how it answers.

    Args:
        handler: The connection's request handler.
    """

    __slots__ = ("_handler", "_lookup", "answered", "body", "headers", "method", "path")

    def __init__(self, handler: _Handler, method: str, path: str, headers: dict[str, str]) -> None:
        self._handler = handler
        self.method = method
        self.path = path
        self.headers = headers
        self._lookup = {name.lower(): value for name, value in headers.items()}
        length = int(self._lookup.get("content-length") or 0)
        self.body: bytes = handler.rfile.read(length) if length > 0 else b""
        self.answered = False

    def header(self, name: str) -> str | None:
        """Return a request header, case-insensitively.

        Args:
            name: Header name.

        Returns:
            The value, or None when absent.
        """
        return self._lookup.get(name.lower())

    def respond(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Write the whole response in one send (keeps Nagle and delayed ACKs out of the way).

        Args:
            status: Status code.
            body: Body bytes (sent as ``application/json`` when not empty).
            headers: Extra headers.
        """
        handler = self._handler
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {status} {reason}", "Server: resilio-cio-simulator"]
        if body:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if handler.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.answered = True
        with contextlib.suppress(OSError):
            handler.wfile.write(head + body)

    def reset(self) -> None:
        """Close the TCP connection abruptly (RST), without a response."""
        handler = self._handler
        handler.close_connection = True
        self.answered = True
        with contextlib.suppress(OSError):
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        for stream in (handler.rfile, handler.wfile):
            with contextlib.suppress(OSError):
                stream.close()
        with contextlib.suppress(OSError):
            handler.connection.close()


Dispatch = Callable[[Exchange], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: SimulatorHTTPServer

    def setup(self) -> None:
        context = self.server.tls_context
        if context is not None:
            self.request.settimeout(_HANDSHAKE_TIMEOUT)
            self.request = context.wrap_socket(self.request, server_side=True)
            self.request.settimeout(None)
        super().setup()
        self.server.opened(self.request)

    def finish(self) -> None:
        self.server.closed(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _wait_for_request(self) -> bool:
        """Wait for the next request; False when the connection should be closed instead."""
        server, sock = self.server, self.connection
        idle_since = time.monotonic()
        while True:
            if server.stopping.is_set():
                return False
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return True
            idle = server.drop_idle()
            tick = _READ_TICK
            if idle is not None:
                left = idle - (time.monotonic() - idle_since)
                if left <= 0:
                    return False
                tick = min(tick, left)
            try:
                readable, _, _ = select.select([sock], [], [], tick)
            except (OSError, ValueError):
                return False
            if readable:
                return True

    def handle_one_request(self) -> None:
        self.close_connection = True
        if not self._wait_for_request():
            return
        try:
            request = self._read_head()
            if request is None:
                return
            method, path, headers, keep_alive = request
            self.close_connection = not keep_alive
            self.server.dispatch(Exchange(self, method, path, headers))
        except (OSError, ValueError):
            self.close_connection = True

    def _read_head(self) -> tuple[str, str, dict[str, str], bool] | None:
        """Read the request line and headers (a lean parser: this is the hot path)."""
        line = self.rfile.readline(_MAX_LINE + 1)
        if not line:
            return None
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or len(line) > _MAX_LINE:
            self._bad_request()
            return None
        method, path, version = parts
        headers: dict[str, str] = {}
        while True:
            raw = self.rfile.readline(_MAX_LINE + 1)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep or len(headers) >= _MAX_HEADERS or len(raw) > _MAX_LINE:
                self._bad_request()
                return None
            headers[name.strip()] = value.strip()
        connection = next((v for k, v in headers.items() if k.lower() == "connection"), "")
        connection = connection.lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        return method, path, headers, keep_alive

    def _bad_request(self) -> None:
        self.close_connection = True
        body = b"Bad Request"
        head = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 11\r\n\r\n"
        with contextlib.suppress(OSError):
            self.wfile.write(head + body)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the simulator never logs requests (they carry payloads)."""


class SimulatorHTTPServer(ThreadingHTTPServer):
    """A loopback-only threaded server that knows its live connections.

    Args:
        port: TCP port, 0 for a free one.
        dispatch: Called with each :class:`Exchange`.
        tls_context: Server TLS context, or None for plain HTTP.
        drop_idle: Callable returning the idle timeout for keep-alive connections, or None.
    """

    daemon_threads = True
    block_on_close = True
    request_queue_size = 256

    def __init__(
        self,
        port: int,
        dispatch: Dispatch,
        tls_context: ssl.SSLContext | None,
        drop_idle: Callable[[], float | None],
    ) -> None:
        self.dispatch = dispatch
        self.tls_context = tls_context
        self.drop_idle = drop_idle
        self.stopping = threading.Event()
        self.connection_count = 0
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        """Bind without the reverse DNS lookup ``HTTPServer`` does."""
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def opened(self, sock: socket.socket) -> None:
        """Note a new live connection.

        Args:
            sock: The connection's socket.
        """
        with self._live_lock:
            self._live.add(sock)
            self.connection_count += 1

    def closed(self, sock: socket.socket) -> None:
        """Forget a live connection.

        Args:
            sock: The connection's socket.
        """
        with self._live_lock:
            self._live.discard(sock)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Drop the connection quietly (failed handshakes, clients that hang up)."""

    def stop(self) -> None:
        """Stop accepting, close every live connection and join the handler threads."""
        self.stopping.set()
        self.shutdown()
        with self._live_lock:
            live = list(self._live)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.server_close()
