"""Operations: named units of work an adapter offers (``"customerio.track"``)."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import field, frozen, validators

if TYPE_CHECKING:
    from resilio.classify import Classifier

__all__ = ["Operation", "is_async_handler"]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def _check_name(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"operation name must be letters, digits, '_', '.' or '-' (like 'acme.send'), "
            f"got {value!r}"
        )


def _check_callable(_inst: object, attr: Any, value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"operation {attr.name} must be callable or None")


@frozen
class Operation:
    """A named unit of work, registered by an adapter so configuration and queues can name it.

    ``name`` and ``idempotent`` may be given by position (``Operation("acme.ping", True)``);
    the other arguments are keyword-only.

    Args:
        name: Dotted name, ``"<adapter>.<verb>"`` (``"customerio.track"``).
        idempotent: Whether doing the work twice is harmless. Decides whether a failure that
            may have taken effect (AMBIGUOUS) may be retried.
        classifier: Classifies the operation's exceptions before plugins and the default
            classifier do; returns ``None`` to let them decide.
        handler: Runs the work from a JSON-serialisable payload, so queued work can be replayed
            later by name (the outbox).
        pipeline: Name of the pipeline that protects the operation; defaults to ``name``.
        description: One line for ``resilio plugins`` and the docs.
    """

    name: str = field(validator=_check_name)
    idempotent: bool = field(validator=validators.instance_of(bool))
    classifier: Classifier | None = field(default=None, validator=_check_callable, kw_only=True)
    handler: Callable[[Any], Any] | None = field(
        default=None, validator=_check_callable, kw_only=True
    )
    pipeline: str | None = field(
        default=None, validator=validators.optional(validators.instance_of(str)), kw_only=True
    )
    description: str = field(default="", validator=validators.instance_of(str), kw_only=True)

    @property
    def pipeline_name(self) -> str:
        """The pipeline that protects this operation: ``pipeline`` or, if unset, ``name``."""
        return self.pipeline or self.name


def is_async_handler(handler: Callable[..., Any]) -> bool:
    """Return whether ``handler`` is an ``async def`` (or a partial or object wrapping one).

    Async paths await such a handler on the event loop and run any other one in a worker
    thread, so a plain handler never blocks the loop.
    """
    while isinstance(handler, functools.partial):
        handler = handler.func
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(type(handler), "__call__", None)  # noqa: B004 - a class's own __call__
    return inspect.iscoroutinefunction(call)
