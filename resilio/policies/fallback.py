"""The fallback policy: replace a failure with a value, a handler's result, or a queued item.

A fallback is usually the outermost policy. It acts on failures that match ``on`` (by default any
:class:`Exception`; interrupts and cancellations never reach it) and does exactly one of:

* ``value=...``: return this value (``None`` is a value like any other);
* ``handler=...``: return ``handler(exc, context)``; an ``async def`` handler is awaited under
  ``execute_async`` and refused with a :class:`TypeError` under ``execute``;
* ``enqueue=outbox``: put the call's ``context.operation`` and ``context.payload`` into an outbox
  and return its receipt, for failures that are not PERMANENT. If the context has no payload,
  nothing is queued: the failure is returned with a note saying so.

Example:
    >>> import resilio
    >>> fallback = resilio.Fallback(value=[], on=[resilio.ErrorKind.TRANSIENT])
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from attrs import field, frozen

from resilio._context import REPLAY_ATTRIBUTE
from resilio._outcome import Failure
from resilio.classify import Classification, ErrorKind
from resilio.events import FallbackUsed, error_type_name
from resilio.policies._base import Args, Env, Kwargs, Layer, Policy

if TYPE_CHECKING:
    from resilio._context import Context

__all__ = ["Enqueuer", "Fallback", "FallbackOptions", "MISSING"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
"""Marks an option that was not given (``value=None`` is a real value)."""


@runtime_checkable
class Enqueuer(Protocol):
    """Where a fallback puts work it could not do now (an outbox).

    :class:`resilio.outbox.Outbox` implements it; ``enqueue_async``, when present, is preferred
    under ``execute_async``.
    """

    def enqueue(
        self,
        *,
        operation: str,
        payload: Any,
        idempotency_key: str | None,
        classification: Classification,
    ) -> Any:
        """Store the work durably and return a receipt."""
        ...


Predicate = Callable[[BaseException, Classification], bool]


def _resolve(value: Any) -> Any:
    """Turn a ``"package.module:name"`` string into the object it names."""
    if isinstance(value, str):
        module, sep, attr = value.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"fallback handler {value!r} must look like 'package.module:name'")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"fallback handler {value!r} cannot be imported: {exc}") from None
    return value


def _to_on(value: Any) -> Any:
    """Normalise ``on`` to ``None``, a predicate, or a tuple of types and kinds."""
    if value is None:
        return None
    if isinstance(value, type | ErrorKind | str):
        value = (value,)
    elif callable(value):
        return value
    if not isinstance(value, Iterable):
        raise ValueError(  # noqa: TRY004 - configuration errors are ValueErrors
            f"fallback on= must be types, kinds or a predicate, got {value!r}"
        )
    entries: list[Any] = []
    for entry in value:
        if isinstance(entry, str):
            try:
                entry = ErrorKind(entry.lower())
            except ValueError:
                kinds = [k.value for k in ErrorKind]
                raise ValueError(
                    f"fallback on= entry {entry!r} is not an error kind ({kinds})"
                ) from None
        if not (
            isinstance(entry, ErrorKind)
            or (isinstance(entry, type) and issubclass(entry, Exception))
        ):
            raise ValueError(  # noqa: TRY004 - configuration errors are ValueErrors
                f"fallback on= entry {entry!r} is neither an Exception subclass nor an ErrorKind"
            )
        entries.append(entry)
    return tuple(entries)


@frozen(kw_only=True)
class FallbackOptions:
    """Validated options of a :class:`Fallback` policy: exactly one of value, handler, enqueue.

    Attributes:
        value: The value returned instead of the failure.
        handler: ``handler(exc, context)`` (sync or async), or ``"package.module:name"``.
        on: Which failures to replace: exception types, :class:`~resilio.ErrorKind` values (or
            their names), or a predicate ``(exc, classification) -> bool``. Default: any.
        enqueue: An :class:`Enqueuer` (an outbox) receiving the call's operation and payload.
    """

    value: Any = MISSING
    handler: Callable[..., Any] | None = field(default=None, converter=_resolve)
    on: tuple[type[Exception] | ErrorKind, ...] | Predicate | None = field(
        default=None, converter=_to_on
    )
    enqueue: Enqueuer | None = None

    def __attrs_post_init__(self) -> None:
        given = [
            name
            for name, present in (
                ("value", self.value is not MISSING),
                ("handler", self.handler is not None),
                ("enqueue", self.enqueue is not None),
            )
            if present
        ]
        if len(given) != 1:
            raise ValueError(
                "Fallback takes exactly one of value=, handler= or enqueue=, got "
                + (", ".join(given) if given else "none")
            )
        if self.handler is not None and not callable(self.handler):
            raise ValueError(f"fallback handler must be callable, got {self.handler!r}")
        if self.enqueue is not None and not callable(getattr(self.enqueue, "enqueue", None)):
            raise ValueError(
                f"fallback enqueue= needs an object with an enqueue() method, got {self.enqueue!r}"
            )


class Fallback(Policy):
    """Replace matching failures with a value, a handler's result, or a queued item.

    Args:
        value: The value to return instead of the failure (``None`` included).
        handler: ``handler(exc, context)`` computing the replacement; may be ``async def``
            under ``execute_async``.
        on: Exception types, error kinds, or a predicate ``(exc, classification) -> bool``
            selecting the failures to replace (default: every failure).
        enqueue: An outbox: queue the call's ``context.payload`` under ``context.operation``
            and return the outbox's receipt (never for PERMANENT failures).
        name: The policy's name in events (default ``"fallback"``).

    Raises:
        ValueError: If not exactly one of ``value``, ``handler`` and ``enqueue`` is given, or
            ``on`` is invalid.
    """

    kind: ClassVar[str] = "fallback"
    options_class: ClassVar[type] = FallbackOptions
    options: FallbackOptions

    def __init__(
        self,
        *,
        value: Any = MISSING,
        handler: Callable[..., Any] | str | None = None,
        on: Any = None,
        enqueue: Enqueuer | None = None,
        name: str | None = None,
    ) -> None:
        self.options = FallbackOptions(value=value, handler=handler, on=on, enqueue=enqueue)
        self.name = name or self.kind

    @classmethod
    def from_options(cls, options: FallbackOptions, *, name: str | None = None) -> Fallback:
        """Build a fallback policy from validated options."""
        self = cls.__new__(cls)
        self.options = options
        self.name = name or cls.kind
        return self

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        """Build this policy's layer for one pipeline."""
        return _FallbackLayer(inner, env, self)


_SKIP: Any = object()


class _FallbackLayer(Layer):
    __slots__ = (
        "_action",
        "_inner_run",
        "_inner_run_async",
        "_kinds",
        "_name",
        "_options",
        "_predicate",
        "_types",
    )

    def __init__(self, inner: Layer, env: Env, policy: Fallback) -> None:
        super().__init__(inner, env, policy)
        self._inner_run = inner.run
        self._inner_run_async = inner.run_async
        options = policy.options
        self._options = options
        self._name = policy.name
        on = options.on
        self._predicate: Predicate | None = on if callable(on) else None
        entries = on if isinstance(on, tuple) else ()
        self._types = tuple(e for e in entries if isinstance(e, type))
        self._kinds = frozenset(e for e in entries if isinstance(e, ErrorKind))
        if options.enqueue is not None:
            self._action = "enqueued"
        elif options.handler is not None:
            self._action = "handler"
        else:
            self._action = "value"

    def run(self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Context) -> Any:
        r = self._inner_run(fn, args, kwargs, ctx)
        if r.__class__ is Failure:
            return self._recover(r, ctx)
        return r

    async def run_async(
        self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Context
    ) -> Any:
        r = await self._inner_run_async(fn, args, kwargs, ctx)
        if r.__class__ is not Failure:
            return r
        outcome = self._select(r, ctx)
        if outcome is not _SKIP:
            return outcome
        error = r.exception
        options = self._options
        try:
            if self._action == "handler":
                result = options.handler(error, ctx)  # type: ignore[misc]
                if inspect.isawaitable(result):
                    result = await result
            elif self._action == "enqueued":
                outbox: Any = options.enqueue
                enqueue = getattr(outbox, "enqueue_async", None) or outbox.enqueue
                result = enqueue(**self._item(r, ctx))
                if inspect.isawaitable(result):
                    result = await result
            else:
                result = options.value
        except Exception as exc:
            return self._action_failed(r, exc, ctx)
        self._used(error, ctx)
        return result

    def _recover(self, r: Failure, ctx: Context) -> Any:
        outcome = self._select(r, ctx)
        if outcome is not _SKIP:
            return outcome
        error = r.exception
        options = self._options
        try:
            if self._action == "handler":
                handler: Any = options.handler
                if inspect.iscoroutinefunction(handler):
                    raise TypeError(  # noqa: TRY301 - handled with the handler's own errors
                        f"fallback '{self._name}' has an async handler "
                        f"{getattr(handler, '__qualname__', handler)!r}: use execute_async() "
                        "or give a plain function"
                    )
                result = handler(error, ctx)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()
                    raise TypeError(  # noqa: TRY301
                        f"fallback '{self._name}' handler returned an awaitable under "
                        "execute(): use execute_async() or give a plain function"
                    )
            elif self._action == "enqueued":
                result = options.enqueue.enqueue(**self._item(r, ctx))  # type: ignore[union-attr]
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()
                    raise TypeError(  # noqa: TRY301
                        f"fallback '{self._name}' outbox returned an awaitable under execute()"
                    )
            else:
                result = options.value
        except Exception as exc:
            return self._action_failed(r, exc, ctx)
        self._used(error, ctx)
        return result

    def _select(self, r: Failure, ctx: Context) -> Any:
        """Return ``_SKIP`` to act on this failure, else the outcome to return unchanged."""
        error = r.exception
        predicate = self._predicate
        if predicate is not None:
            try:
                matched = predicate(error, self.env.classify(r, ctx))
            except Exception as exc:
                if exc.__context__ is None:
                    exc.__context__ = error
                return Failure(exc)
            if not matched:
                return r
        elif (self._types or self._kinds) and not (
            (self._types and isinstance(error, self._types))
            or (self._kinds and self.env.classify(r, ctx).kind in self._kinds)
        ):
            return r
        if self._action == "enqueued":
            if self.env.classify(r, ctx).kind is ErrorKind.PERMANENT:
                return r
            attributes = ctx._attributes
            if attributes is not None and attributes.get(REPLAY_ATTRIBUTE):
                return r  # a replay's failure goes back to the drainer, not into a new item
            if ctx.payload is None:
                self._note(
                    error,
                    f"resilio: fallback '{self._name}' queued nothing: the context of operation "
                    f"'{ctx.operation}' has no payload",
                )
                return r
        return _SKIP

    def _item(self, r: Failure, ctx: Context) -> dict[str, Any]:
        return {
            "operation": ctx.operation,
            "payload": ctx.payload,
            "idempotency_key": ctx.idempotency_key,
            "classification": self.env.classify(r, ctx),
        }

    def _action_failed(self, r: Failure, exc: Exception, ctx: Context) -> Failure:
        if self._action == "enqueued":
            self._note(
                r.exception,
                f"resilio: fallback '{self._name}' could not queue operation '{ctx.operation}': "
                f"the outbox raised {error_type_name(exc)}",
            )
            return r
        if exc.__context__ is None and exc is not r.exception:
            exc.__context__ = r.exception
        return Failure(exc)

    def _used(self, error: BaseException, ctx: Context) -> None:
        env = self.env
        env.emit(
            FallbackUsed(
                pipeline=env.pipeline,
                policy=self._name,
                operation=ctx.operation,
                attempt=ctx.attempt,
                error_type=error_type_name(error),
                action=self._action,
            )
        )

    @staticmethod
    def _note(error: BaseException, note: str) -> None:
        if note not in getattr(error, "__notes__", ()):
            error.add_note(note)
