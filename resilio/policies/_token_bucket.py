"""Token bucket arithmetic, free of I/O: every method takes ``now``.

The bucket's level may go negative: a caller that has to wait reserves its future token at
once, so later callers queue behind it (FIFO) and each one waits only for its own missing part.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """A token bucket of capacity ``burst`` refilled at ``rate / per`` tokens per second.

    Not thread-safe: callers serialise access (the limiter holds a lock around each call).

    Args:
        rate: Tokens added per ``per`` seconds.
        per: The period in seconds.
        burst: Capacity: tokens available at once after a quiet spell.
        now: The current time; the bucket starts full.
    """

    __slots__ = ("burst", "level", "per_token", "stamp")

    def __init__(self, rate: float, per: float, burst: float, now: float) -> None:
        self.per_token = per / rate
        self.burst = float(burst)
        self.level = float(burst)
        self.stamp = now

    def _refill(self, now: float) -> float:
        if now > self.stamp:
            level = self.level + (now - self.stamp) / self.per_token
            return level if level < self.burst else self.burst
        return self.level

    def reserve(self, now: float, tokens: float, max_wait: float) -> tuple[bool, float]:
        """Reserve ``tokens`` if they are available within ``max_wait`` seconds.

        Args:
            now: The current time.
            tokens: Tokens needed.
            max_wait: The longest acceptable wait in seconds.

        Returns:
            ``(True, wait)`` when reserved: run after ``wait`` seconds (0 for at once).
            ``(False, wait)`` when refused: nothing is consumed and ``wait`` is how long the
            tokens would take to become available.
        """
        level = self._refill(now)
        need = tokens - level
        wait = need * self.per_token if need > 0 else 0.0
        if wait > max_wait:
            return False, wait
        self.level = level - tokens
        if now > self.stamp:
            self.stamp = now
        return True, wait

    def refund(self, now: float, tokens: float) -> None:
        """Give back tokens reserved by a caller that gave up waiting (it was cancelled)."""
        level = self._refill(now) + tokens
        self.level = level if level < self.burst else self.burst
        if now > self.stamp:
            self.stamp = now

    def available(self, now: float) -> float:
        """Return the tokens available at ``now`` (negative while reservations are pending)."""
        return self._refill(now)
