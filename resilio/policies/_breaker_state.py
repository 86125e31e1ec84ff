"""The circuit breaker's state machine, free of I/O: every time-dependent method takes ``now``.

The machine is not thread-safe: the breaker calls it under a lock, and never while the user's
function runs. Methods that change the state return a :class:`Transition` (or ``None``) so the
caller can report events after releasing the lock.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable

from attrs import frozen

__all__ = [
    "BreakerMachine",
    "BreakerRules",
    "CircuitState",
    "CountWindow",
    "TimeWindow",
    "Transition",
]


class CircuitState(enum.Enum):
    """The states of a circuit breaker."""

    CLOSED = "closed"
    """Calls run; outcomes are counted."""

    OPEN = "open"
    """Calls are rejected until the break ends."""

    HALF_OPEN = "half_open"
    """A few trial calls run; their outcomes close or reopen the circuit."""

    ISOLATED = "isolated"
    """Forced open by :meth:`~resilio.CircuitBreaker.isolate` until ``reset()``."""


@frozen(kw_only=True)
class BreakerRules:
    """The rules a machine applies (built from validated circuit breaker options)."""

    failure_threshold: int | None = 5
    failure_rate: float | None = None
    slow_call_rate: float | None = None
    minimum_calls: int = 10
    window: float | None = None
    window_size: int | None = None
    break_duration: float = 30.0
    break_duration_multiplier: float = 1.0
    max_break_duration: float | None = None
    half_open_max_calls: int = 1
    success_threshold: int = 1

    @property
    def windowed(self) -> bool:
        """Whether a rate rule needs a sliding window."""
        return self.failure_rate is not None or self.slow_call_rate is not None

    def break_for(self, openings: int) -> float:
        """Return the break duration after ``openings`` consecutive openings (1 for the first)."""
        duration = self.break_duration * self.break_duration_multiplier ** max(openings - 1, 0)
        if self.max_break_duration is not None and duration > self.max_break_duration:
            return self.max_break_duration
        return duration


@frozen
class Transition:
    """A state change to report.

    Attributes:
        state: The new state.
        reason: Why (for an opening: ``"failures"``, ``"failure_rate"``, ``"slow_call_rate"``,
            ``"half_open_failure"``, ``"isolated"``; for a close: ``"recovered"``, ``"reset"``;
            ``"shared"`` for either when adopted from a shared store).
        break_duration: The break's length, for openings.
    """

    state: CircuitState
    reason: str = ""
    break_duration: float = 0.0


class CountWindow:
    """The outcomes of the last ``size`` calls, in a ring buffer with running sums (O(1))."""

    __slots__ = ("calls", "failures", "pos", "ring", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.ring = bytearray(size)  # bit 1: counted call, bit 2: failure, bit 4: slow
        self.pos = 0
        self.calls = self.failures = self.slow = 0

    def add(self, now: float, failed: bool, slow: bool) -> None:
        """Record one call (``now`` is unused; count windows ignore time)."""
        old = self.ring[self.pos]
        if old:
            self.calls -= 1
            self.failures -= (old >> 1) & 1
            self.slow -= (old >> 2) & 1
        self.ring[self.pos] = 1 | (2 if failed else 0) | (4 if slow else 0)
        self.pos = (self.pos + 1) % self.size
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def add_success(self) -> None:
        """Record one fast success (the hot path of :meth:`BreakerMachine.record_success`)."""
        pos = self.pos
        old = self.ring[pos]
        if old:
            if old & 2:
                self.failures -= 1
            if old & 4:
                self.slow -= 1
        else:
            self.calls += 1
        self.ring[pos] = 1
        pos += 1
        self.pos = 0 if pos == self.size else pos

    def clear(self) -> None:
        """Forget every call."""
        self.ring = bytearray(self.size)
        self.pos = 0
        self.calls = self.failures = self.slow = 0


class TimeWindow:
    """The calls of the last ``seconds``, in a ring of ``buckets`` buckets with running sums."""

    __slots__ = ("buckets", "calls", "counts", "failures", "head", "slow", "width")

    def __init__(self, seconds: float, buckets: int = 10) -> None:
        self.width = seconds / buckets
        self.buckets = buckets
        self.counts = [[0, 0, 0] for _ in range(buckets)]
        self.head: int | None = None  # absolute index of the newest bucket
        self.calls = self.failures = self.slow = 0

    def advance(self, now: float) -> None:
        """Drop the buckets that fell out of the window by ``now``."""
        index = math.floor(now / self.width)
        head = self.head
        if head is None or index - head >= self.buckets:
            if head is not None:
                self.clear()
            self.head = index
            return
        while head < index:
            head += 1
            bucket = self.counts[head % self.buckets]
            self.calls -= bucket[0]
            self.failures -= bucket[1]
            self.slow -= bucket[2]
            bucket[0] = bucket[1] = bucket[2] = 0
        self.head = head

    def add(self, now: float, failed: bool, slow: bool) -> None:
        """Record one call at ``now``."""
        self.advance(now)
        assert self.head is not None
        bucket = self.counts[self.head % self.buckets]
        bucket[0] += 1
        bucket[1] += failed
        bucket[2] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def clear(self) -> None:
        """Forget every call."""
        for bucket in self.counts:
            bucket[0] = bucket[1] = bucket[2] = 0
        self.head = None
        self.calls = self.failures = self.slow = 0


class BreakerMachine:
    """States, counters and transitions of one circuit breaker.

    Attributes:
        state: The current state.
        consecutive: Counted failures since the last success (closed state).
        open_until: When the break ends (open), in the caller's clock.
        openings: Consecutive openings without a close in between.
        trials: Trial calls in flight (half-open): trial id -> time its slot is freed anyway.
        trial_successes: Successful trials since the circuit half-opened.
        generation: Grows on every transition; trial ids of an older generation are ignored.
    """

    __slots__ = (
        "consecutive",
        "generation",
        "open_until",
        "openings",
        "rules",
        "state",
        "trial_successes",
        "trials",
        "window",
    )

    def __init__(self, rules: BreakerRules) -> None:
        self.rules = rules
        self.state = CircuitState.CLOSED
        self.consecutive = 0
        self.open_until = 0.0
        self.openings = 0
        self.trials: dict[int, float] = {}
        self.trial_successes = 0
        self.generation = 0
        self.window: CountWindow | TimeWindow | None = None
        if rules.windowed:
            if rules.window is not None:
                self.window = TimeWindow(rules.window)
            else:
                self.window = CountWindow(rules.window_size or 100)

    # -- closed state --------------------------------------------------------------------------

    def record(self, now: float, failed: bool, slow: bool) -> Transition | None:
        """Count the outcome of a call admitted while closed; open if a rule trips.

        Outcomes arriving after the circuit left the closed state are ignored.
        """
        if self.state is not CircuitState.CLOSED:
            return None
        if failed:
            self.consecutive += 1
        else:
            self.consecutive = 0
        reason = None
        threshold = self.rules.failure_threshold
        if failed and threshold is not None and self.consecutive >= threshold:
            reason = "failures"
        window = self.window
        if window is not None:
            window.add(now, failed, slow)
            if reason is None:
                reason = self.rate_rule(window.calls, window.failures, window.slow)
        if reason is None:
            return None
        return self.open(now, reason)

    def record_success(self, now: float | None, clock: Callable[[], float]) -> Transition | None:
        """Count a fast (not slow) success of a call admitted while closed.

        Same as ``record(now, False, False)``, cheaper: in a full count window a success can
        only lower the rates, so they are judged only when the window reaches
        ``minimum_calls``. ``now`` may be ``None``; ``clock`` is then called if time is needed.
        """
        if self.state is not CircuitState.CLOSED:
            return None
        self.consecutive = 0
        window = self.window
        if window is None:
            return None
        if isinstance(window, CountWindow):
            window.add_success()
            if window.calls != self.rules.minimum_calls:
                return None
        else:
            if now is None:
                now = clock()
            window.add(now, False, False)
        reason = self.rate_rule(window.calls, window.failures, window.slow)
        if reason is None:
            return None
        return self.open(clock() if now is None else now, reason)

    def rate_rule(self, calls: int, failures: int, slow: int) -> str | None:
        """Return which rate rule trips for these window counts, if any."""
        rules = self.rules
        if calls < rules.minimum_calls or calls == 0:
            return None
        if rules.failure_rate is not None and failures >= rules.failure_rate * calls:
            return "failure_rate"
        if rules.slow_call_rate is not None and slow >= rules.slow_call_rate * calls:
            return "slow_call_rate"
        return None

    # -- transitions ----------------------------------------------------------------------------

    def _enter(self, state: CircuitState) -> None:
        self.state = state
        self.generation += 1
        self.trials.clear()
        self.trial_successes = 0
        self.consecutive = 0
        if self.window is not None:
            self.window.clear()

    def open(self, now: float, reason: str) -> Transition:
        """Open the circuit now, escalating the break duration with consecutive openings."""
        self.openings += 1
        duration = self.rules.break_for(self.openings)
        self._enter(CircuitState.OPEN)
        self.open_until = now + duration
        return Transition(CircuitState.OPEN, reason, duration)

    def close(self, reason: str) -> Transition:
        """Close the circuit and forget its counts."""
        self.openings = 0
        self._enter(CircuitState.CLOSED)
        return Transition(CircuitState.CLOSED, reason)

    def adopt(
        self, now: float, state: CircuitState, open_until: float, openings: int
    ) -> Transition | None:
        """Take on a state decided elsewhere (a shared store); report it if it changed."""
        changed = state is not self.state
        if changed:
            self._enter(state)
        self.open_until = open_until
        self.openings = openings
        if not changed:
            return None
        return Transition(state, "shared", max(open_until - now, 0.0))

    def isolate(self) -> Transition:
        """Force the circuit open until :meth:`close` is called."""
        self._enter(CircuitState.ISOLATED)
        return Transition(CircuitState.ISOLATED, "isolated")

    # -- open and half-open -------------------------------------------------------------------

    def acquire(self, now: float, trial_id: int) -> tuple[bool, Transition | None]:
        """Ask to run a call while not closed.

        Open: after the break, half-open and admit the call as trial ``trial_id``. Half-open:
        free the slots of trials that never reported for a whole break, then admit the call
        as a trial if a slot is free.

        Returns:
            Whether the call is admitted (as a trial unless the state is closed), and the
            transition to report, if any.
        """
        state = self.state
        if state is CircuitState.CLOSED:
            return True, None
        if state is CircuitState.ISOLATED:
            return False, None
        transition = None
        if state is CircuitState.OPEN:
            if now < self.open_until:
                return False, None
            self._enter(CircuitState.HALF_OPEN)
            transition = Transition(CircuitState.HALF_OPEN)
        trials = self.trials
        if trials:
            for tid in [t for t, lease_end in trials.items() if lease_end <= now]:
                del trials[tid]
        if len(trials) >= self.rules.half_open_max_calls:
            return False, transition
        trials[trial_id] = now + self.rules.break_for(self.openings)
        return True, transition

    def trial_done(self, now: float, trial_id: int, outcome: bool | None) -> Transition | None:
        """Report a trial's outcome: ``True`` success, ``False`` counted failure, ``None`` neither.

        Trials that lost their slot (a whole break passed) or belong to an earlier half-open
        period are ignored.
        """
        if self.state is not CircuitState.HALF_OPEN or self.trials.pop(trial_id, None) is None:
            return None
        if outcome is None:
            return None
        if not outcome:
            return self.open(now, "half_open_failure")
        self.trial_successes += 1
        if self.trial_successes >= self.rules.success_threshold:
            return self.close("recovered")
        return None

    def retry_after(self, now: float) -> float | None:
        """Seconds until the open circuit admits a trial, or ``None`` if unknown."""
        if self.state is CircuitState.OPEN:
            return max(self.open_until - now, 0.0)
        return None
