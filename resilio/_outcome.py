"""Outcomes: how a failed attempt travels through the pipeline.

Inside a pipeline each layer returns either the function's result (the success path allocates
nothing) or a :class:`Failure` holding the exception. Layers branch on data instead of catching
exceptions; only the outermost call re-raises, so the caller sees the real exception with the
traceback of the place it was raised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilio.classify import Classification

__all__ = ["Failure"]


class Failure:
    """A failed outcome: the exception, and its classification once someone computed it.

    Attributes:
        exception: The exception raised by the function or by a policy.
        classification: Cached classification, filled in by the first policy that needs it.
        attempts: How many attempts the retry policy made before giving up, if it ran.
    """

    __slots__ = ("attempts", "classification", "exception")

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception
        self.classification: Classification | None = None
        self.attempts: int | None = None

    def __repr__(self) -> str:
        return f"Failure({type(self.exception).__qualname__})"


def is_failure(value: Any) -> bool:
    """Return whether a layer's return value is a :class:`Failure`."""
    return value.__class__ is Failure
