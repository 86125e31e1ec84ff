"""The timeout policy: bound how long the calls inside it may take.

Outside a :class:`~resilio.Retry`, a timeout is a total deadline for every attempt and wait;
inside, it bounds each attempt. Nested timeouts take the tighter deadline. The deadline is carried
in :attr:`resilio.Context.deadline`, so retries and waits inside stop at it too.

How the deadline is enforced depends on how the call runs:

* ``execute_async``: the inner awaitable is really cancelled when the time is up; the caller gets
  :class:`~resilio.TimeoutExceeded`. A cancellation from outside (not this timeout's) propagates
  as :class:`asyncio.CancelledError`. With the system clock, the loop's timers keep the deadline
  (one timer per layer and loop); with any other clock (a :class:`~resilio.testing.FakeClock`),
  each call's timer waits on that clock, so the deadline is the clock's time, not the loop's.
* ``execute`` with ``mode="cooperative"`` (the default): Python cannot interrupt a running
  function, so the deadline is only marked. A retry inside stops retrying and never sleeps past
  it; a call that starts after it fails with ``TimeoutExceeded``; a call that returns late keeps
  its result (or its own error).
* ``execute`` with ``mode="thread"``: the call runs in a worker thread and the caller gets
  ``TimeoutExceeded`` on time (the pipeline clock's time: with another clock than the system
  clock, the caller checks it between short real waits). The worker is not killed: it finishes
  (or hangs) in the background.
  Each :class:`Timeout` object has its own pool of at most ``max_workers`` daemon threads, made on
  its first thread-mode call, so calls hung under one timeout never hold the threads of another.
  When every worker is busy, a call waits in the pool's queue within its own deadline; if the
  deadline passes first, it never runs and the caller gets ``TimeoutExceeded``.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import copy
import math
import os
import queue
import threading
import time
import types
import weakref
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from attrs import field, frozen, validators

from resilio._clock import SystemClock, call_later, is_system, timer_sleep, wait_event
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


def _check_workers(_inst: object, attribute: Any, value: Any) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"timeout max_workers must be None or an integer >= 1, got {value!r}")


def _default_max_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


@frozen(kw_only=True)
class TimeoutOptions:
    """Validated options of a :class:`Timeout` policy.

    Attributes:
        seconds: The time allowed, in seconds (a :class:`datetime.timedelta` is converted).
        mode: How a sync call is bounded: ``"cooperative"`` or ``"thread"``.
        max_workers: Thread mode: the most worker threads this timeout starts (``None``:
            ``min(32, cpus + 4)``); calls beyond wait for a free worker within their deadline.
    """

    seconds: float = field(converter=_to_seconds, validator=_positive_seconds)
    mode: Mode = field(default="cooperative", validator=validators.in_(("cooperative", "thread")))
    max_workers: int | None = field(default=None, validator=_check_workers)


class Timeout(Policy):
    """Bound the time the calls inside this policy may take.

    Args:
        seconds: The time allowed, in seconds.
        mode: For sync calls: ``"cooperative"`` (mark the deadline; cannot interrupt a running
            function) or ``"thread"`` (run it in a worker thread and stop waiting on time).
            Async calls are always cancelled for real.
        max_workers: For ``mode="thread"``: the most worker threads this policy object starts
            (default ``min(32, cpus + 4)``). The pool belongs to this object, is made on its
            first thread-mode call and is shared by every pipeline the object sits in. When all
            workers are busy, a call waits for one within its own deadline; if the deadline
            passes first, the call never runs and fails with ``TimeoutExceeded``.
        name: The policy's name in events (default ``"timeout"``).

    Raises:
        ValueError: If ``seconds`` is not a positive finite number, ``mode`` is unknown or
            ``max_workers`` is not ``None`` or an integer >= 1.
    """

    kind: ClassVar[str] = "timeout"
    options_class: ClassVar[type] = TimeoutOptions
    options: TimeoutOptions

    def __init__(
        self,
        seconds: float,
        *,
        mode: Mode = "cooperative",
        max_workers: int | None = None,
        name: str | None = None,
    ) -> None:
        self.options = TimeoutOptions(seconds=seconds, mode=mode, max_workers=max_workers)
        self.name = name or self.kind
        self._pool: _WorkerPool | None = None
        self._pool_lock = threading.Lock()

    @classmethod
    def from_options(cls, options: TimeoutOptions, *, name: str | None = None) -> Timeout:
        """Build a timeout policy from validated options."""
        return cls(options.seconds, mode=options.mode, max_workers=options.max_workers, name=name)

    def _worker_pool(self) -> _WorkerPool:
        """Return this policy's worker pool, making it on first use."""
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                pool = self._pool
                if pool is None:
                    workers = self.options.max_workers or _default_max_workers()
                    pool = self._pool = _WorkerPool(workers, self.name)
        return pool

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        """Build this policy's layer for one pipeline.

        With the system clock, async deadlines are kept by the loop's timers; with any other
        clock, by a timer on that clock (see :func:`resilio._clock.timer_sleep`).
        """
        system = is_system(env.clock)
        if self.options.mode == "thread":
            return (_ThreadTimeoutLayer if system else _ClockedThreadTimeoutLayer)(inner, env, self)
        return (_TimeoutLayer if system else _ClockedTimeoutLayer)(inner, env, self)


_FIRED: Any = object()
"""Put in a watch entry's task slot once the watchdog cancelled the task."""


class _Watchdog:
    """Cancels the tasks of one timeout layer on one event loop when their deadlines pass.

    A layer's deadlines arrive in order (same timeout, monotonic loop time), so a FIFO holds
    them sorted and one timer, set for the oldest, serves them all: a call that finishes in time
    only clears its entry, instead of scheduling and cancelling a timer of its own.

    An entry is a two-item list ``[task, deadline]``; the task slot becomes ``None`` when the
    call finished and ``_FIRED`` when the watchdog cancelled it. Used from its loop's thread only.
    """

    __slots__ = ("_entries", "_handle", "_loop", "_time")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # BaseEventLoop.time() is time.monotonic(); call that directly when it is the loop's.
        base_time = asyncio.BaseEventLoop.time
        self._time = time.monotonic if type(loop).time is base_time else loop.time
        self._entries: collections.deque[list[Any]] = collections.deque()
        self._handle: asyncio.TimerHandle | None = None

    def watch(self, task: asyncio.Task[Any], seconds: float) -> list[Any] | None:
        """Watch a task for ``seconds``; ``None`` if that ends before an entry already queued."""
        entries = self._entries
        while entries and entries[0][0] is None:
            entries.popleft()
        deadline = self._time() + seconds
        if entries and deadline < entries[-1][1]:
            return None
        entry = [task, deadline]
        entries.append(entry)
        if self._handle is None:
            self._handle = self._loop.call_at(deadline, self._fire)
        return entry

    def _fire(self) -> None:
        self._handle = None
        now = self._time()
        entries = self._entries
        while entries:
            entry = entries[0]
            task = entry[0]
            if task is not None:
                if entry[1] > now:
                    self._handle = self._loop.call_at(entry[1], self._fire)
                    return
                entry[0] = _FIRED
                task.cancel()
            entries.popleft()


_WATCHDOGS_LOCK = threading.Lock()

# On Python 3.11 asyncio.current_task() is a Python function costing more than the rest of a
# timeout's fast path; the running task is read from asyncio's own table when it has one.
_current_tasks: dict[Any, asyncio.Task[Any]] = getattr(asyncio.tasks, "_current_tasks", None) or {}
_NO_LOOP: tuple[Any, Any] = (None, None)


class _TimeoutLayer(Layer):
    __slots__ = (
        "_inner_run",
        "_inner_run_async",
        "_monotonic",
        "_name",
        "_seconds",
        "_timer_sleep",
        "_watchdog",
        "_watchdogs",
    )

    def __init__(self, inner: Layer, env: Env, policy: Timeout) -> None:
        super().__init__(inner, env, policy)
        self._inner_run = inner.run
        self._inner_run_async = inner.run_async
        self._seconds = policy.options.seconds
        self._name = policy.name
        clock = env.clock
        # The system clock's monotonic() is time.monotonic(): call it without the extra frame.
        self._monotonic = time.monotonic if type(clock) is SystemClock else clock.monotonic
        self._timer_sleep = timer_sleep(clock)
        self._watchdog: tuple[Any, Any] = _NO_LOOP
        self._watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog] = (
            weakref.WeakKeyDictionary()
        )

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
            return self._inner_run(fn, args, kwargs, ctx)
        finally:
            ctx.deadline = previous

    async def run_async(
        self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Context
    ) -> Any:
        now = self._monotonic()
        previous = ctx.deadline
        deadline = now + self._seconds
        tighter = previous is not None and previous < deadline
        if tighter:
            if previous <= now:  # type: ignore[operator]
                return self._expired(ctx, started=False)
            deadline = previous  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        task = _current_tasks.get(loop) or asyncio.current_task(loop)
        entry = None
        if not tighter and task is not None:
            cache = self._watchdog
            watchdog = cache[1] if cache[0] is loop else self._watchdog_for(loop)
            entry = watchdog.watch(task, deadline - now)
        ctx.deadline = deadline
        if entry is None:
            return await self._run_scoped(fn, args, kwargs, ctx, deadline - now, previous)
        cancelling = task.cancelling()  # type: ignore[union-attr]
        try:
            result = await self._inner_run_async(fn, args, kwargs, ctx)
        except asyncio.CancelledError:
            if entry[0] is _FIRED and task.uncancel() <= cancelling:  # type: ignore[union-attr]
                return self._expired(ctx, started=True)
            raise
        finally:
            ctx.deadline = previous
            if entry[0] is not _FIRED:
                entry[0] = None
        if entry[0] is _FIRED:  # the call swallowed our cancellation and returned
            task.uncancel()  # type: ignore[union-attr]
        return result

    async def _run_async_clocked(
        self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Context
    ) -> Any:
        # run_async of a layer whose clock is not the system clock: the loop's timers do not
        # follow that clock, so each call gets a timer of its own that waits on the clock and
        # cancels the task at the deadline, in any order (tighter outer deadlines included).
        now = self._monotonic()
        previous = ctx.deadline
        deadline = now + self._seconds
        if previous is not None and previous < deadline:
            if previous <= now:
                return self._expired(ctx, started=False)
            deadline = previous
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - a coroutine driven outside any asyncio task
            ctx.deadline = deadline
            return await self._run_scoped(fn, args, kwargs, ctx, deadline - now, previous)
        # [task, deadline, timer]: the timer starts only if the call suspends (_until_done).
        entry: list[Any] = [task, deadline, None]
        cancelling = task.cancelling()
        ctx.deadline = deadline
        try:
            result = await _until_done(self._inner_run_async(fn, args, kwargs, ctx), self, entry)
        except asyncio.CancelledError:
            if entry[0] is _FIRED and task.uncancel() <= cancelling:
                return self._expired(ctx, started=True)
            raise
        finally:
            ctx.deadline = previous
            if entry[0] is not _FIRED:
                entry[0] = None
                if entry[2] is not None:
                    entry[2].cancel()
        if entry[0] is _FIRED:  # the call swallowed our cancellation and returned
            task.uncancel()
        return result

    async def _run_scoped(
        self,
        fn: Callable[..., Any],
        args: Args,
        kwargs: Kwargs,
        ctx: Context,
        left: float,
        previous: float | None,
    ) -> Any:
        # Used under a tighter outer deadline, where deadlines may arrive out of order.
        scope = asyncio.timeout(left)
        try:
            async with scope:
                return await self._inner_run_async(fn, args, kwargs, ctx)
        except TimeoutError:
            if not scope.expired():
                raise  # pragma: no cover - layers return failures, they do not raise them
            return self._expired(ctx, started=True)
        finally:
            ctx.deadline = previous

    def _watchdog_for(self, loop: asyncio.AbstractEventLoop) -> _Watchdog:
        with _WATCHDOGS_LOCK:
            watchdog = self._watchdogs.get(loop)
            if watchdog is None:
                watchdog = self._watchdogs[loop] = _Watchdog(loop)
        self._watchdog = (loop, watchdog)
        return watchdog

    def _expired(self, ctx: Context, *, started: bool, what: str | None = None) -> Failure:
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
        if what is None:
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
    __slots__ = ("_timeout",)

    def _wait_done(self, done: threading.Event, seconds: float, since: float) -> bool:
        """Wait for the worker; the system clock's time is the event's own."""
        return done.wait(seconds)

    def __init__(self, inner: Layer, env: Env, policy: Timeout) -> None:
        super().__init__(inner, env, policy)
        self._timeout = policy

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
        pool = self._timeout._pool or self._timeout._worker_pool()
        pool.submit(job)
        if not self._wait_done(job.done, deadline - now, now):
            if pool.abandon(job):  # started: it runs on in the background
                return self._expired(ctx, started=True)
            return self._expired(  # never started, and now never will
                ctx,
                started=False,
                what=f"timed out waiting for a free worker thread (max_workers {pool.max_workers})",
            )
        ctx.attempt = worker_ctx.attempt
        if job.error is not None:
            error = job.error
            job.error = None
            raise error
        return job.result


class _ClockedTimeoutLayer(_TimeoutLayer):
    """A cooperative timeout's layer on a clock that is not the system clock."""

    __slots__ = ()

    run_async = _TimeoutLayer._run_async_clocked


class _ClockedThreadTimeoutLayer(_ThreadTimeoutLayer):
    """A thread-mode timeout's layer on a clock that is not the system clock."""

    __slots__ = ()

    run_async = _TimeoutLayer._run_async_clocked

    def _wait_done(self, done: threading.Event, seconds: float, since: float) -> bool:
        """Wait for the worker until the pipeline clock reaches ``since + seconds``."""
        return wait_event(done, seconds, self.env.clock, since)


@types.coroutine
def _until_done(
    coro: Coroutine[Any, Any, Any], layer: _TimeoutLayer, entry: list[Any]
) -> Generator[Any, Any, Any]:
    """Await ``coro``, starting ``entry``'s clock timer when ``coro`` first suspends.

    A call that finishes without suspending (a first-try success that awaits nothing pending)
    so makes no timer at all. Otherwise this passes what ``coro`` yields to the task and what
    the task sends or throws back to ``coro``, as ``await coro`` would.
    """
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return stop.value
    entry[2] = call_later(layer._timer_sleep, entry[1] - layer._monotonic(), _fire, entry)
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


def _fire(entry: list[Any]) -> None:
    """A clocked timer's callback: cancel the entry's task unless its call already finished."""
    task = entry[0]
    if task is not None and task is not _FIRED:
        entry[0] = _FIRED
        task.cancel()


_QUEUED = 0
_RUNNING = 1
_ABANDONED = 2


class _Job:
    __slots__ = ("args", "context", "done", "error", "func", "result", "state")

    def __init__(
        self, context: contextvars.Context, func: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        self.context = context
        self.func = func
        self.args = args
        self.done = threading.Event()
        self.state = _QUEUED  # changed under the pool's lock only
        self.result: Any = None
        self.error: BaseException | None = None


class _Workers:
    """What a pool's threads share with it; they hold no reference to the pool itself."""

    __slots__ = ("idle", "jobs", "lock", "threads")

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads = 0
        self.idle = 0


class _WorkerPool:
    """A bounded pool of daemon threads (a hung call never blocks interpreter exit).

    Threads start on demand, up to ``max_workers``, and then stay for the pool's life; a job
    submitted while all are busy waits in the FIFO queue. When the pool is garbage-collected
    (its timeout policy is gone), each thread is told to stop once it is idle.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self.max_workers = max_workers
        self._name = name
        self._workers = _Workers()
        weakref.finalize(self, _stop_workers, self._workers)

    def submit(self, job: _Job) -> None:
        workers = self._workers
        with workers.lock:
            if workers.idle > 0:
                workers.idle -= 1
            elif workers.threads < self.max_workers:
                workers.threads += 1
                threading.Thread(
                    target=_work,
                    args=(workers,),
                    name=f"resilio-timeout-{self._name}-{workers.threads}",
                    daemon=True,
                ).start()
        workers.jobs.put(job)

    def abandon(self, job: _Job) -> bool:
        """Give up on a job whose caller timed out; return whether a worker had started it."""
        with self._workers.lock:
            if job.state == _QUEUED:
                job.state = _ABANDONED
                return False
            return True

    @property
    def threads(self) -> int:
        """Worker threads started and not stopped."""
        return self._workers.threads


def _work(workers: _Workers) -> None:
    jobs = workers.jobs
    lock = workers.lock
    while True:
        job = jobs.get()
        if job is None:
            with lock:
                workers.threads -= 1
            return
        with lock:
            run = job.state == _QUEUED
            if run:
                job.state = _RUNNING
        if run:
            try:
                job.result = job.context.run(job.func, *job.args)
            except BaseException as exc:
                job.error = exc
            job.done.set()
        job = None
        with lock:
            workers.idle += 1


def _stop_workers(workers: _Workers) -> None:
    with workers.lock:
        count = workers.threads
    for _ in range(count):
        workers.jobs.put(None)
