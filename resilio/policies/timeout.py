"""The timeout policy: bound how long the calls inside it may take.

Outside a :class:`~resilio.Retry`, a timeout is a total deadline for every attempt and wait;
inside, it bounds each attempt. Nested timeouts take the tighter deadline. The deadline is carried
in :attr:`resilio.Context.deadline`, so retries and waits inside stop at it too.

How the deadline is enforced depends on how the call runs:

* ``execute_async``: the inner awaitable is really cancelled when the time is up; the caller gets
  :class:`~resilio.TimeoutExceeded`. A cancellation from outside (not this timeout's) propagates
  as :class:`asyncio.CancelledError`.
* ``execute`` with ``mode="cooperative"`` (the default): Python cannot interrupt a running
  function, so the deadline is only marked. A retry inside stops retrying and never sleeps past
  it; a call that starts after it fails with ``TimeoutExceeded``; a call that returns late keeps
  its result (or its own error).
* ``execute`` with ``mode="thread"``: the call runs in a worker thread and the caller gets
  ``TimeoutExceeded`` on time. The worker is not killed: it finishes (or hangs) in the background.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import math
import os
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from attrs import field, frozen, validators

from resilio._outcome import Failure
from resilio.errors import TimeoutExceeded
from resilio.events import TimedOut
from resilio.policies._base import Args, Env, Kwargs, Layer, Policy

if TYPE_CHECKING:
    from resilio._context import Context

__all__ = ["Timeout", "TimeoutOptions"]

Mode = Literal["cooperative", "thread"]


def _to_seconds(value: Any) -> Any:
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _positive_seconds(_inst: object, attribute: Any, value: Any) -> None:
    if not (isinstance(value, float) and math.isfinite(value) and value > 0):
        raise ValueError(f"timeout seconds must be a finite number > 0, got {value!r}")


@frozen(kw_only=True)
class TimeoutOptions:
    """Validated options of a :class:`Timeout` policy.

    Attributes:
        seconds: The time allowed, in seconds (a :class:`datetime.timedelta` is converted).
        mode: How a sync call is bounded: ``"cooperative"`` or ``"thread"``.
    """

    seconds: float = field(converter=_to_seconds, validator=_positive_seconds)
    mode: Mode = field(default="cooperative", validator=validators.in_(("cooperative", "thread")))


class Timeout(Policy):
    """Bound the time the calls inside this policy may take.

    Args:
        seconds: The time allowed, in seconds.
        mode: For sync calls: ``"cooperative"`` (mark the deadline; cannot interrupt a running
            function) or ``"thread"`` (run it in a worker thread and stop waiting on time).
            Async calls are always cancelled for real.
        name: The policy's name in events (default ``"timeout"``).

    Raises:
        ValueError: If ``seconds`` is not a positive finite number or ``mode`` is unknown.
    """

    kind: ClassVar[str] = "timeout"
    options_class: ClassVar[type] = TimeoutOptions
    options: TimeoutOptions

    def __init__(
        self, seconds: float, *, mode: Mode = "cooperative", name: str | None = None
    ) -> None:
        self.options = TimeoutOptions(seconds=seconds, mode=mode)
        self.name = name or self.kind

    @classmethod
    def from_options(cls, options: TimeoutOptions, *, name: str | None = None) -> Timeout:
        """Build a timeout policy from validated options."""
        return cls(options.seconds, mode=options.mode, name=name)

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        """Build this policy's layer for one pipeline."""
        if self.options.mode == "thread":
            return _ThreadTimeoutLayer(inner, env, self)
        return _TimeoutLayer(inner, env, self)


class _TimeoutLayer(Layer):
    __slots__ = ("_monotonic", "_name", "_seconds")

    def __init__(self, inner: Layer, env: Env, policy: Timeout) -> None:
        super().__init__(inner, env, policy)
        self._seconds = policy.options.seconds
        self._name = policy.name
        self._monotonic = env.clock.monotonic

    def run(self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Context) -> Any:
        now = self._monotonic()
        previous = ctx.deadline
        deadline = now + self._seconds
        if previous is not None and previous < deadline:
            if previous <= now:
                return self._expired(ctx, started=False)
            deadline = previous
        ctx.deadline = deadline
        try:
            return self.inner.run(fn, args, kwargs, ctx)
        finally:
            ctx.deadline = previous

    async def run_async(
        self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Context
    ) -> Any:
        now = self._monotonic()
        previous = ctx.deadline
        deadline = now + self._seconds
        if previous is not None and previous < deadline:
            if previous <= now:
                return self._expired(ctx, started=False)
            deadline = previous
        ctx.deadline = deadline
        scope = asyncio.timeout(deadline - now)
        try:
            async with scope:
                return await self.inner.run_async(fn, args, kwargs, ctx)
        except TimeoutError:
            if not scope.expired():
                raise  # pragma: no cover - layers return failures, they do not raise them
            return self._expired(ctx, started=True)
        finally:
            ctx.deadline = previous

    def _expired(self, ctx: Context, *, started: bool) -> Failure:
        env = self.env
        env.emit(
            TimedOut(
                pipeline=env.pipeline,
                policy=self._name,
                operation=ctx.operation,
                attempt=ctx.attempt,
                timeout=self._seconds,
            )
        )
        what = "timed out" if started else "deadline passed before the call started"
        return Failure(
            TimeoutExceeded(
                f"{what} (timeout {self._seconds:g} s, pipeline '{env.pipeline}', "
                f"policy '{self._name}')",
                pipeline=env.pipeline,
                policy=self._name,
                timeout=self._seconds,
            )
        )


class _ThreadTimeoutLayer(_TimeoutLayer):
    __slots__ = ()

    def run(self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Context) -> Any:
        now = self._monotonic()
        previous = ctx.deadline
        deadline = now + self._seconds
        if previous is not None and previous < deadline:
            if previous <= now:
                return self._expired(ctx, started=False)
            deadline = previous
        # The worker gets its own copy of the context: if it is abandoned, its inner policies
        # still see this deadline, while the caller's context moves on.
        worker_ctx = copy.copy(ctx)
        worker_ctx.deadline = deadline
        job = _Job(contextvars.copy_context(), self.inner.run, (fn, args, kwargs, worker_ctx))
        _pool().submit(job)
        if not job.done.wait(deadline - now):
            job.abandoned = True
            return self._expired(ctx, started=True)
        ctx.attempt = worker_ctx.attempt
        if job.error is not None:
            error = job.error
            job.error = None
            raise error
        return job.result


class _Job:
    __slots__ = ("abandoned", "args", "context", "done", "error", "func", "result")

    def __init__(
        self, context: contextvars.Context, func: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        self.context = context
        self.func = func
        self.args = args
        self.done = threading.Event()
        self.abandoned = False
        self.result: Any = None
        self.error: BaseException | None = None


class _WorkerPool:
    """A bounded pool of daemon threads (a hung call never blocks interpreter exit)."""

    def __init__(self, max_workers: int) -> None:
        self._max = max_workers
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, job: _Job) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
            elif self._threads < self._max:
                self._threads += 1
                threading.Thread(
                    target=self._work, name=f"resilio-timeout-{self._threads}", daemon=True
                ).start()
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if not job.abandoned:
                try:
                    job.result = job.context.run(job.func, *job.args)
                except BaseException as exc:
                    job.error = exc
                job.done.set()
            job = None  # type: ignore[assignment]
            with self._lock:
                self._idle += 1


_POOL: _WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> _WorkerPool:
    global _POOL
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = _WorkerPool(min(32, (os.cpu_count() or 1) + 4))
    return _POOL
