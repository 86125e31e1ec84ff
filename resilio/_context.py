"""The per-execution context."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilio._clock import Clock

__all__ = ["REPLAY_ATTRIBUTE", "Context"]

REPLAY_ATTRIBUTE = "resilio.outbox.replay"
"""Context attribute marking the replay of an outbox item (a fallback never re-queues it)."""


class Context:
    """State of one execution of a pipeline.

    Pass one to :meth:`resilio.Pipeline.execute` to name the operation, give an idempotency key or
    attach attributes; otherwise the pipeline makes one. A context belongs to one execution at a
    time: do not share one between concurrent calls.

    Args:
        operation: Name of the unit of work (``"customerio.track"``); defaults to the pipeline name.
        idempotency_key: Key for the idempotency policy and for outbox replays.
        idempotent: Whether repeating the work is harmless; ``None`` lets the operation or the
            retry policy decide. Decides whether AMBIGUOUS failures may be retried.
        attributes: Free-form values for classifiers, handlers and fallbacks. Never traced.
        payload: A JSON-serialisable description of the call, for replaying it later through the
            operation's handler (the outbox). Never logged or traced.

    Raises:
        TypeError: If ``operation`` or ``idempotency_key`` is not a string, or ``idempotent`` is
            not a bool (``"no"`` would otherwise read as true).

    Attributes:
        deadline: Absolute monotonic time (of the pipeline's clock) by which the whole execution
            must finish, set by timeout policies; ``None`` for no deadline.
        attempt: The current attempt number, 1 for the first call.
        pipeline: Name of the pipeline running this context.
    """

    __slots__ = (
        "_attributes",
        "_clock",
        "attempt",
        "deadline",
        "idempotency_key",
        "idempotent",
        "operation",
        "payload",
        "pipeline",
    )

    def __init__(
        self,
        operation: str | None = None,
        idempotency_key: str | None = None,
        idempotent: bool | None = None,
        attributes: Mapping[str, Any] | None = None,
        payload: Any = None,
    ) -> None:
        if idempotent is not None and idempotent.__class__ is not bool:
            raise TypeError(
                f"Context idempotent= must be True, False or None, "
                f"got {type(idempotent).__qualname__}"
            )
        if operation is not None and not isinstance(operation, str):
            raise TypeError(f"Context operation= must be a str, got {type(operation).__qualname__}")
        if idempotency_key is not None and not isinstance(idempotency_key, str):
            raise TypeError(
                f"Context idempotency_key= must be a str, got {type(idempotency_key).__qualname__}"
            )
        self.operation = operation
        self.idempotency_key = idempotency_key
        self.idempotent = idempotent
        self._attributes: dict[str, Any] | None = dict(attributes) if attributes else None
        self.payload = payload
        self.deadline: float | None = None
        self.attempt = 1
        self.pipeline: str | None = None
        self._clock: Clock | None = None

    @property
    def attributes(self) -> dict[str, Any]:
        """Free-form attributes (created on first access)."""
        if self._attributes is None:
            self._attributes = {}
        return self._attributes

    def remaining(self) -> float | None:
        """Return the seconds left before the deadline (may be negative), or ``None``."""
        if self.deadline is None:
            return None
        if self._clock is None:
            from resilio._clock import SYSTEM_CLOCK

            return self.deadline - SYSTEM_CLOCK.monotonic()
        return self.deadline - self._clock.monotonic()

    def __repr__(self) -> str:
        return (
            f"Context(operation={self.operation!r}, pipeline={self.pipeline!r}, "
            f"attempt={self.attempt}, deadline={self.deadline!r})"
        )
