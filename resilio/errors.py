"""The exceptions resilio raises.

Every error of the framework derives from :class:`ResilioError`. When a policy refuses to run a
call (an open circuit, a full bulkhead, an exhausted rate limit, a deadline), it raises a subclass
of :class:`Rejected`, so "the pipeline said no" can be caught in one place. Errors raised by the
user's own function are never wrapped: the caller gets the real exception.
"""

from __future__ import annotations

__all__ = [
    "BulkheadFull",
    "CircuitOpen",
    "ConfigError",
    "IdempotencyConflict",
    "PluginError",
    "RateLimited",
    "Rejected",
    "ResilioError",
    "RetryBudgetExhausted",
    "TimeoutExceeded",
]


class ResilioError(Exception):
    """Base class of every exception raised by resilio itself."""


class ConfigError(ResilioError, ValueError):
    """A pipeline, policy or configuration file is invalid.

    Attributes:
        problems: Every problem found, each a human-readable line that names where it is.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems else [message]


class PluginError(ConfigError):
    """A plugin failed to load or registered a name that is already taken."""


class Rejected(ResilioError):
    """A policy refused to run the call; the user's function was not (or no longer) run.

    Attributes:
        pipeline: Name of the pipeline that refused, if known.
        policy: Name of the policy that refused, if known.
        retry_after: Seconds after which trying again may succeed, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        pipeline: str | None = None,
        policy: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.pipeline = pipeline
        self.policy = policy
        self.retry_after = retry_after


class CircuitOpen(Rejected):
    """The circuit breaker is open (or half-open with every trial slot taken).

    The failure that opened the circuit, when known, is attached as ``__cause__``.
    """


class BulkheadFull(Rejected):
    """The bulkhead has no free slot and its queue is full or the queue wait ran out."""


class RateLimited(Rejected):
    """No permit was available within the limiter's ``max_wait``; see ``retry_after``."""


class RetryBudgetExhausted(Rejected):
    """The retry budget of recent calls is spent; the failure is attached as ``__cause__``."""


class IdempotencyConflict(Rejected):
    """Another call with the same idempotency key is in flight and ``wait=False`` was set."""


class TimeoutExceeded(Rejected, TimeoutError):
    """The call did not finish before its deadline.

    It is also a builtin :class:`TimeoutError`, so code that already handles timeouts keeps
    working.

    Attributes:
        timeout: The timeout in seconds that was exceeded, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        pipeline: str | None = None,
        policy: str | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(message, pipeline=pipeline, policy=policy)
        self.timeout = timeout
