"""The bulkhead: a limit on concurrent calls, with an optional bounded FIFO queue.

One bulkhead object may be used from threads and from event loops at the same time: it keeps
one lock-protected counter of slots in use and one FIFO queue of waiters. A thread waits on a
:class:`threading.Event`; a task waits on a future of its own loop, woken with
``call_soon_threadsafe``, so a waiting task never blocks its loop. ``queue_timeout`` and the
execution's deadline are measured on the pipeline's clock: with a clock other than the system
clock (a :class:`~resilio.testing.FakeClock`), a waiting task's timer waits on that clock and a
waiting thread checks it between short real waits. A released slot is handed
directly to the first waiter, so waiters are served in arrival order and a newcomer never
overtakes the queue. The lock is held only to update the counter and the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from attrs import field, frozen

from resilio._clock import call_later, is_system, timer_sleep, wait_event
from resilio._context import Context
from resilio._outcome import Failure
from resilio.errors import BulkheadFull
from resilio.events import BulkheadQueued, CallRejected
from resilio.policies._base import Args, Env, Kwargs, Layer, Policy

__all__ = ["Bulkhead", "BulkheadOptions"]


def _check_int(minimum: int) -> Callable[[object, Any, int], None]:
    def check(_inst: object, attribute: Any, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(
                f"bulkhead: {attribute.name} must be an integer >= {minimum}, got {value!r}"
            )

    return check


def _check_timeout(_inst: object, attribute: Any, value: float | None) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"bulkhead: queue_timeout must be None or >= 0, got {value!r}")


@frozen(kw_only=True)
class BulkheadOptions:
    """Validated options of a :class:`Bulkhead`."""

    max_concurrent: int = field(default=10, validator=_check_int(1))
    max_queued: int = field(default=0, validator=_check_int(0))
    queue_timeout: float | None = field(default=None, validator=_check_timeout)


class _Waiter:
    __slots__ = ("event", "future", "gone", "granted", "loop")

    def __init__(self) -> None:
        self.granted = False
        self.gone = False
        self.event: threading.Event | None = None
        self.future: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()
        elif self.loop is not None and self.future is not None:
            # A closed loop has nobody left to wake.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(_resolve, self.future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Bulkhead(Policy):
    """Limits how many calls run at once; extra calls wait in a bounded queue or are rejected.

    Args:
        max_concurrent: Calls allowed to run at the same time.
        max_queued: Calls allowed to wait for a slot (0: reject at once when full).
        queue_timeout: Longest wait for a slot in seconds of the pipeline's clock (``None``: as
            long as it takes, but never past the execution's deadline).
        name: The bulkhead's name (default ``"bulkhead"``).

    A call that cannot get a slot fails with :class:`~resilio.BulkheadFull`. Slots are always
    given back: on success, failure, cancellation and timeout.
    """

    kind: ClassVar[str] = "bulkhead"
    options_class: ClassVar[type] = BulkheadOptions

    def __init__(
        self,
        max_concurrent: int = 10,
        *,
        max_queued: int = 0,
        queue_timeout: float | None = None,
        name: str | None = None,
    ) -> None:
        self._setup(
            BulkheadOptions(
                max_concurrent=max_concurrent, max_queued=max_queued, queue_timeout=queue_timeout
            ),
            name,
        )

    @classmethod
    def from_options(cls, options: BulkheadOptions, *, name: str | None = None) -> Bulkhead:
        """Build a bulkhead from validated options."""
        self = cls.__new__(cls)
        self._setup(options, name)
        return self

    def _setup(self, options: BulkheadOptions, name: str | None) -> None:
        self.options = options
        self.name = name or self.kind
        self._max = options.max_concurrent
        self._max_queued = options.max_queued
        self._lock = threading.Lock()
        self._in_use = 0
        self._queued = 0
        self._queue: deque[_Waiter] = deque()

    @property
    def in_use(self) -> int:
        """Slots currently taken by running calls."""
        return self._in_use

    @property
    def queued(self) -> int:
        """Calls currently waiting for a slot."""
        return self._queued

    # -- slots ----------------------------------------------------------------------------------

    def _enqueue(self, waiter: _Waiter) -> bool:
        """Queue ``waiter``, or take a slot at once (``waiter.granted``); False if full."""
        with self._lock:
            if self._in_use < self._max and not self._queued:
                self._in_use += 1
                waiter.granted = True
                return True
            if self._queued >= self._max_queued:
                return False
            self._queue.append(waiter)
            self._queued += 1
            return True

    def _release(self) -> None:
        with self._lock:
            if self._queue:
                self._hand_over()
            else:
                self._in_use -= 1

    def _hand_over(self) -> None:
        """Give a freed slot to the first live waiter, or free it (the lock is held)."""
        queue = self._queue
        while queue:
            waiter = queue.popleft()
            if waiter.gone:
                continue
            self._queued -= 1
            waiter.granted = True  # the slot passes straight to the first waiter
            waiter.wake()
            return
        self._in_use -= 1

    def _give_up(self, waiter: _Waiter) -> bool:
        """A waiter stops waiting; return whether it was granted a slot in the meantime."""
        with self._lock:
            if waiter.granted:
                return True
            waiter.gone = True
            self._queued -= 1
            if len(self._queue) > 2 * self._queued + 16:
                self._queue = deque(w for w in self._queue if not w.gone)
            return False

    def _timeout(self, ctx: Context) -> float | None:
        timeout: float | None = self.options.queue_timeout
        remaining = ctx.remaining() if ctx.deadline is not None else None
        if remaining is not None:
            remaining = max(remaining, 0.0)
            if timeout is None or remaining < timeout:
                return remaining
        return timeout

    def _reject(self, env: Env, ctx: Any, queued: bool) -> Failure:
        why = "its queue wait ran out" if queued else "it has no free slot"
        env.emit(
            CallRejected(
                pipeline=env.pipeline,
                policy=self.name,
                operation=ctx.operation,
                attempt=ctx.attempt,
                reason="bulkhead_full",
            )
        )
        return Failure(
            BulkheadFull(
                f"bulkhead {self.name!r} is full: {why}", pipeline=env.pipeline, policy=self.name
            )
        )

    def _queued_event(self, env: Env, ctx: Any, started: float) -> None:
        env.emit(
            BulkheadQueued(
                pipeline=env.pipeline,
                policy=self.name,
                operation=ctx.operation,
                attempt=ctx.attempt,
                wait=max(env.clock.monotonic() - started, 0.0),
            )
        )

    def acquire(self, env: Env, ctx: Any) -> Failure | None:
        """Take a slot for a call run in this thread, waiting in the queue if allowed."""
        waiter = _Waiter()
        waiter.event = threading.Event()
        if not self._enqueue(waiter):
            return self._reject(env, ctx, False)
        if waiter.granted:
            return None
        clock = env.clock
        started = clock.monotonic()
        try:
            wait_event(waiter.event, self._timeout(ctx), clock, started)
        except BaseException:
            if self._give_up(waiter):
                self._release()
            raise
        if not waiter.granted and not self._give_up(waiter):
            return self._reject(env, ctx, True)
        self._queued_event(env, ctx, started)
        return None

    async def acquire_async(self, env: Env, ctx: Any) -> Failure | None:
        """Take a slot for a task, waiting on the loop (never blocking it) if allowed."""
        waiter = _Waiter()
        loop = asyncio.get_running_loop()
        waiter.loop = loop
        waiter.future = future = loop.create_future()
        if not self._enqueue(waiter):
            return self._reject(env, ctx, False)
        if waiter.granted:
            return None
        clock = env.clock
        started = clock.monotonic()
        timeout = self._timeout(ctx)
        timer = None
        try:
            if timeout is None or is_system(clock):
                await asyncio.wait_for(future, timeout)
            else:  # the loop's timers do not follow this clock: wait on the clock itself
                timer = call_later(timer_sleep(clock), timeout, _resolve, future)
                await future
        except TimeoutError:
            pass
        except BaseException:
            if self._give_up(waiter):
                self._release()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if not waiter.granted and not self._give_up(waiter):
            return self._reject(env, ctx, True)
        self._queued_event(env, ctx, started)
        return None

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        """Build the bulkhead's layer for one pipeline."""
        return _BulkheadLayer(inner, env, self)


class _BulkheadLayer(Layer):
    """Takes a slot around each call.

    The fast path (a free slot, nobody queued) is one lock-protected increment before the call
    and one decrement after it, inline: no method call, no allocation.
    """

    __slots__ = ("_bulkhead", "_inner_run", "_inner_run_async", "_lock")

    def __init__(self, inner: Layer, env: Env, bulkhead: Bulkhead) -> None:
        super().__init__(inner, env, bulkhead)
        self._bulkhead = bulkhead
        self._lock = bulkhead._lock
        self._inner_run = inner.run
        self._inner_run_async = inner.run_async

    def run(self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Any) -> Any:
        b = self._bulkhead
        lock = self._lock
        lock.acquire()  # acquire/release: cheaper than a with block
        try:
            free = b._in_use < b._max and not b._queued
            if free:
                b._in_use += 1
        finally:
            lock.release()
        if not free:
            refused = b.acquire(self.env, ctx)
            if refused is not None:
                return refused
        try:
            return self._inner_run(fn, args, kwargs, ctx)
        finally:
            lock.acquire()
            try:
                if b._queue:
                    b._hand_over()
                else:
                    b._in_use -= 1
            finally:
                lock.release()

    async def run_async(self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Any) -> Any:
        b = self._bulkhead
        lock = self._lock
        lock.acquire()  # acquire/release: cheaper than a with block
        try:
            free = b._in_use < b._max and not b._queued
            if free:
                b._in_use += 1
        finally:
            lock.release()
        if not free:
            refused = await b.acquire_async(self.env, ctx)
            if refused is not None:
                return refused
        try:
            return await self._inner_run_async(fn, args, kwargs, ctx)
        finally:
            lock.acquire()
            try:
                if b._queue:
                    b._hand_over()
                else:
                    b._in_use -= 1
            finally:
                lock.release()
