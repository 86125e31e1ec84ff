"""Idempotency: run a call once per key; duplicates get the first call's result.

The key comes from ``context.idempotency_key``, else from the ``key`` function, else from a
canonical hash of the operation name and the arguments, plus the called function's module and
qualified name when the context names no operation of its own. The first call with a key runs; its
successful result is kept for ``ttl`` seconds and returned to later calls with the key without
running them (:class:`~resilio.events.IdempotentReplay`). A duplicate that arrives while the
first call runs waits for its outcome (single flight), or with ``wait=False`` is refused with
:class:`~resilio.IdempotencyConflict`. A failure frees the key: the waiting duplicates then
compete again and exactly one of them runs next (the others wait for it). A reservation whose
owner died (a crashed process) expires after ``lease`` seconds.

Duplicates in one process wait on an in-process flight (an event or a future, no polling);
duplicates in other processes (a shared store) poll the store every ``poll_interval`` seconds,
never past the lease's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import math
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from attrs import field, frozen

from resilio._context import Context
from resilio._outcome import Failure
from resilio.errors import IdempotencyConflict
from resilio.events import CallRejected, IdempotentReplay
from resilio.policies._base import Args, Env, Kwargs, Layer, Policy
from resilio.stores._protocols import Completed, InFlight
from resilio.stores.memory import MemoryIdempotencyStore

__all__ = ["Idempotency", "IdempotencyOptions", "canonical_key", "function_identity"]

KeyFunction = Callable[[tuple[Any, ...], dict[str, Any], Context], str]


def _positive(_inst: object, attribute: Any, value: Any) -> None:
    if not value > 0:
        raise ValueError(f"idempotency: {attribute.name} must be > 0, got {value!r}")


def _check_max_entries(_inst: object, attribute: Any, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"idempotency: max_entries must be an integer >= 1, got {value!r}")


@frozen(kw_only=True)
class IdempotencyOptions:
    """Validated options of an :class:`Idempotency` policy."""

    ttl: float = field(default=3600.0, converter=float, validator=_positive)
    key: KeyFunction | None = field(default=None)
    wait: bool = field(default=True)
    lease: float = field(default=60.0, converter=float, validator=_positive)
    max_entries: int = field(default=10_000, validator=_check_max_entries)
    store: Any = field(default=None)
    poll_interval: float = field(default=0.1, converter=float, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.key is not None and not callable(self.key):
            raise TypeError("idempotency: key must be a function (args, kwargs, context) -> str")
        if self.store is not None and not (
            callable(getattr(self.store, "reserve", None))
            or callable(getattr(self.store, "reserve_async", None))
        ):
            raise TypeError(
                f"idempotency: store {type(self.store).__name__} implements neither "
                "IdempotencyStore nor AsyncIdempotencyStore"
            )


def _canonical(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"idempotency: {where} is a non-finite float")
        return value
    if isinstance(value, list | tuple):
        return [_canonical(item, where) for item in value]
    if isinstance(value, dict):
        out = {}
        for k, item in value.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"idempotency: {where} holds a dict with a {type(k).__name__} key; "
                    "canonical JSON needs string keys"
                )
            out[k] = _canonical(item, where)
        return out
    raise TypeError(
        f"idempotency: {where} is a {type(value).__name__}, which has no canonical JSON form; "
        "set context.idempotency_key or give the policy a key= function"
    )


def function_identity(fn: Callable[..., Any]) -> str:
    """Return ``module:qualname`` of a callable, the part of a default key that names it.

    A bound method is named by its function, a :class:`functools.partial` by the function it
    wraps (its bound arguments are not part of the name), and any other callable object by its
    class.

    Args:
        fn: The called function.

    Returns:
        ``"module:qualified.name"``.
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    qualname = getattr(fn, "__qualname__", None)
    module = getattr(fn, "__module__", None)
    if not isinstance(qualname, str) or not isinstance(module, str):
        qualname, module = type(fn).__qualname__, type(fn).__module__
    return f"{module}:{qualname}"


def canonical_key(
    operation: str | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    function: str | None = None,
) -> str:
    """Return the sha256 of the canonical JSON of an operation name and its arguments.

    Args:
        operation: The operation's name.
        args: Positional arguments.
        kwargs: Keyword arguments.
        function: The called function's identity (:func:`function_identity`), if it is part
            of the key; ``None`` leaves it out (the key of an explicitly named operation).

    Returns:
        A hex digest.

    Raises:
        TypeError: If an argument has no canonical JSON form (naming its position or name).
    """
    data = [
        operation,
        [_canonical(a, f"argument {i}") for i, a in enumerate(args)],
        {k: _canonical(v, f"argument {k!r}") for k, v in kwargs.items()},
    ]
    if function is not None:
        data.append(function)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class _Flight:
    """One in-process call owning a key; duplicates in this process wait on it."""

    __slots__ = ("done", "event", "futures", "replay", "result")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.done = False
        self.replay = False  # whether waiters may take ``result``
        self.result: Any = None

    def finish(self, replay: bool, result: Any) -> None:
        self.replay = replay
        self.result = result
        self.done = True
        self.event.set()
        for loop, future in self.futures:
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody to wake
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Idempotency(Policy):
    """Runs a call once per idempotency key and replays its result to duplicates.

    Args:
        ttl: Seconds a successful result is kept.
        key: A function ``(args, kwargs, context) -> str`` deriving the key, used when the
            context carries no ``idempotency_key`` (default: a canonical hash of the operation
            name and the arguments, plus the called function's ``module:qualname`` when the
            context's operation is the pipeline's name, as it is when none was given).
        wait: Whether a duplicate waits for an in-flight call (``False``: refuse it).
        lease: Seconds a reservation lasts if its owner never finishes (a crashed process).
        max_entries: Bound of the default in-memory store (least recently used dropped).
        store: An :class:`~resilio.stores.IdempotencyStore` shared across processes (results
            must then be JSON-serialisable). Default: an in-memory store.
        poll_interval: Seconds between store checks while another process owns the key.
        name: The policy's name (default ``"idempotency"``); keys are namespaced by it.
    """

    kind: ClassVar[str] = "idempotency"
    options_class: ClassVar[type] = IdempotencyOptions

    def __init__(
        self,
        ttl: float = 3600.0,
        *,
        key: KeyFunction | None = None,
        wait: bool = True,
        lease: float = 60.0,
        max_entries: int = 10_000,
        store: Any = None,
        poll_interval: float = 0.1,
        name: str | None = None,
    ) -> None:
        self._setup(
            IdempotencyOptions(
                ttl=ttl,
                key=key,
                wait=wait,
                lease=lease,
                max_entries=max_entries,
                store=store,
                poll_interval=poll_interval,
            ),
            name,
        )

    @classmethod
    def from_options(cls, options: IdempotencyOptions, *, name: str | None = None) -> Idempotency:
        """Build the policy from validated options."""
        self = cls.__new__(cls)
        self._setup(options, name)
        return self

    def _setup(self, options: IdempotencyOptions, name: str | None) -> None:
        self.options = options
        self.name = name or self.kind
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._store: Any = options.store

    @property
    def store(self) -> Any:
        """The store in use (the in-memory one is made when first put in a pipeline)."""
        return self._store

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        """Build the policy's layer for one pipeline."""
        if self._store is None:
            self._store = MemoryIdempotencyStore(self.options.max_entries, clock=env.clock)
        return _IdempotencyLayer(inner, env, self)

    # -- keys and outcomes ----------------------------------------------------------------------

    def key_for(
        self, args: Args, kwargs: Kwargs, ctx: Context, fn: Callable[..., Any] | None = None
    ) -> str:
        """Return the store key of a call (namespaced by the policy's name).

        Without ``context.idempotency_key`` or a ``key`` function, the key is the canonical hash
        of the operation name and the arguments. When the context names no operation of its
        own (its operation is the pipeline's name, the default), the hash also covers ``fn``'s
        :func:`function_identity`, so two functions run through one pipeline with equal
        arguments never share a key.

        Args:
            args: Positional arguments of the call.
            kwargs: Keyword arguments of the call.
            ctx: The execution context.
            fn: The called function.

        Returns:
            The key, prefixed with the policy's name.

        Raises:
            TypeError: If the key function returns a non-string, or the arguments have no
                canonical form.
        """
        key = ctx.idempotency_key
        if key is None:
            key_fn = self.options.key
            if key_fn is not None:
                key = key_fn(args, kwargs, ctx)
                if not isinstance(key, str):
                    raise TypeError(
                        f"idempotency: the key function returned {type(key).__name__}, not str"
                    )
            else:
                operation = ctx.operation
                function = None
                if fn is not None and (operation is None or operation == ctx.pipeline):
                    function = function_identity(fn)
                key = canonical_key(operation, args, kwargs, function=function)
        return f"{self.name}:{key}"

    def _begin(self, key: str) -> tuple[_Flight, bool]:
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = _Flight()
            return flight, True

    def _end(self, key: str, flight: _Flight, replay: bool, result: Any) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight.finish(replay, result)

    def _replayed(self, env: Env, ctx: Context) -> None:
        env.emit(
            IdempotentReplay(
                pipeline=env.pipeline,
                policy=self.name,
                operation=ctx.operation,
                attempt=ctx.attempt,
            )
        )

    def _conflict(self, env: Env, ctx: Context) -> Failure:
        env.emit(
            CallRejected(
                pipeline=env.pipeline,
                policy=self.name,
                operation=ctx.operation,
                attempt=ctx.attempt,
                reason="idempotency_conflict",
            )
        )
        return Failure(
            IdempotencyConflict(
                f"idempotency {self.name!r}: a call with the same key is in flight",
                pipeline=env.pipeline,
                policy=self.name,
            )
        )

    def _poll_wait(self, ctx: Context, retry_after: float) -> float | None:
        """Seconds to sleep before asking the store again, or None if the deadline forbids."""
        wait: float = min(max(retry_after, 0.0), self.options.poll_interval)
        remaining = ctx.remaining()
        if remaining is not None and remaining < wait:
            return None
        return wait


class _IdempotencyLayer(Layer):
    __slots__ = ("_inner_run", "_inner_run_async", "_policy")

    def __init__(self, inner: Layer, env: Env, policy: Idempotency) -> None:
        super().__init__(inner, env, policy)
        self._policy = policy
        self._inner_run = inner.run
        self._inner_run_async = inner.run_async

    def run(self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Context) -> Any:
        policy = self._policy
        env = self.env
        try:
            key = policy.key_for(args, kwargs, ctx, fn)
        except Exception as exc:
            return Failure(exc)
        store = policy._store
        if not callable(getattr(store, "reserve", None)):
            return Failure(
                TypeError(
                    f"idempotency {policy.name!r}: its store has only async methods; "
                    "use execute_async()"
                )
            )
        options = policy.options
        while True:
            flight, owner = policy._begin(key)
            if not owner:
                if not options.wait:
                    return policy._conflict(env, ctx)
                if not flight.event.wait(ctx.remaining()):
                    return policy._conflict(env, ctx)
                if flight.replay:
                    policy._replayed(env, ctx)
                    return flight.result
                continue  # the owner failed: compete to run next
            replay, result, token = False, None, None
            try:
                while True:
                    try:
                        answer = store.reserve(key, lease=options.lease)
                    except Exception as exc:  # without the store, running risks duplicates
                        return Failure(exc)
                    if answer.__class__ is not InFlight:
                        break
                    wait = policy._poll_wait(ctx, answer.retry_after)
                    if not options.wait or wait is None:
                        return policy._conflict(env, ctx)
                    env.clock.sleep(wait)
                if answer.__class__ is Completed:
                    replay, result = True, answer.result
                    policy._replayed(env, ctx)
                    return result
                token = answer.token
                result = self._inner_run(fn, args, kwargs, ctx)
                if result.__class__ is Failure:
                    return result
                try:
                    store.complete(key, token=token, result=result, ttl=options.ttl)
                except TypeError as exc:  # a shared store cannot keep this result
                    return Failure(exc)
                except Exception:  # noqa: S110 - store lost: the lease expires on its own
                    pass
                token = None
                replay = True
                return result
            finally:
                if token is not None:  # failed, cancelled or unstorable: free the key
                    with contextlib.suppress(Exception):
                        store.release(key, token=token)
                policy._end(key, flight, replay, result)

    async def run_async(
        self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Context
    ) -> Any:
        policy = self._policy
        env = self.env
        try:
            key = policy.key_for(args, kwargs, ctx, fn)
        except Exception as exc:
            return Failure(exc)
        store = _AsyncStore(policy._store)
        options = policy.options
        while True:
            flight, owner = policy._begin(key)
            if not owner:
                if not options.wait:
                    return policy._conflict(env, ctx)
                if not flight.done:
                    loop = asyncio.get_running_loop()
                    future: asyncio.Future[None] = loop.create_future()
                    with policy._lock:
                        flight.futures.append((loop, future))
                    if flight.done:
                        _resolve(future)
                    try:
                        await asyncio.wait_for(future, ctx.remaining())
                    except TimeoutError:
                        return policy._conflict(env, ctx)
                if flight.replay:
                    policy._replayed(env, ctx)
                    return flight.result
                continue
            replay, result, token = False, None, None
            try:
                while True:
                    try:
                        answer = await store.call("reserve", key, lease=options.lease)
                    except Exception as exc:  # without the store, running risks duplicates
                        return Failure(exc)
                    if answer.__class__ is not InFlight:
                        break
                    wait = policy._poll_wait(ctx, answer.retry_after)
                    if not options.wait or wait is None:
                        return policy._conflict(env, ctx)
                    await env.clock.sleep_async(wait)
                if answer.__class__ is Completed:
                    replay, result = True, answer.result
                    policy._replayed(env, ctx)
                    return result
                token = answer.token
                result = await self._inner_run_async(fn, args, kwargs, ctx)
                if result.__class__ is Failure:
                    return result
                try:
                    await store.call("complete", key, token=token, result=result, ttl=options.ttl)
                except TypeError as exc:
                    return Failure(exc)
                except Exception:  # noqa: S110 - store lost: the lease expires on its own
                    pass
                token = None
                replay = True
                return result
            finally:
                if token is not None:  # failed, cancelled or unstorable: free the key
                    with contextlib.suppress(Exception):
                        await store.call("release", key, token=token)
                policy._end(key, flight, replay, result)


class _AsyncStore:
    """Calls a store's ``*_async`` methods, or its sync ones in a worker thread."""

    __slots__ = ("store",)

    def __init__(self, store: Any) -> None:
        self.store = store

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        async_method = getattr(self.store, method + "_async", None)
        if callable(async_method):
            return await async_method(*args, **kwargs)
        return await asyncio.to_thread(getattr(self.store, method), *args, **kwargs)
