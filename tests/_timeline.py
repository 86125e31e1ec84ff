"""Run async test code on virtual time, for both kinds of clock a pipeline may have.

* ``fake-clock``: the pipeline has a :class:`~resilio.testing.FakeClock` (its policies wait on
  the clock) and runs in an ordinary event loop.
* ``system-clock``: the pipeline has the system clock (its policies use the loop's timers, the
  fast path) and runs in a :class:`VirtualTimeLoop`, whose time jumps to the next timer
  whenever nothing is ready, instead of sleeping.

Neither sleeps for real.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

from resilio.testing import FakeClock

T = TypeVar("T")

START = 1000.0
"""Where both timelines start."""


class _JumpingSelector(selectors.DefaultSelector):
    """Polls for I/O without blocking; a wait for a timer moves the loop's virtual time instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = START

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:  # no timer at all: only I/O (or another thread) can wake the loop
            return super().select(None)
        self.now += timeout
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: ``time()`` moves only when the loop waits for a timer."""

    def __init__(self) -> None:
        self._jumping = _JumpingSelector()
        super().__init__(self._jumping)

    def time(self) -> float:
        """Return the loop's virtual time."""
        return self._jumping.now


class Timeline:
    """Where a test's async code runs and how its time is read.

    Args:
        kind: ``"fake-clock"`` or ``"system-clock"`` (see the module docstring).

    Attributes:
        clock: The clock to give the pipeline (``None``: the system clock).
        loop: The loop :meth:`run` runs code in.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.clock: FakeClock | None
        self.loop: asyncio.AbstractEventLoop
        if kind == "fake-clock":
            self.clock = FakeClock(start=START)
            self.loop = asyncio.new_event_loop()
        else:
            self.clock = None
            self.loop = VirtualTimeLoop()

    def now(self) -> float:
        """Return the current virtual time of this timeline."""
        return self.clock.monotonic() if self.clock is not None else self.loop.time()

    async def sleep(self, seconds: float) -> None:
        """Sleep on this timeline (the fake clock's sleep, or the loop's)."""
        if self.clock is not None:
            await self.clock.sleep_async(seconds)
        else:
            await asyncio.sleep(seconds)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion in this timeline's loop."""
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        """Close the loop."""
        self.loop.close()
