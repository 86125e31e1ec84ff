"""The rate limiter: a token bucket that makes calls wait for a permit, or rejects them.

The guarantee: a bucket of ``burst`` tokens refilled at ``rate`` tokens per ``per`` seconds.
After a quiet spell up to ``burst`` calls run at once; then one call runs every ``per / rate``
seconds. A caller that must wait reserves its future token when it arrives, so callers are
served in arrival order, each waits only for its own missing part, and each sleeps exactly once
for exactly its own wait (no polling, no thundering herd). "2 per 10 s, burst 2" with 5 callers
arriving together: they start at t = 0, 0, 5, 10 and 15 s.

A call whose wait would exceed ``max_wait`` (or the execution's remaining deadline) is rejected
at once with :class:`~resilio.RateLimited`, consuming nothing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from attrs import field, frozen

from resilio._context import Context
from resilio._outcome import Failure
from resilio.errors import RateLimited
from resilio.events import CallRejected, RateLimitWaited
from resilio.policies._base import Args, Env, Kwargs, Layer, Policy
from resilio.policies._token_bucket import TokenBucket

__all__ = ["RateLimiter", "RateLimiterOptions"]


def _positive(_inst: object, attribute: Any, value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"rate_limiter: {attribute.name} must be > 0, got {value!r}")


def _non_negative(_inst: object, attribute: Any, value: Any) -> None:
    if not value >= 0:
        raise ValueError(f"rate_limiter: {attribute.name} must be >= 0, got {value!r}")


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@frozen(kw_only=True)
class RateLimiterOptions:
    """Validated options of a :class:`RateLimiter`; ``burst`` defaults to ``max(1, rate)``."""

    rate: float = field(converter=float, validator=_positive)
    per: float = field(default=1.0, converter=float, validator=_positive)
    burst: float | None = field(default=None, converter=_optional_float, validator=_positive)
    max_wait: float = field(default=0.0, converter=float, validator=_non_negative)
    store: Any = field(default=None)

    def __attrs_post_init__(self) -> None:
        if self.burst is not None and self.burst < 1:
            raise ValueError(f"rate_limiter: burst must be >= 1, got {self.burst!r}")
        if self.store is not None and not (
            callable(getattr(self.store, "acquire", None))
            or callable(getattr(self.store, "acquire_async", None))
        ):
            raise TypeError(
                f"rate_limiter: store {type(self.store).__name__} implements neither "
                "RateLimitStore nor AsyncRateLimitStore"
            )

    @property
    def capacity(self) -> float:
        """The bucket's capacity: ``burst``, or ``max(1, rate)`` when not given."""
        return self.burst if self.burst is not None else max(1.0, self.rate)


class RateLimiter(Policy):
    """Lets at most ``rate`` calls per ``per`` seconds through, with bursts up to ``burst``.

    Args:
        rate: Permits per ``per`` seconds.
        per: The period in seconds (default 1).
        burst: Permits available at once after a quiet spell (default ``max(1, rate)``).
        max_wait: Longest a call may wait for its permit, in seconds (default 0: reject at once
            when no permit is free).
        store: A :class:`~resilio.stores.RateLimitStore` to share the bucket across processes
            (``None``: a local bucket). If the store fails, the limiter falls back to its local
            bucket for that call.
        name: The limiter's name (default ``"rate_limiter"``); the store's key.
    """

    kind: ClassVar[str] = "rate_limiter"
    options_class: ClassVar[type] = RateLimiterOptions

    def __init__(
        self,
        rate: float,
        *,
        per: float = 1.0,
        burst: float | None = None,
        max_wait: float = 0.0,
        store: Any = None,
        name: str | None = None,
    ) -> None:
        self._setup(
            RateLimiterOptions(rate=rate, per=per, burst=burst, max_wait=max_wait, store=store),
            name,
        )

    @classmethod
    def from_options(cls, options: RateLimiterOptions, *, name: str | None = None) -> RateLimiter:
        """Build a limiter from validated options."""
        self = cls.__new__(cls)
        self._setup(options, name)
        return self

    def _setup(self, options: RateLimiterOptions, name: str | None) -> None:
        self.options = options
        self.name = name or self.kind
        self._lock = threading.Lock()
        self._bucket: TokenBucket | None = None
        self._store = options.store

    def available(self, now: float) -> float:
        """Return the local bucket's tokens at ``now`` (negative while callers wait)."""
        with self._lock:
            if self._bucket is None:
                capacity: float = self.options.capacity
                return capacity
            return self._bucket.available(now)

    # -- decisions ------------------------------------------------------------------------------

    def _max_wait(self, ctx: Context) -> float:
        max_wait: float = self.options.max_wait
        if ctx.deadline is not None:
            remaining = ctx.remaining()
            if remaining is not None and remaining < max_wait:
                return max(remaining, 0.0)
        return max_wait

    def _reserve_local(self, now: float, max_wait: float) -> tuple[bool, float]:
        options = self.options
        with self._lock:
            bucket = self._bucket
            if bucket is None:
                bucket = self._bucket = TokenBucket(
                    options.rate, options.per, options.capacity, now
                )
            return bucket.reserve(now, 1.0, max_wait)

    def _refund(self, now: float) -> None:
        with self._lock:
            if self._bucket is not None:
                self._bucket.refund(now, 1.0)

    def _store_args(self, max_wait: float) -> dict[str, Any]:
        options = self.options
        return {
            "rate": options.rate,
            "per": options.per,
            "burst": options.capacity,
            "tokens": 1.0,
            "max_wait": max_wait,
        }

    def _reject(self, env: Env, ctx: Context, wait: float) -> Failure:
        env.emit(
            CallRejected(
                pipeline=env.pipeline,
                policy=self.name,
                operation=ctx.operation,
                attempt=ctx.attempt,
                reason="rate_limited",
                retry_after=wait,
            )
        )
        return Failure(
            RateLimited(
                f"rate limiter {self.name!r} has no permit within the allowed wait",
                pipeline=env.pipeline,
                policy=self.name,
                retry_after=wait,
            )
        )

    def _waited(self, env: Env, ctx: Context, wait: float) -> None:
        env.emit(
            RateLimitWaited(
                pipeline=env.pipeline,
                policy=self.name,
                operation=ctx.operation,
                attempt=ctx.attempt,
                wait=wait,
            )
        )

    def acquire(self, env: Env, ctx: Context) -> Failure | None:
        """Get a permit for a call run in this thread, sleeping for it if needed."""
        max_wait = self._max_wait(ctx)
        store = self._store
        local = True
        if store is not None and callable(getattr(store, "acquire", None)):
            try:
                grant = store.acquire(self.name, **self._store_args(max_wait))
            except Exception:  # a lost store: fall back to the local bucket
                grant = None
            if grant is not None:
                granted, wait, local = grant.granted, grant.wait, False
        if local:
            granted, wait = self._reserve_local(env.clock.monotonic(), max_wait)
        if not granted:
            return self._reject(env, ctx, wait)
        if wait > 0:
            try:
                env.clock.sleep(wait)
            except BaseException:
                if local:
                    self._refund(env.clock.monotonic())
                raise
            self._waited(env, ctx, wait)
        return None

    async def acquire_async(self, env: Env, ctx: Context) -> Failure | None:
        """Get a permit for a task, sleeping on the loop for it if needed."""
        max_wait = self._max_wait(ctx)
        store = self._store
        local = True
        if store is not None:
            try:
                if callable(getattr(store, "acquire_async", None)):
                    grant = await store.acquire_async(self.name, **self._store_args(max_wait))
                else:
                    grant = await asyncio.to_thread(
                        store.acquire, self.name, **self._store_args(max_wait)
                    )
            except Exception:  # a lost store: fall back to the local bucket
                grant = None
            if grant is not None:
                granted, wait, local = grant.granted, grant.wait, False
        if local:
            granted, wait = self._reserve_local(env.clock.monotonic(), max_wait)
        if not granted:
            return self._reject(env, ctx, wait)
        if wait > 0:
            try:
                await env.clock.sleep_async(wait)
            except BaseException:
                if local:
                    self._refund(env.clock.monotonic())
                raise
            self._waited(env, ctx, wait)
        return None

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        """Build the limiter's layer for one pipeline."""
        return _RateLimiterLayer(inner, env, self)


class _RateLimiterLayer(Layer):
    __slots__ = ("_inner_run", "_inner_run_async", "_limiter")

    def __init__(self, inner: Layer, env: Env, limiter: RateLimiter) -> None:
        super().__init__(inner, env, limiter)
        self._limiter = limiter
        self._inner_run = inner.run
        self._inner_run_async = inner.run_async

    def run(self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Context) -> Any:
        refused = self._limiter.acquire(self.env, ctx)
        if refused is not None:
            return refused
        return self._inner_run(fn, args, kwargs, ctx)

    async def run_async(
        self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Context
    ) -> Any:
        refused = await self._limiter.acquire_async(self.env, ctx)
        if refused is not None:
            return refused
        return await self._inner_run_async(fn, args, kwargs, ctx)
