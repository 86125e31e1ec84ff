"""Redis stores: breaker, rate-limiter and idempotency state shared by every process and machine.

One :class:`RedisStore` implements :class:`~resilio.stores.BreakerStore`,
:class:`~resilio.stores.RateLimitStore` and :class:`~resilio.stores.IdempotencyStore`, each in
its synchronous form (``redis.Redis``) and its asynchronous form (``redis.asyncio.Redis``, which
never blocks the event loop). Every operation is one Lua script using the server's clock
(``TIME``). Keys:

* ``{prefix}:breaker:{name}:state`` and ``...:window`` - a breaker's state and its time window;
* ``{prefix}:ratelimit:{name}`` - a token bucket;
* ``{prefix}:idempotency:{key}`` - an idempotency record (expires with its lease or TTL).

The store protects its callers from a Redis outage: sockets time out quickly (250 ms by
default), and after a connection error or timeout the store fails fast with
:class:`StoreUnavailable` for ``cooldown`` seconds without touching the network, so a breaker
using it falls back to local state at once instead of waiting on a dead server.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from resilio.errors import ResilioError
from resilio.stores import _redis_lua as lua
from resilio.stores._protocols import (
    WINDOW_BUCKETS,
    Completed,
    InFlight,
    RateLimitGrant,
    Reservation,
    Reserved,
    SharedBreakerState,
    SharedState,
)

__all__ = ["RedisStore", "StoreUnavailable"]


class StoreUnavailable(ResilioError, ConnectionError):
    """A shared store cannot be reached (or was unreachable moments ago and is cooling down)."""


def _t(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opt_float(value: Any) -> float | None:
    text = _t(value)
    return float(text) if text else None


def _breaker_state(row: list[Any]) -> SharedBreakerState:
    state: Any = _t(row[0])
    return SharedBreakerState(
        state=state,
        version=int(row[1]),
        now=float(_t(row[2])),
        opened_at=_opt_float(row[3]),
        until=_opt_float(row[4]),
        openings=int(row[5]),
        consecutive_failures=int(row[6]),
        window_calls=int(row[7]),
        window_failures=int(row[8]),
        window_slow=int(row[9]),
    )


def _reservation(row: list[Any]) -> Reservation:
    kind = _t(row[0])
    if kind == "reserved":
        return Reserved(_t(row[1]))
    if kind == "completed":
        return Completed(json.loads(_t(row[1])))
    return InFlight(int(_t(row[1])) / 1000.0)


def _dump_result(result: Any) -> str:
    try:
        return json.dumps(result, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        raise TypeError(
            f"idempotency result of type {type(result).__name__} is not JSON-serialisable"
        ) from None


class RedisStore:
    """Shared policy state in Redis (breaker, rate limiter, idempotency), sync and async.

    Args:
        url: A ``redis://`` or ``rediss://`` URL. Clients are made from it: a ``redis.Redis``
            at once and a ``redis.asyncio.Redis`` per event loop on first async use.
        client: An existing ``redis.Redis`` to use instead of one made from ``url``.
        async_client: An existing ``redis.asyncio.Redis`` for the async methods.
        prefix: The first part of every key.
        socket_timeout: Seconds a command (and connecting) may take before it counts as an
            outage, for clients made from ``url``.
        cooldown: Seconds to fail fast after a connection error before trying Redis again.

    Raises:
        ValueError: If neither ``url`` nor ``client`` is given.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        async_client: Any = None,
        prefix: str = "resilio",
        socket_timeout: float = 0.25,
        cooldown: float = 1.0,
    ) -> None:
        import redis

        if client is None and url is None:
            raise ValueError("RedisStore needs a url or a client")
        self.url = url
        self.prefix = prefix
        self.cooldown = cooldown
        self._timeout = socket_timeout
        self.client: Any = client or redis.Redis.from_url(
            url or "redis://", socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        self._async_given = async_client
        self._async: dict[int, tuple[Any, dict[str, Any]]] = {}
        self._down_until = 0.0
        self._errors: tuple[type[BaseException], ...] = (
            redis.ConnectionError,
            redis.TimeoutError,
            OSError,
        )
        self._sources = {
            "load": lua.BREAKER_LOAD,
            "record": lua.BREAKER_RECORD,
            "transition": lua.BREAKER_TRANSITION,
            "acquire": lua.RATE_ACQUIRE,
            "reserve": lua.IDEM_RESERVE,
            "complete": lua.IDEM_COMPLETE,
            "release": lua.IDEM_RELEASE,
        }
        self._scripts = {k: self.client.register_script(v) for k, v in self._sources.items()}

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """Whether the store is not cooling down after a connection error."""
        return time.monotonic() >= self._down_until

    def _refuse_if_down(self) -> None:
        if time.monotonic() < self._down_until:
            raise StoreUnavailable("redis store is unavailable (cooling down after an error)")

    def _failed(self, exc: BaseException) -> StoreUnavailable:
        self._down_until = time.monotonic() + self.cooldown
        return StoreUnavailable(f"redis store is unavailable ({type(exc).__name__})")

    def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        self._refuse_if_down()
        try:
            return self._scripts[script](keys=keys, args=args)
        except self._errors as exc:
            raise self._failed(exc) from exc

    def _async_scripts(self) -> dict[str, Any]:
        loop = id(asyncio.get_running_loop())
        entry = self._async.get(loop)
        if entry is None:
            import redis.asyncio

            client = self._async_given or redis.asyncio.Redis.from_url(
                self.url or "redis://",
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
            )
            scripts = {k: client.register_script(v) for k, v in self._sources.items()}
            entry = self._async[loop] = (client, scripts)
        return entry[1]

    async def _run_async(self, script: str, keys: list[str], args: list[Any]) -> Any:
        self._refuse_if_down()
        try:
            return await self._async_scripts()[script](keys=keys, args=args)
        except self._errors as exc:
            raise self._failed(exc) from exc

    def _bkeys(self, name: str) -> list[str]:
        base = f"{self.prefix}:breaker:{name}"
        return [f"{base}:state", f"{base}:window"]

    def close(self) -> None:
        """Close the synchronous client's connections."""
        self.client.close()

    async def aclose(self) -> None:
        """Close the asynchronous client of the running loop."""
        entry = self._async.pop(id(asyncio.get_running_loop()), None)
        if entry is not None:
            await entry[0].aclose()

    # -- breaker -----------------------------------------------------------------------------

    @staticmethod
    def _record_args(
        successes: int, failures: int, slow: int, trailing: int, window: float
    ) -> list[Any]:
        return [successes, failures, slow, trailing, repr(float(window)), WINDOW_BUCKETS]

    @staticmethod
    def _transition_args(
        expected_version: int | None, state: SharedState, break_duration: float
    ) -> list[Any]:
        expected = "" if expected_version is None else str(expected_version)
        return [expected, state, repr(float(break_duration))]

    def load(self, name: str) -> SharedBreakerState:
        """Return the shared state of breaker ``name`` (see the BreakerStore protocol)."""
        return _breaker_state(self._run("load", self._bkeys(name), []))

    def record(
        self,
        name: str,
        *,
        successes: int,
        failures: int,
        slow: int,
        trailing_failures: int,
        window: float,
    ) -> SharedBreakerState:
        """Add a batch of outcomes to breaker ``name`` (see the BreakerStore protocol)."""
        args = self._record_args(successes, failures, slow, trailing_failures, window)
        return _breaker_state(self._run("record", self._bkeys(name), args))

    def transition(
        self,
        name: str,
        *,
        expected_version: int | None,
        state: SharedState,
        break_duration: float,
    ) -> SharedBreakerState:
        """Compare-and-set breaker ``name``'s state (see the BreakerStore protocol)."""
        args = self._transition_args(expected_version, state, break_duration)
        return _breaker_state(self._run("transition", self._bkeys(name), args))

    async def load_async(self, name: str) -> SharedBreakerState:
        """See :meth:`load`."""
        return _breaker_state(await self._run_async("load", self._bkeys(name), []))

    async def record_async(
        self,
        name: str,
        *,
        successes: int,
        failures: int,
        slow: int,
        trailing_failures: int,
        window: float,
    ) -> SharedBreakerState:
        """See :meth:`record`."""
        args = self._record_args(successes, failures, slow, trailing_failures, window)
        return _breaker_state(await self._run_async("record", self._bkeys(name), args))

    async def transition_async(
        self,
        name: str,
        *,
        expected_version: int | None,
        state: SharedState,
        break_duration: float,
    ) -> SharedBreakerState:
        """See :meth:`transition`."""
        args = self._transition_args(expected_version, state, break_duration)
        return _breaker_state(await self._run_async("transition", self._bkeys(name), args))

    # -- rate limiter ------------------------------------------------------------------------

    def _rkeys(self, name: str) -> list[str]:
        return [f"{self.prefix}:ratelimit:{name}"]

    def acquire(
        self,
        name: str,
        *,
        rate: float,
        per: float,
        burst: float,
        tokens: float = 1.0,
        max_wait: float,
    ) -> RateLimitGrant:
        """Reserve tokens from the shared bucket ``name`` (see the RateLimitStore protocol)."""
        args = [repr(float(x)) for x in (rate, per, burst, tokens, max_wait)]
        granted, wait = self._run("acquire", self._rkeys(name), args)
        return RateLimitGrant(bool(int(granted)), float(_t(wait)))

    async def acquire_async(
        self,
        name: str,
        *,
        rate: float,
        per: float,
        burst: float,
        tokens: float = 1.0,
        max_wait: float,
    ) -> RateLimitGrant:
        """See :meth:`acquire`."""
        args = [repr(float(x)) for x in (rate, per, burst, tokens, max_wait)]
        granted, wait = await self._run_async("acquire", self._rkeys(name), args)
        return RateLimitGrant(bool(int(granted)), float(_t(wait)))

    # -- idempotency -------------------------------------------------------------------------

    def _ikeys(self, key: str) -> list[str]:
        return [f"{self.prefix}:idempotency:{key}"]

    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, int(seconds * 1000))

    def reserve(self, key: str, *, lease: float) -> Reservation:
        """Claim idempotency ``key`` (see the IdempotencyStore protocol)."""
        args = [uuid.uuid4().hex, self._ms(lease)]
        return _reservation(self._run("reserve", self._ikeys(key), args))

    def complete(self, key: str, *, token: str, result: Any, ttl: float) -> bool:
        """Store the owner's JSON result for ``ttl`` seconds (see the IdempotencyStore protocol).

        Raises:
            TypeError: If ``result`` is not JSON-serialisable.
        """
        args = [token, _dump_result(result), self._ms(ttl)]
        return bool(self._run("complete", self._ikeys(key), args))

    def release(self, key: str, *, token: str) -> bool:
        """Drop the owner's in-flight record (see the IdempotencyStore protocol)."""
        return bool(self._run("release", self._ikeys(key), [token]))

    async def reserve_async(self, key: str, *, lease: float) -> Reservation:
        """See :meth:`reserve`."""
        args = [uuid.uuid4().hex, self._ms(lease)]
        return _reservation(await self._run_async("reserve", self._ikeys(key), args))

    async def complete_async(self, key: str, *, token: str, result: Any, ttl: float) -> bool:
        """See :meth:`complete`."""
        args = [token, _dump_result(result), self._ms(ttl)]
        return bool(await self._run_async("complete", self._ikeys(key), args))

    async def release_async(self, key: str, *, token: str) -> bool:
        """See :meth:`release`."""
        return bool(await self._run_async("release", self._ikeys(key), [token]))

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r})"
