"""The retry policy's decisions, free of I/O: whether to retry, and how long to wait first.

Nothing here reads a clock or sleeps: time comes in as ``now``. The sync and async retry layers
are thin loops around :meth:`RetryController.decide`. The retry budget's token accounting and the
global testing switch live here too.
"""

from __future__ import annotations

import math
import random
import threading
from typing import TYPE_CHECKING

from resilio.classify import ErrorKind

if TYPE_CHECKING:
    from resilio.backoff import Backoff
    from resilio.classify import Classification

__all__ = ["RETRY_AFTER_SPREAD", "RetryBudget", "RetryController", "testing_attempts"]

RETRY_AFTER_SPREAD = 0.1
"""With a jittering backoff, a ``Retry-After`` floor ``r`` becomes a delay in ``[r, 1.1 r]``."""

# (attempts, cap) while testing mode is on, else None. Set by resilio.testing.set_testing.
_testing: tuple[int, bool] | None = None


def set_testing_state(state: tuple[int, bool] | None) -> tuple[int, bool] | None:
    """Replace the testing state and return the previous one."""
    global _testing
    previous = _testing
    _testing = state
    return previous


def testing_attempts(attempts: int) -> int:
    """Return the attempts a policy configured with ``attempts`` makes in the current mode."""
    state = _testing
    if state is None:
        return attempts
    limit, cap = state
    return min(attempts, limit) if cap else limit


class RetryBudget:
    """A retry allowance shared by recent calls, so a fleet of retries cannot amplify an outage.

    Every execution deposits ``ratio`` of a token, every retry spends a whole one; tokens older
    than ``window`` seconds expire. A floor of ``min_retries_per_second`` lets a quiet service
    still retry. One budget object may be given to several retry policies to share it. When the
    budget is spent, the retry policy gives up and returns the last failure (event
    :class:`~resilio.events.RetryGaveUp` with reason ``"budget"``).

    Accounting is I/O-free: methods take the current monotonic time. Thread-safe.

    Args:
        ratio: Retries allowed per call made, e.g. ``0.2`` for one retry per five calls. Not a
            fraction: above ``1`` it allows more than one retry per call on average (``2`` lets
            every call of a three-attempt policy use both its retries).
        min_retries_per_second: Retries always allowed per second of the window.
        window: Seconds of history the budget remembers.

    Raises:
        ValueError: If an argument is negative, not finite, or ``window`` is zero.
    """

    _SLOTS = 10

    def __init__(
        self, ratio: float = 0.2, *, min_retries_per_second: float = 1.0, window: float = 10.0
    ) -> None:
        for label, value in (
            ("ratio", ratio),
            ("min_retries_per_second", min_retries_per_second),
            ("window", window),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(  # noqa: TRY004 - configuration errors are ValueErrors
                    f"RetryBudget {label} must be a number, got {value!r}"
                )
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"RetryBudget {label} must be finite and >= 0, got {value!r}")
        if window <= 0:
            raise ValueError(f"RetryBudget window must be > 0, got {window!r}")
        self.ratio = float(ratio)
        self.min_retries_per_second = float(min_retries_per_second)
        self.window = float(window)
        self._width = self.window / self._SLOTS
        self._epochs = [-1] * self._SLOTS
        self._calls = [0] * self._SLOTS
        self._retries = [0] * self._SLOTS
        self._lock = threading.Lock()

    def _slot(self, now: float) -> int:
        epoch = math.floor(now / self._width)
        i = epoch % self._SLOTS
        if self._epochs[i] != epoch:
            self._epochs[i] = epoch
            self._calls[i] = 0
            self._retries[i] = 0
        return i

    def _totals(self, now: float) -> tuple[int, int]:
        oldest = math.floor(now / self._width) - self._SLOTS
        calls = retries = 0
        for i in range(self._SLOTS):
            if self._epochs[i] > oldest:
                calls += self._calls[i]
                retries += self._retries[i]
        return calls, retries

    def record_call(self, now: float) -> None:
        """Deposit one call's share of tokens."""
        with self._lock:
            self._calls[self._slot(now)] += 1

    def try_spend(self, now: float) -> bool:
        """Spend one retry if the budget allows it; return whether it did."""
        with self._lock:
            i = self._slot(now)
            calls, retries = self._totals(now)
            allowed = self.ratio * calls + self.min_retries_per_second * self.window
            if retries + 1 > allowed:
                return False
            self._retries[i] += 1
            return True

    def available(self, now: float) -> float:
        """Return how many retries the budget would allow right now."""
        with self._lock:
            calls, retries = self._totals(now)
        return max(0.0, self.ratio * calls + self.min_retries_per_second * self.window - retries)

    def to_mapping(self) -> dict[str, float]:
        """Return the mapping form used in configuration files."""
        return {
            "ratio": self.ratio,
            "min_retries_per_second": self.min_retries_per_second,
            "window": self.window,
        }

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio!r}, min_retries_per_second="
            f"{self.min_retries_per_second!r}, window={self.window!r})"
        )


class RetryController:
    """Decides, for one retry policy, whether a failed attempt is retried and after how long.

    Args:
        attempts: Attempts in all, the first included.
        backoff: The delay strategy.
        max_delay: The longest single wait; a longer ``Retry-After`` makes the policy give up.
        retry_ambiguous: Whether AMBIGUOUS failures are retried when the context does not say.
        budget: The shared retry budget, if any.
        rng: The random source for jitter.
    """

    __slots__ = ("attempts", "backoff", "budget", "max_delay", "retry_ambiguous", "rng")

    def __init__(
        self,
        *,
        attempts: int,
        backoff: Backoff,
        max_delay: float,
        retry_ambiguous: bool,
        budget: RetryBudget | None,
        rng: random.Random,
    ) -> None:
        self.attempts = attempts
        self.backoff = backoff
        self.max_delay = max_delay
        self.retry_ambiguous = retry_ambiguous
        self.budget = budget
        self.rng = rng

    def decide(
        self,
        attempt: int,
        classification: Classification | None,
        idempotent: bool | None,
        now: float,
        deadline: float | None,
        previous: float | None,
    ) -> tuple[str | None, float, float]:
        """Decide what follows failed attempt number ``attempt``.

        Args:
            attempt: The number of the attempt that just failed (1 for the first call).
            classification: The failure's classification, or ``None`` for a rejected result.
            idempotent: The context's idempotency flag (``None``: use ``retry_ambiguous``).
            now: The current monotonic time (only read if there is a deadline or a budget).
            deadline: The absolute deadline, if any.
            previous: The backoff's delay before this retry's predecessor, if any.

        Returns:
            ``(reason, delay, backoff_delay)``: ``reason`` is ``None`` to retry after ``delay``
            seconds (0 in testing mode), else why to give up; ``backoff_delay`` is the
            strategy's own delay, to pass back as ``previous`` next time.
        """
        retry_after = None
        if classification is not None:
            kind = classification.kind
            if kind is ErrorKind.PERMANENT:
                return "permanent", 0.0, 0.0
            if kind is ErrorKind.AMBIGUOUS and not (
                self.retry_ambiguous if idempotent is None else idempotent
            ):
                return "ambiguous", 0.0, 0.0
            retry_after = classification.retry_after
        if attempt >= testing_attempts(self.attempts):
            return ("exhausted" if classification is not None else "result"), 0.0, 0.0
        raw = min(self.backoff.delay(attempt, self.rng, previous), self.max_delay)
        left = None if deadline is None else deadline - now
        if retry_after is not None:
            if retry_after > self.max_delay or (left is not None and retry_after >= left):
                return "retry_after_too_long", 0.0, raw
            delay = retry_after
            if self.backoff.jittered:
                delay += self.rng.random() * retry_after * RETRY_AFTER_SPREAD
                delay = min(delay, self.max_delay)
                if left is not None and delay >= left:
                    delay = retry_after
        else:
            delay = raw
            if left is not None and delay >= left:
                return "deadline", 0.0, raw
        if self.budget is not None and not self.budget.try_spend(now):
            return "budget", 0.0, raw
        if _testing is not None:
            delay = 0.0
        return None, delay, raw
