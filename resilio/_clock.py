"""Time, injected: every policy reads time and sleeps through a :class:`Clock`."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "SystemClock",
    "call_later",
    "is_system",
    "timer_sleep",
    "wait_event",
]


@runtime_checkable
class Clock(Protocol):
    """The source of time for a pipeline and its policies.

    Implementations must be safe to call from several threads at once.

    Waits that end at a time of the clock (an async timeout's deadline, a bulkhead's
    ``queue_timeout``) follow any clock that is not the system clock: an async one suspends on
    the clock's ``timer_async(seconds)`` if it has one (:class:`resilio.testing.FakeClock` does:
    a timer there never moves time itself and is not recorded in ``sleeps``), else on
    ``sleep_async``; a thread waiting for an event checks ``monotonic()`` between short real
    waits.
    """

    def monotonic(self) -> float:
        """Return a monotonic time in seconds, for measuring intervals."""
        ...

    def time(self) -> float:
        """Return the wall-clock time in seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    async def sleep_async(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` without blocking the event loop."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`time.sleep` and :func:`asyncio.sleep`."""

    __slots__ = ()

    def monotonic(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    def time(self) -> float:
        """Return :func:`time.time`."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """Sleep with :func:`time.sleep` (no-op for non-positive values)."""
        if seconds > 0:
            time.sleep(seconds)

    async def sleep_async(self, seconds: float) -> None:
        """Sleep with :func:`asyncio.sleep` (yields once even for non-positive values)."""
        await asyncio.sleep(max(seconds, 0.0))

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK: Clock = SystemClock()
"""The shared default clock."""


def is_system(clock: Clock) -> bool:
    """Return whether ``clock`` is the system clock (which loop timers and real waits follow)."""
    return type(clock) is SystemClock


def timer_sleep(clock: Clock) -> Callable[[float], Awaitable[None]]:
    """Return what an async wait on ``clock``'s time suspends on.

    The clock's ``timer_async`` when it has one (a wait that is not a sleep asked for by the
    caller), else its ``sleep_async``.
    """
    timer: Callable[[float], Awaitable[None]] | None = getattr(clock, "timer_async", None)
    return timer if timer is not None else clock.sleep_async


def call_later(
    sleep: Callable[[float], Awaitable[None]],
    seconds: float,
    callback: Callable[..., Any],
    *args: Any,
) -> asyncio.Task[None]:
    """Run ``callback(*args)`` once ``await sleep(seconds)`` returns, in a task of the running loop.

    ``sleep`` comes from :func:`timer_sleep`. Cancel the task to drop the callback; a timer that
    never started costs the loop one step.
    """
    return asyncio.get_running_loop().create_task(_later(sleep, seconds, callback, args))


async def _later(
    sleep: Callable[[float], Awaitable[None]],
    seconds: float,
    callback: Callable[..., Any],
    args: tuple[Any, ...],
) -> None:
    await sleep(seconds)
    callback(*args)


_POLL_FIRST = 0.001
_POLL_MOST = 0.02


def wait_event(
    event: threading.Event, seconds: float | None, clock: Clock, since: float | None = None
) -> bool:
    """Wait until ``event`` is set or ``seconds`` of ``clock``'s time have passed.

    For the system clock this is ``event.wait(seconds)``. For another clock, the thread waits in
    short real slices (1 ms, doubling up to 20 ms) and reads ``clock.monotonic()`` between them,
    so the wait ends when the clock reaches the end, however it gets there (a
    :meth:`~resilio.testing.FakeClock.advance` from another thread, a sleep).

    Args:
        event: What is waited for.
        seconds: The longest wait in the clock's seconds; ``None`` to wait for the event only.
        clock: The clock whose time bounds the wait.
        since: The clock's time the ``seconds`` count from (default: now). A caller that
            computed ``seconds`` from an earlier reading passes that reading, so time that
            passed in between (the clock moved by another thread) is not given again.

    Returns:
        Whether the event is set.
    """
    if seconds is None or is_system(clock):
        return event.wait(seconds)
    end = (clock.monotonic() if since is None else since) + seconds
    poll = _POLL_FIRST
    while True:
        left = end - clock.monotonic()
        if left <= 0:
            return event.is_set()
        if event.wait(min(left, poll)):
            return True
        poll = min(poll * 2, _POLL_MOST)
