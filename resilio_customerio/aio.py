"""``AsyncResilientCustomerIO``: the adapter's methods as coroutines.

The ``customerio`` client is synchronous. Each attempt runs in a bounded thread pool through
``loop.run_in_executor`` with the caller's context variables, so the event loop never blocks on
the network; retries, backoff waits, timeouts and the breaker run on the loop, and a timeout
really stops waiting for an attempt (the worker thread finishes it in the background).

Example:
    >>> cio = AsyncResilientCustomerIO(site_id, api_key, max_workers=8)  # doctest: +SKIP
    >>> await cio.track("42", "purchase", {"amount": 3})  # doctest: +SKIP

With ``region="auto"`` the region is asked over the network once, when the adapter is built; build
it with ``await AsyncResilientCustomerIO.create(...)`` inside a running loop so that lookup runs
in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

from resilio._operation import Operation
from resilio._pipeline import Pipeline
from resilio_customerio import _build
from resilio_customerio.batching import BatchResult, merge_results, split
from resilio_customerio.classify import classify
from resilio_customerio.client import ResilientCustomerIO, batch_items
from resilio_customerio.operations import SPECS

__all__ = ["AsyncResilientCustomerIO"]


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class AsyncResilientCustomerIO:
    """The asyncio twin of :class:`~resilio_customerio.client.ResilientCustomerIO`.

    Takes the same arguments, plus the size of its thread pool. Building it with
    ``region="auto"`` asks the region endpoint, a blocking call: inside a running event loop use
    :meth:`create`, which builds it in a worker thread. Every method has the same name and
    arguments as the synchronous adapter and is a coroutine.

    Args:
        *args: Positional arguments of :class:`ResilientCustomerIO`.
        max_workers: Threads that run attempts (also the connection pool size by default).
        **kwargs: Keyword arguments of :class:`ResilientCustomerIO`.

    Attributes:
        sync: The synchronous adapter whose clients, pipelines and outbox this one shares.
    """

    def __init__(self, *args: Any, max_workers: int = 8, **kwargs: Any) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers!r}")
        region = kwargs.get("region", args[2] if len(args) > 2 else "us")
        if isinstance(region, str) and region.strip().lower() == "auto" and _loop_running():
            warnings.warn(
                "AsyncResilientCustomerIO(region='auto') asks the region endpoint with a blocking "
                "call, here on the running event loop; use "
                "'await AsyncResilientCustomerIO.create(...)', which asks from a worker thread",
                RuntimeWarning,
                stacklevel=2,
            )
        kwargs.setdefault("pool_size", max_workers)
        self.sync = ResilientCustomerIO(*args, **kwargs)
        self.max_workers = max_workers
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="customerio")
        self._operations = {
            spec.name: Operation(
                name=spec.name,
                idempotent=spec.idempotent,
                classifier=classify,
                handler=self._replayer(spec.name),
                pipeline=spec.name,
                description=spec.description,
            )
            for spec in SPECS.values()
        }

    @classmethod
    async def create(cls, *args: Any, max_workers: int = 8, **kwargs: Any) -> Self:
        """Build the adapter in a worker thread, so the event loop never waits on the network.

        Resolving ``region="auto"`` and loading the configuration (which may connect to
        Redis) block; this runs them off the loop.

        Example:
            >>> make = AsyncResilientCustomerIO.create
            >>> cio = await make(site_id, api_key, region="auto")  # doctest: +SKIP

        Args:
            *args: Positional arguments of :class:`ResilientCustomerIO`.
            max_workers: Threads that run attempts.
            **kwargs: Keyword arguments of :class:`ResilientCustomerIO`.

        Returns:
            The adapter.
        """
        build = functools.partial(cls, *args, max_workers=max_workers, **kwargs)
        return await asyncio.to_thread(build)

    # -- running ------------------------------------------------------------------------------

    async def _offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        return await loop.run_in_executor(self._executor, call)

    async def attempt(self, name: str, payload: dict[str, Any]) -> Any:
        """Make one attempt in the thread pool (see ``ResilientCustomerIO.attempt``).

        Args:
            name: The operation's name.
            payload: Its payload.

        Returns:
            What the client returned.
        """
        return await self._offload(self.sync.attempt, name, payload)

    async def _run(self, name: str, payload: dict[str, Any]) -> Any:
        sync = self.sync
        if name.startswith("customerio.send_"):
            sync.require_api_client()
        context = sync.context(name, payload)
        pipeline = sync._pipelines[name]
        return await pipeline.execute_async(self.attempt, name, payload, context=context)

    def _replayer(self, name: str) -> Callable[[Any], Any]:
        async def handler(payload: Any) -> Any:
            return await self.attempt(name, payload)

        return handler

    def pipeline(self, name: str) -> Pipeline:
        """Return the pipeline an operation replays through (see ``ResilientCustomerIO``)."""
        return self.sync.pipeline(name)

    def operation(self, name: str) -> Operation:
        """Return an operation whose (async) handler replays in this adapter's thread pool."""
        return self._operations[name]

    # -- Track API ----------------------------------------------------------------------------

    async def identify(self, id: str | int, **kwargs: Any) -> Any:
        """Coroutine version of ``ResilientCustomerIO.identify``."""
        op = "customerio.identify"
        if self.sync._buffer is not None:
            return await self._offload(functools.partial(self.sync.identify, id, **kwargs))
        return await self._run(op, _build.identify(op, id, kwargs))

    async def track(
        self,
        customer_id: str | int,
        name: str,
        data: Mapping[str, Any] | None = None,
        id: str | None = None,
        timestamp: Any = None,
    ) -> Any:
        """Coroutine version of ``ResilientCustomerIO.track``."""
        op = "customerio.track"
        if self.sync._buffer is not None:
            return await self._offload(self.sync.track, customer_id, name, data, id, timestamp)
        payload = _build.event(op, "customer_id", customer_id, name, data, id, timestamp)
        return await self._run(op, payload)

    async def track_anonymous(
        self,
        anonymous_id: str | None,
        name: str,
        data: Mapping[str, Any] | None = None,
        id: str | None = None,
        timestamp: Any = None,
    ) -> Any:
        """Coroutine version of ``ResilientCustomerIO.track_anonymous``."""
        op = "customerio.track_anonymous"
        payload = _build.event(op, "anonymous_id", anonymous_id, name, data, id, timestamp)
        return await self._run(op, payload)

    async def pageview(self, customer_id: str | int, page: str, **data: Any) -> Any:
        """Coroutine version of ``ResilientCustomerIO.pageview``."""
        op = "customerio.pageview"
        return await self._run(op, _build.pageview(op, customer_id, page, data))

    async def backfill(self, customer_id: str | int, name: str, timestamp: Any, **data: Any) -> Any:
        """Coroutine version of ``ResilientCustomerIO.backfill``."""
        op = "customerio.backfill"
        payload = _build.event(
            op, "customer_id", customer_id, name, data, None, timestamp, timestamp_required=True
        )
        return await self._run(op, payload)

    async def delete(self, customer_id: str | int) -> Any:
        """Coroutine version of ``ResilientCustomerIO.delete``."""
        op = "customerio.delete"
        return await self._run(op, _build.customer(op, customer_id))

    async def add_device(
        self, customer_id: str | int, device_id: str, platform: str, **data: Any
    ) -> Any:
        """Coroutine version of ``ResilientCustomerIO.add_device``."""
        op = "customerio.add_device"
        return await self._run(op, _build.device(op, customer_id, device_id, platform, data))

    async def delete_device(self, customer_id: str | int, device_id: str) -> Any:
        """Coroutine version of ``ResilientCustomerIO.delete_device``."""
        op = "customerio.delete_device"
        return await self._run(op, _build.device(op, customer_id, device_id))

    async def suppress(self, customer_id: str | int) -> Any:
        """Coroutine version of ``ResilientCustomerIO.suppress``."""
        op = "customerio.suppress"
        return await self._run(op, _build.customer(op, customer_id))

    async def unsuppress(self, customer_id: str | int) -> Any:
        """Coroutine version of ``ResilientCustomerIO.unsuppress``."""
        op = "customerio.unsuppress"
        return await self._run(op, _build.customer(op, customer_id))

    async def merge_customers(
        self,
        primary_id_type: str,
        primary_id: str | int,
        secondary_id_type: str,
        secondary_id: str | int,
    ) -> Any:
        """Coroutine version of ``ResilientCustomerIO.merge_customers``."""
        op = "customerio.merge_customers"
        payload = _build.merge(op, primary_id_type, primary_id, secondary_id_type, secondary_id)
        return await self._run(op, payload)

    async def batch(self, operations: Sequence[Mapping[str, Any]]) -> BatchResult:
        """Coroutine version of ``ResilientCustomerIO.batch``."""
        op = "customerio.batch"
        ops = _build.batch_operations(op, operations)
        parts = []
        for indexes in split(ops, op):
            try:
                outcome: Any = await self._run(op, {"operations": [ops[i] for i in indexes]})
            except Exception as exc:  # reported per item
                outcome = exc
            parts.append((indexes, batch_items(indexes, outcome)))
        return merge_results(parts, len(ops))

    # -- App API ------------------------------------------------------------------------------

    async def send_email(self, request: Any) -> Any:
        """Coroutine version of ``ResilientCustomerIO.send_email``."""
        op = "customerio.send_email"
        return await self._run(op, _build.send(op, request))

    async def send_push(self, request: Any) -> Any:
        """Coroutine version of ``ResilientCustomerIO.send_push``."""
        op = "customerio.send_push"
        return await self._run(op, _build.send(op, request))

    async def send_sms(self, request: Any) -> Any:
        """Coroutine version of ``ResilientCustomerIO.send_sms``."""
        op = "customerio.send_sms"
        return await self._run(op, _build.send(op, request))

    async def send_whatsapp(self, request: Any) -> Any:
        """Coroutine version of ``ResilientCustomerIO.send_whatsapp``."""
        op = "customerio.send_whatsapp"
        return await self._run(op, _build.send(op, request))

    async def send_inbox_message(self, request: Any) -> Any:
        """Coroutine version of ``ResilientCustomerIO.send_inbox_message``."""
        op = "customerio.send_inbox_message"
        return await self._run(op, _build.send(op, request))

    async def send_in_app(self, request: Any) -> Any:
        """Coroutine version of ``ResilientCustomerIO.send_in_app``."""
        op = "customerio.send_in_app"
        return await self._run(op, _build.send(op, request))

    # -- lifecycle ----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Send what the batch buffer holds now, without blocking the loop."""
        await self._offload(self.sync.flush)

    async def aclose(self) -> None:
        """Flush, close the clients and stop the thread pool, without blocking the loop."""
        await self._offload(self.sync.close)
        self._executor.shutdown(wait=False)

    def close(self) -> None:
        """Flush, close the clients and stop the thread pool (blocking)."""
        self.sync.close()
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> AsyncResilientCustomerIO:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncResilientCustomerIO(region={self.sync.region.name!r})"
