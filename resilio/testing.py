"""Helpers for testing code that uses resilio: a fake clock, event capture and a testing mode."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TypeVar

from resilio.events import Event

E = TypeVar("E", bound=Event)

__all__ = ["EventRecorder", "FakeClock", "capture_events", "is_testing", "set_testing"]


_SETTLE_RUNS = 3
"""The wake-up callback moves time on this run in a row with no new sleeper (FakeClock rule 2)."""


class _Sleepers:
    """The async sleepers of one event loop: a heap of ``(wake_time, seq, future, drives)``.

    ``drives`` is False for a timer (:meth:`FakeClock.timer_async`): it wakes when time reaches
    it but never moves time itself.
    """

    __slots__ = ("heap", "queued", "quiet")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, asyncio.Future[None], bool]] = []
        self.queued = False  # a wake-up callback is queued on the loop
        self.quiet = 0  # its runs since the last sleeper registered


class FakeClock:
    """A clock of virtual time: it moves only with :meth:`advance` and sleeps, never by itself.

    Tests of retries, breakers and rate limiters never sleep for real. Thread-safe.

    ``sleep(s)`` records the sleep and moves time forward by ``s`` at once, without waiting for
    anything: sync sleeps (from any thread) add up.

    ``await sleep_async(s)`` records the sleep and suspends the task until virtual time reaches
    ``monotonic() + s`` (taken when it is called); concurrent sleepers share the timeline
    instead of adding up. The rule, per event loop:

    1. A sleeper is put in a heap of ``(wake_time, seq, future)``; ``seq`` counts sleepers, so
       equal wake times keep the order in which the sleeps were called.
    2. Time is moved by a callback the clock queues on the loop with ``loop.call_soon`` when a
       sleeper arrives. Each run queues it again, behind every callback queued meanwhile; a new
       sleeper restarts its count, and it moves time on its 3rd run in a row with no new
       sleeper. So the tasks that were ready when the last sleeper arrived, and the ones they
       wake through up to two more callbacks (setting an :class:`asyncio.Event` wakes its
       waiters through one), start their own sleeps first. A task that reaches its sleep
       later (a longer chain of wake-ups, real I/O) finds time already moved.
    3. Then time becomes the earliest wake time (or stays, if :meth:`advance` or :meth:`sleep`
       already moved it past) and every sleeper due by then is woken, earliest first, ties in
       ``seq`` order. Woken tasks run before time moves again, so each reads its own wake time.

    Timers (:meth:`timer_async`: the waits of resilio's async timeouts and bulkhead queues) sit
    in the same heap and wake by the same rule, but never move time themselves: time moves to a
    timer's wake time only when a sleeper, :meth:`advance` or :meth:`sleep` takes it there or
    past. So under a fake-clock timeout a call sleeping past it is cut at the timeout, while a
    call waiting for real I/O, or for an event, is never timed out by the clock racing ahead.

    So two tasks sleeping 1 s at once both wake at +1 s (not +2 s), and tasks sleeping 2 s and
    1 s at once wake at +1 s and then at +2 s. A sleep always ends after a few loop iterations:
    nothing else has to move time. A cancelled sleeper is dropped without moving time.
    ``sleep_async(s)`` with ``s <= 0`` only yields to the loop once. Time is shared by every
    thread and loop; each loop keeps its own sleepers.

    Args:
        start: The initial monotonic time in seconds.
        wall_start: The initial wall-clock time in seconds since the epoch.

    Attributes:
        sleeps: Every sleep requested (sync and async), in the order called, in seconds; the
            waits of :meth:`timer_async` (timeouts, bulkhead queue waits) are not sleeps.
    """

    def __init__(self, start: float = 0.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._offset = float(wall_start) - float(start)
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sleepers] = (
            weakref.WeakKeyDictionary()
        )
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """Return the virtual monotonic time."""
        return self._now

    def time(self) -> float:
        """Return the virtual wall-clock time."""
        return self._now + self._offset

    def advance(self, seconds: float) -> None:
        """Move virtual time forward by ``seconds``.

        Async sleepers and timers whose wake time it passes wake a few loop iterations later
        (class rule 3); it may be called from any thread.

        Raises:
            ValueError: If ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"cannot move time backwards (advance({seconds!r}))")
        with self._lock:
            self._now += seconds
            loops = list(self._loops.items())
        self._nudge(loops)

    def sleep(self, seconds: float) -> None:
        """Record the sleep and advance virtual time by it, returning at once."""
        with self._lock:
            self.sleeps.append(seconds)
            if seconds <= 0:
                return
            self._now += seconds
            loops = list(self._loops.items())
        self._nudge(loops)

    def _nudge(self, loops: list[tuple[asyncio.AbstractEventLoop, _Sleepers]]) -> None:
        """Have each loop with waiting sleepers check for due ones (time moved by itself)."""
        for loop, sleepers in loops:
            if sleepers.heap:
                with contextlib.suppress(RuntimeError):  # a closed loop has nobody to wake
                    loop.call_soon_threadsafe(self._check, loop, sleepers)

    def _check(self, loop: asyncio.AbstractEventLoop, sleepers: _Sleepers) -> None:
        if not sleepers.queued and sleepers.heap:
            sleepers.queued = True
            loop.call_soon(self._wake_due, loop, sleepers)

    async def sleep_async(self, seconds: float) -> None:
        """Record the sleep and suspend until virtual time reaches ``monotonic() + seconds``.

        Concurrent sleepers wake in wake-time order, each at its own time (rule above).
        """
        await self._suspend(seconds, record=True)

    async def timer_async(self, seconds: float) -> None:
        """Suspend like :meth:`sleep_async`, without recording the wait in :attr:`sleeps`.

        What resilio's own waits on this clock use: an async :class:`~resilio.Timeout`'s deadline
        and a :class:`~resilio.Bulkhead`'s ``queue_timeout``. A timer shares the sleepers'
        timeline but never moves time itself (see the class): it ends when a sleep,
        :meth:`advance` or :meth:`sleep` brings time to its wake time.
        """
        await self._suspend(seconds, record=False)

    async def _suspend(self, seconds: float, *, record: bool) -> None:
        # record: a sleep (recorded, moves time) rather than a timer (neither).
        loop = asyncio.get_running_loop()
        with self._lock:
            if record:
                self.sleeps.append(seconds)
            if seconds <= 0:
                sleepers = None
            else:
                wake = self._now + seconds
                seq = next(self._seq)
                sleepers = self._loops.get(loop)
                if sleepers is None:
                    sleepers = self._loops[loop] = _Sleepers()
        if sleepers is None:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(sleepers.heap, (wake, seq, future, record))
        sleepers.quiet = 0
        if not sleepers.queued:
            sleepers.queued = True
            loop.call_soon(self._wake_due, loop, sleepers)
        await future

    def _wake_due(self, loop: asyncio.AbstractEventLoop, sleepers: _Sleepers) -> None:
        heap = sleepers.heap
        while heap and heap[0][2].done():  # cancelled while asleep
            heapq.heappop(heap)
        if not heap:
            sleepers.queued = False
            return
        drives = any(entry[3] and not entry[2].done() for entry in heap)
        if not drives and heap[0][0] > self._now:  # only timers, none due: wait for time
            sleepers.queued = False
            sleepers.quiet = 0
            return
        sleepers.quiet += 1
        if sleepers.quiet >= _SETTLE_RUNS:
            sleepers.quiet = 0
            with self._lock:
                if drives:
                    self._now = max(self._now, heap[0][0])
                now = self._now
            while heap and heap[0][0] <= now:
                future = heapq.heappop(heap)[2]
                if not future.done():
                    future.set_result(None)
            if not heap:
                sleepers.queued = False
                return
        loop.call_soon(self._wake_due, loop, sleepers)


class EventRecorder:
    """A listener that keeps every event it receives.

    Attributes:
        events: The events received, in order.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        """Record an event."""
        with self._lock:
            self.events.append(event)

    def names(self) -> list[str]:
        """Return the dotted names of the recorded events, in order."""
        return [e.name for e in self.events]

    def of(self, kind: type[E]) -> list[E]:
        """Return the recorded events of one class."""
        return [e for e in self.events if isinstance(e, kind)]


@contextmanager
def capture_events() -> Iterator[EventRecorder]:
    """Record the events of every pipeline while the block runs.

    Yields:
        The recorder; its ``events`` list fills as pipelines report events.
    """
    from resilio.plugins import _runtime

    recorder = EventRecorder()
    _runtime.add_global_listener(recorder)
    try:
        yield recorder
    finally:
        _runtime.remove_global_listener(recorder)


class _TestingMode:
    """Returned by :func:`set_testing`; as a context manager, restores the previous mode on exit."""

    __slots__ = ("_previous",)

    def __init__(self, previous: tuple[int, bool] | None) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        from resilio.policies._retry_logic import set_testing_state

        set_testing_state(self._previous)


def set_testing(testing: bool = True, /, *, attempts: int = 1, cap: bool = True) -> _TestingMode:
    """Switch retry policies into (or out of) testing mode, process-wide.

    In testing mode, retry policies never wait (no sleeping, real or fake) and make at most
    ``attempts`` attempts: with ``cap=True`` (the default) a policy keeps its own smaller
    ``attempts`` (testing mode never raises it); with ``cap=False`` every policy makes exactly
    ``attempts``. ``set_testing(attempts=1)`` switches retrying off: each call runs once.

    Works as a plain call and as a context manager that restores the previous mode::

        with resilio.testing.set_testing(attempts=2):
            ...

    Args:
        testing: ``False`` switches testing mode off.
        attempts: The most attempts any retry policy makes while testing.
        cap: Keep policies' own smaller ``attempts`` (``True``) or force ``attempts`` on all.

    Returns:
        A context manager restoring the mode that was in force before the call.

    Raises:
        ValueError: If ``attempts`` is not an integer >= 1.
    """
    from resilio.policies._retry_logic import set_testing_state

    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"set_testing attempts must be an integer >= 1, got {attempts!r}")
    return _TestingMode(set_testing_state((attempts, bool(cap)) if testing else None))


def is_testing() -> bool:
    """Return whether retry policies are in testing mode (see :func:`set_testing`)."""
    from resilio.policies import _retry_logic

    return _retry_logic._testing is not None
