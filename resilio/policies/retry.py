"""The retry policy: run the call again after transient failures, with a backoff.

What is retried depends on the failure's :class:`~resilio.classify.ErrorKind`: TRANSIENT and
THROTTLED failures are; AMBIGUOUS ones only when the operation is idempotent; PERMANENT ones
never. A throttled failure's ``retry_after`` is a floor for the wait. An attempt refused by an
open circuit (:class:`~resilio.CircuitOpen`) ends the retrying at once unless the policy was built
with ``wait_on_open_circuit=True``. A retry never sleeps past the execution's deadline. The
decisions themselves live in :mod:`resilio.policies._retry_logic`; this module holds the options
and the thin sync and async loops.

Example:
    >>> import resilio
    >>> retry = resilio.Retry(attempts=4, backoff=resilio.backoff.exponential(initial=0.2, max=10))
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from attrs import Factory, field, frozen, validators

from resilio._outcome import Failure
from resilio._validators import plain
from resilio.backoff import Backoff, exponential, from_mapping
from resilio.errors import CircuitOpen
from resilio.events import RetryGaveUp, RetryScheduled, error_type_name
from resilio.policies._base import Args, Env, Kwargs, Layer, Policy
from resilio.policies._retry_logic import RetryBudget, RetryController

if TYPE_CHECKING:
    from resilio._context import Context
    from resilio.classify import Classification

__all__ = ["Retry", "RetryBudget", "RetryOptions"]


def _default_backoff() -> Backoff:
    return exponential()


def _to_budget(value: Any) -> Any:
    if isinstance(value, Mapping):
        return RetryBudget(**value)
    return value


def _positive_int(_inst: object, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"retry {attribute.name} must be an integer >= 1, got {value!r}")


def _max_delay(_inst: object, attribute: Any, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or value < 0
    ):
        raise ValueError(f"retry max_delay must be a number >= 0, got {value!r}")


@frozen(kw_only=True)
class RetryOptions:
    """Validated options of a :class:`Retry` policy.

    Attributes:
        attempts: Attempts in all, the first call included (``1`` disables retrying).
        backoff: The delay strategy, or its mapping form (``{"kind": "exponential", ...}``);
            a number means a constant delay.
        max_delay: The longest single wait in seconds. Backoff delays are capped at it; a
            ``Retry-After`` longer than it makes the policy give up at once.
        retry_ambiguous: Whether AMBIGUOUS failures are retried when the context's
            ``idempotent`` is ``None``.
        wait_on_open_circuit: Whether an attempt refused by an open circuit
            (:class:`~resilio.CircuitOpen`) is retried after the remaining break like any
            throttled failure. By default the policy gives up at once and returns the refusal.
        retry_if_result: A predicate on results: a result it accepts is treated as a failed
            attempt and retried; when attempts run out, the last result is returned.
        budget: A :class:`RetryBudget` (or its mapping form) limiting retries to ``ratio``
            retries per recent call; may be shared by several policies.
        rng: A :class:`random.Random` or an integer seed for jitter (tests pass a seed).
    """

    attempts: int = field(default=3, validator=_positive_int)
    backoff: Backoff = field(
        default=Factory(_default_backoff),
        converter=from_mapping,
        validator=plain(validators.instance_of(Backoff)),
    )
    max_delay: float = field(default=60.0, validator=_max_delay)
    retry_ambiguous: bool = field(default=False, validator=plain(validators.instance_of(bool)))
    wait_on_open_circuit: bool = field(default=False, validator=plain(validators.instance_of(bool)))
    retry_if_result: Callable[[Any], bool] | None = field(
        default=None, validator=plain(validators.optional(validators.is_callable()))
    )
    budget: RetryBudget | None = field(
        default=None,
        converter=_to_budget,
        validator=plain(validators.optional(validators.instance_of(RetryBudget))),
    )
    rng: random.Random | int | None = field(
        default=None,
        validator=plain(validators.optional(validators.instance_of((random.Random, int)))),
    )


class Retry(Policy):
    """Retry transient failures, waiting between attempts.

    Placed outside a :class:`~resilio.Timeout`, the timeout bounds all attempts together; placed
    inside, each attempt gets its own. ``context.attempt`` holds the current attempt number.
    An attempt refused by an open circuit breaker (:class:`~resilio.CircuitOpen`) ends the
    retrying at once (reason ``"circuit_open"``), so an outer fallback or the caller learns of the
    outage without waiting out the break; ``wait_on_open_circuit=True`` waits instead.
    When the policy gives up, the last real exception is returned to the caller with a note
    (PEP 678) saying how many attempts were made and why it stopped.

    Args:
        attempts: Attempts in all, the first call included (default 3).
        backoff: The delay strategy (default: exponential, 0.2 s doubling up to 10 s, full
            jitter), its mapping form, or a number of seconds.
        max_delay: The longest single wait, in seconds (default 60).
        retry_ambiguous: Retry AMBIGUOUS failures when the context does not say whether the
            operation is idempotent (default ``False``).
        wait_on_open_circuit: Retry an attempt refused by an open circuit after the remaining
            break, like any throttled failure (default ``False``: give up at once).
        retry_if_result: Retry results this predicate accepts.
        budget: A shared :class:`RetryBudget`.
        rng: Random source or seed for jitter.
        name: The policy's name in events (default ``"retry"``).

    Raises:
        ValueError: If an option is invalid.
    """

    kind: ClassVar[str] = "retry"
    options_class: ClassVar[type] = RetryOptions
    options: RetryOptions

    def __init__(
        self,
        attempts: int = 3,
        *,
        backoff: Backoff | Mapping[str, Any] | float | None = None,
        max_delay: float = 60.0,
        retry_ambiguous: bool = False,
        wait_on_open_circuit: bool = False,
        retry_if_result: Callable[[Any], bool] | None = None,
        budget: RetryBudget | Mapping[str, Any] | None = None,
        rng: random.Random | int | None = None,
        name: str | None = None,
    ) -> None:
        options = RetryOptions(
            attempts=attempts,
            backoff=exponential() if backoff is None else backoff,
            max_delay=max_delay,
            retry_ambiguous=retry_ambiguous,
            wait_on_open_circuit=wait_on_open_circuit,
            retry_if_result=retry_if_result,
            budget=budget,
            rng=rng,
        )
        self._setup(options, name)

    def _setup(self, options: RetryOptions, name: str | None) -> None:
        self.options = options
        self.name = name or self.kind
        rng = options.rng
        if not isinstance(rng, random.Random):
            rng = random.Random(rng)  # noqa: S311 - jitter is not cryptography
        self.controller = RetryController(
            attempts=options.attempts,
            backoff=options.backoff,
            max_delay=float(options.max_delay),
            retry_ambiguous=options.retry_ambiguous,
            budget=options.budget,
            rng=rng,
        )

    @classmethod
    def from_options(cls, options: RetryOptions, *, name: str | None = None) -> Retry:
        """Build a retry policy from validated options."""
        self = cls.__new__(cls)
        self._setup(options, name)
        return self

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        """Build this policy's layer for one pipeline."""
        return _RetryLayer(inner, env, self)


_NOTE_WHY = {
    "exhausted": "",
    "result": "",
    "permanent": ": the error is permanent",
    "ambiguous": ": the outcome is ambiguous and the operation is not marked idempotent",
    "deadline": ": the next wait would end past the deadline",
    "retry_after_too_long": ": Retry-After exceeds max_delay or the time left",
    "budget": ": the retry budget is spent",
}


_SAYS_IT_ALL = frozenset(("permanent", "circuit_open", "exhausted", "result"))
"""Reasons that need no note on a first attempt: with ``attempts=1`` nothing was to be retried."""


class _Wait:
    """The retry loop's instruction to sleep ``delay`` seconds, then try again."""

    __slots__ = ("delay", "raw")

    def __init__(self, delay: float, raw: float) -> None:
        self.delay = delay
        self.raw = raw


class _RetryLayer(Layer):
    __slots__ = (
        "_controller",
        "_fast",
        "_inner_run",
        "_inner_run_async",
        "_name",
        "_predicate",
        "_wait_on_open_circuit",
    )

    def __init__(self, inner: Layer, env: Env, policy: Retry) -> None:
        super().__init__(inner, env, policy)
        self._inner_run = inner.run
        self._inner_run_async = inner.run_async
        self._controller = policy.controller
        self._predicate = policy.options.retry_if_result
        self._fast = self._predicate is None and policy.options.budget is None
        self._name = policy.name
        self._wait_on_open_circuit = policy.options.wait_on_open_circuit

    # The sync and async loops below mirror each other; every decision is in _step.

    def run(self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Context) -> Any:
        ctx.attempt = 1
        r = self._inner_run(fn, args, kwargs, ctx)
        if self._fast and r.__class__ is not Failure:
            return r
        budget = self._controller.budget
        if budget is not None:
            budget.record_call(self.env.clock.monotonic())
        attempt = 1
        previous: float | None = None
        while True:
            verdict = self._step(r, attempt, previous, ctx)
            if verdict.__class__ is not _Wait:
                return verdict
            delay = verdict.delay
            previous = verdict.raw
            if delay > 0:
                self.env.clock.sleep(delay)
            attempt += 1
            ctx.attempt = attempt
            r = self._inner_run(fn, args, kwargs, ctx)

    async def run_async(
        self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Context
    ) -> Any:
        ctx.attempt = 1
        r = await self._inner_run_async(fn, args, kwargs, ctx)
        if self._fast and r.__class__ is not Failure:
            return r
        budget = self._controller.budget
        if budget is not None:
            budget.record_call(self.env.clock.monotonic())
        attempt = 1
        previous: float | None = None
        while True:
            verdict = self._step(r, attempt, previous, ctx)
            if verdict.__class__ is not _Wait:
                return verdict
            delay = verdict.delay
            previous = verdict.raw
            if delay > 0:
                await self.env.clock.sleep_async(delay)
            attempt += 1
            ctx.attempt = attempt
            r = await self._inner_run_async(fn, args, kwargs, ctx)

    def _step(self, r: Any, attempt: int, previous: float | None, ctx: Context) -> Any:
        """Return a :class:`_Wait` to retry, or the outcome to return."""
        classification: Classification | None
        if r.__class__ is Failure:
            if not self._wait_on_open_circuit and isinstance(r.exception, CircuitOpen):
                self._give_up(r, attempt, "circuit_open", error_type_name(r.exception), ctx)
                return r
            classification = self.env.classify(r, ctx)
        else:
            predicate = self._predicate
            if predicate is None:
                return r
            try:
                rejected = predicate(r)
            except Exception as exc:
                return Failure(exc)
            if not rejected:
                return r
            classification = None
        controller = self._controller
        deadline = ctx.deadline
        now = (
            self.env.clock.monotonic()
            if deadline is not None or controller.budget is not None
            else 0.0
        )
        reason, delay, raw = controller.decide(
            attempt, classification, ctx.idempotent, now, deadline, previous
        )
        env = self.env
        error_type = error_type_name(r.exception) if classification is not None else ""
        if reason is not None:
            self._give_up(r, attempt, reason, error_type, ctx)
            return r
        env.emit(
            RetryScheduled(
                pipeline=env.pipeline,
                policy=self._name,
                operation=ctx.operation,
                attempt=attempt,
                delay=delay,
                kind=classification.kind.value if classification is not None else "result",
                error_type=error_type,
                retry_after=classification.retry_after if classification is not None else None,
            )
        )
        return _Wait(delay, raw)

    def _give_up(self, r: Any, attempt: int, reason: str, error_type: str, ctx: Context) -> None:
        env = self.env
        env.emit(
            RetryGaveUp(
                pipeline=env.pipeline,
                policy=self._name,
                operation=ctx.operation,
                attempt=attempt,
                attempts=attempt,
                reason=reason,
                error_type=error_type,
            )
        )
        if r.__class__ is not Failure:
            return
        r.attempts = attempt
        if attempt == 1 and reason in _SAYS_IT_ALL:
            return  # nothing was retried, and the error says why
        if reason == "circuit_open":  # the last attempt was refused, never called
            made = attempt - 1
            what = f"{made} {'call' if made == 1 else 'calls'}: the circuit opened and refused "
            what += f"attempt {attempt}"
        else:
            what = f"{attempt} {'attempt' if attempt == 1 else 'attempts'}"
            what += _NOTE_WHY.get(reason, "")
        note = f"resilio: gave up after {what} (pipeline '{env.pipeline}', policy '{self._name}')"
        error = r.exception
        if note not in getattr(error, "__notes__", ()):
            error.add_note(note)
