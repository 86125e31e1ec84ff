"""The adapter's ``customerio`` clients: no hidden retries, no redirects, headers captured.

The adapter builds the official clients with ``retries=0`` and also replaces their urllib3
adapter with one whose retry policy never retries and never raises on a status, so a 5xx or a
429 comes back as the response the client reports (``"503: ..."``) instead of an opaque
``RetryError``, and one logical call is exactly the attempts resilio makes. A response hook
records each response's status and ``Retry-After`` per thread (the client's exception text does
not carry headers) and refuses redirects: requests would drop credentials on a cross-host
redirect and turn a POST into a GET.
"""

from __future__ import annotations

import threading
from typing import Any

import requests
from customerio import APIClient, CustomerIO
from customerio.client_base import TCPKeepAliveHTTPAdapter
from urllib3.util.retry import Retry

from resilio_customerio.classify import RedirectRefused

__all__ = ["AppClient", "ResponseTap", "TrackClient"]


class ResponseTap(threading.local):
    """The last response's status and ``Retry-After`` header, per thread.

    Attributes:
        status: Status code of the last response on this thread.
        retry_after: Its ``Retry-After`` header, if any.
    """

    status: int | None = None
    retry_after: str | None = None

    def clear(self) -> None:
        """Forget the last response (called before each attempt)."""
        self.status = None
        self.retry_after = None

    def hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        """Record a response; refuse redirects (a ``requests`` response hook).

        Raises:
            RedirectRefused: If the response is a redirect.
        """
        self.status = response.status_code
        self.retry_after = response.headers.get("Retry-After")
        if response.is_redirect:
            response.close()
            raise RedirectRefused(response.status_code)
        return response


def _no_retry() -> Retry:
    return Retry(
        total=0,
        read=False,
        redirect=False,
        status_forcelist=(),
        allowed_methods=None,
        respect_retry_after_header=False,
        raise_on_redirect=False,
        raise_on_status=False,
    )


def _tune(session: requests.Session, tap: ResponseTap, pool_size: int) -> requests.Session:
    adapter = TCPKeepAliveHTTPAdapter(
        max_retries=_no_retry(), pool_connections=4, pool_maxsize=pool_size
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.max_redirects = 0
    session.hooks["response"] = [tap.hook]
    return session


class TrackClient(CustomerIO):  # type: ignore[misc]
    """``customerio.CustomerIO`` with the adapter's session (see the module docstring)."""

    def __init__(self, *args: Any, tap: ResponseTap, pool_size: int = 10, **kwargs: Any) -> None:
        self.tap = tap
        self.pool_size = pool_size
        super().__init__(*args, **kwargs)

    def _build_session(self) -> requests.Session:
        return _tune(super()._build_session(), self.tap, self.pool_size)


class AppClient(APIClient):  # type: ignore[misc]
    """``customerio.APIClient`` with the adapter's session (see the module docstring)."""

    def __init__(self, *args: Any, tap: ResponseTap, pool_size: int = 10, **kwargs: Any) -> None:
        self.tap = tap
        self.pool_size = pool_size
        super().__init__(*args, **kwargs)

    def _build_session(self) -> requests.Session:
        return _tune(super()._build_session(), self.tap, self.pool_size)
