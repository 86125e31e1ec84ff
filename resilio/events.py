"""Typed events that policies report to a pipeline's listeners.

Every event is a frozen value carrying the pipeline, the policy and the operation it concerns and
the attempt number; each kind adds its own fields. Events never carry arguments, results,
payloads or exception messages: errors are named by their qualified class name only.

Listeners are plain callables registered on a pipeline (``listeners=[...]``); tracing, metrics and
logs are listeners too. Nothing is emitted on a first-try success through a closed breaker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from attrs import frozen

__all__ = [
    "BreakerStoreDegraded",
    "BulkheadQueued",
    "CallRejected",
    "CircuitClosed",
    "CircuitHalfOpened",
    "CircuitOpened",
    "Event",
    "FallbackUsed",
    "IdempotentReplay",
    "Listener",
    "RateLimitWaited",
    "RetryGaveUp",
    "RetryScheduled",
    "TimedOut",
    "error_type_name",
]


def error_type_name(error: BaseException) -> str:
    """Return the qualified class name of an exception (``"requests.exceptions.ReadTimeout"``).

    Args:
        error: Any exception.

    Returns:
        ``module.QualName``, or just ``QualName`` for builtins.
    """
    cls = type(error)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


@frozen(kw_only=True)
class Event:
    """Base class of every policy event.

    Attributes:
        pipeline: Name of the pipeline.
        policy: Name of the policy that reported the event.
        operation: Name of the operation being run, if any.
        attempt: Attempt number at the time of the event (1 for the first call).
    """

    name: ClassVar[str] = "event"
    """Stable dotted event name, also used for logs (prefixed with ``resilio.``)."""

    pipeline: str
    policy: str
    operation: str | None = None
    attempt: int = 1


@frozen(kw_only=True)
class RetryScheduled(Event):
    """An attempt failed and another one will start after ``delay`` seconds.

    Attributes:
        delay: Seconds the retry policy will really sleep before the next attempt.
        kind: The failure's kind (``"transient"``, ``"throttled"``, ...).
        error_type: Qualified class name of the failure.
        retry_after: The service's ``Retry-After`` hint, if any.
    """

    name: ClassVar[str] = "retry.scheduled"
    delay: float
    kind: str
    error_type: str
    retry_after: float | None = None


@frozen(kw_only=True)
class RetryGaveUp(Event):
    """The retry policy stopped: the last failure is returned to the caller.

    Attributes:
        attempts: How many attempts were made in all.
        reason: Why: ``"exhausted"``, ``"permanent"``, ``"ambiguous"``, ``"deadline"``,
            ``"retry_after_too_long"``, ``"budget"`` or ``"result"``.
        error_type: Qualified class name of the last failure (empty for a rejected result).
    """

    name: ClassVar[str] = "retry.gave_up"
    attempts: int
    reason: str
    error_type: str


@frozen(kw_only=True)
class CircuitOpened(Event):
    """The circuit opened (from closed or half-open).

    Attributes:
        reason: ``"failures"``, ``"failure_rate"``, ``"slow_call_rate"``, ``"half_open_failure"``,
            ``"isolated"``, or ``"shared"`` (another process opened a breaker sharing this one's
            store).
        break_duration: Seconds the circuit stays open before admitting a trial.
        error_type: Qualified class name of the failure that opened it, if any.
    """

    name: ClassVar[str] = "circuit.opened"
    reason: str
    break_duration: float
    error_type: str | None = None


@frozen(kw_only=True)
class CircuitHalfOpened(Event):
    """The break elapsed: the circuit admits trial calls."""

    name: ClassVar[str] = "circuit.half_opened"


@frozen(kw_only=True)
class CircuitClosed(Event):
    """The circuit closed again (trials succeeded, or it was reset).

    Attributes:
        reason: ``"recovered"``, ``"reset"``, or ``"shared"`` (another process closed a breaker
            sharing this one's store).
    """

    name: ClassVar[str] = "circuit.closed"
    reason: str = "recovered"


@frozen(kw_only=True)
class BreakerStoreDegraded(Event):
    """A shared breaker lost its store and runs on local state until it is back.

    Attributes:
        degraded: ``True`` when the store was lost, ``False`` when it came back.
        error_type: Qualified class name of the store's error, if any.
    """

    name: ClassVar[str] = "circuit.store_degraded"
    degraded: bool
    error_type: str | None = None


@frozen(kw_only=True)
class CallRejected(Event):
    """A policy refused the call.

    Attributes:
        reason: ``"circuit_open"``, ``"bulkhead_full"``, ``"rate_limited"``,
            ``"idempotency_conflict"``, ``"deadline"`` or ``"budget"``.
        retry_after: Seconds after which trying again may succeed, if known.
    """

    name: ClassVar[str] = "call.rejected"
    reason: str
    retry_after: float | None = None


@frozen(kw_only=True)
class TimedOut(Event):
    """The call ran past its timeout.

    Attributes:
        timeout: The timeout in seconds.
    """

    name: ClassVar[str] = "timeout.exceeded"
    timeout: float


@frozen(kw_only=True)
class FallbackUsed(Event):
    """The fallback replaced a failure with its value, its handler's result or a queued item.

    Attributes:
        error_type: Qualified class name of the failure that was replaced.
        action: ``"value"``, ``"handler"`` or ``"enqueued"``.
    """

    name: ClassVar[str] = "fallback.used"
    error_type: str
    action: str = "value"


@frozen(kw_only=True)
class IdempotentReplay(Event):
    """A call's key was already completed: the stored result was returned without running."""

    name: ClassVar[str] = "idempotency.replayed"


@frozen(kw_only=True)
class RateLimitWaited(Event):
    """The rate limiter made the call wait for a permit.

    Attributes:
        wait: Seconds waited.
    """

    name: ClassVar[str] = "rate_limiter.waited"
    wait: float


@frozen(kw_only=True)
class BulkheadQueued(Event):
    """The bulkhead was full and the call waited in its queue.

    Attributes:
        wait: Seconds waited for a slot.
    """

    name: ClassVar[str] = "bulkhead.queued"
    wait: float


Listener = Callable[[Event], object]
"""A callable receiving every event of a pipeline. Exceptions it raises are logged and dropped."""
