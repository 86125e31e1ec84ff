"""Helpers for testing code that uses resilio: a fake clock, event capture and a testing mode."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TypeVar

from resilio.events import Event

E = TypeVar("E", bound=Event)

__all__ = ["EventRecorder", "FakeClock", "capture_events", "is_testing", "set_testing"]


class FakeClock:
    """A clock whose time only moves when told to: sleeping advances it instantly.

    ``sleep`` and ``sleep_async`` return at once after moving virtual time forward, so tests of
    retries, breakers and rate limiters never sleep for real. Thread-safe.

    Args:
        start: The initial monotonic time in seconds.
        wall_start: The initial wall-clock time in seconds since the epoch.

    Attributes:
        sleeps: Every sleep requested, in order, in seconds.
    """

    def __init__(self, start: float = 0.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._offset = float(wall_start) - float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """Return the virtual monotonic time."""
        return self._now

    def time(self) -> float:
        """Return the virtual wall-clock time."""
        return self._now + self._offset

    def advance(self, seconds: float) -> None:
        """Move virtual time forward by ``seconds``.

        Raises:
            ValueError: If ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"cannot move time backwards (advance({seconds!r}))")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Record the sleep and advance virtual time by it, returning at once."""
        with self._lock:
            self.sleeps.append(seconds)
            if seconds > 0:
                self._now += seconds

    async def sleep_async(self, seconds: float) -> None:
        """Record the sleep, advance virtual time and yield to the event loop once."""
        self.sleep(seconds)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"


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
