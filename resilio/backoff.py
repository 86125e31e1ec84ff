"""Backoff strategies: how long a retry waits before its next attempt.

A backoff is a frozen value object with one pure method, :meth:`Backoff.delay`, that computes the
wait before a retry from the retry's number, a random source and the previous wait. It never reads
the clock and never sleeps. Every strategy has a cap (``max``), and any retry number, however
large, gives a finite delay between 0 and that cap.

Each backoff also has a mapping form for configuration files::

    {"kind": "exponential", "initial": 0.2, "max": 10, "jitter": "full"}

Examples:
    >>> from resilio import backoff
    >>> policy = backoff.exponential(initial=0.2, max=10, jitter="none")
    >>> [policy.delay(n, None) for n in (1, 2, 3)]
    [0.2, 0.4, 0.8]
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from attrs import asdict, field, frozen, validators

from resilio._validators import one_of

__all__ = [
    "Backoff",
    "Constant",
    "DecorrelatedJitter",
    "Exponential",
    "Jitter",
    "Linear",
    "constant",
    "decorrelated_jitter",
    "exponential",
    "from_mapping",
    "linear",
]

Jitter = Literal["full", "equal", "none"]
"""How randomness spreads exponential delays: ``"full"`` draws in ``[0, d]``, ``"equal"`` in
``[d/2, d]``, ``"none"`` uses ``d`` itself."""

_SHARED_RNG = random.Random()  # noqa: S311 - jitter is not cryptography


def _finite_non_negative(_inst: object, attribute: Any, value: float) -> None:
    if isinstance(value, bool) or not (
        isinstance(value, int | float) and math.isfinite(value) and value >= 0
    ):
        raise ValueError(f"backoff {attribute.name} must be a finite number >= 0, got {value!r}")


def _initial_within_max(backoff: Any) -> None:
    if backoff.initial > backoff.max:
        raise ValueError(
            f"{backoff.kind} backoff initial ({backoff.initial:g}s) must not exceed "
            f"max ({backoff.max:g}s)"
        )


def _to_float(value: Any) -> Any:
    if isinstance(value, bool):
        return value  # rejected by the validator with a clear message
    if isinstance(value, int | float):
        return float(value)
    return value


def _seconds(**kwargs: Any) -> Any:
    return field(converter=_to_float, validator=_finite_non_negative, **kwargs)


class Backoff:
    """Base class of every backoff strategy.

    A ``Retry-After`` floor gets a small random addition only from strategies that jitter.

    Attributes:
        kind: The strategy's name in mapping form.
    """

    kind: ClassVar[str] = "backoff"

    @property
    def jittered(self) -> bool:
        """Whether this strategy draws random delays."""
        return False

    @property
    def cap(self) -> float:
        """The longest delay this strategy ever returns, in seconds."""
        raise NotImplementedError  # pragma: no cover

    def delay(
        self, attempt: int, rng: random.Random | None, previous: float | None = None
    ) -> float:
        """Return the seconds to wait before retry number ``attempt``.

        Args:
            attempt: The number of the attempt that just failed (1 after the first call).
            rng: The random source for jitter (a shared one if ``None``).
            previous: The delay this strategy returned for the previous retry, if any.

        Returns:
            A finite delay in ``[0, cap]``.
        """
        raise NotImplementedError  # pragma: no cover

    def to_mapping(self) -> dict[str, Any]:
        """Return the mapping form (``{"kind": ..., <options>}``) of this backoff."""
        return {"kind": self.kind, **asdict(self)}  # type: ignore[arg-type]


@frozen(kw_only=True)
class Constant(Backoff):
    """The same delay before every retry.

    Attributes:
        seconds: The delay.
    """

    kind: ClassVar[str] = "constant"
    seconds: float = _seconds(default=1.0)

    @property
    def cap(self) -> float:
        """The longest delay: ``seconds``."""
        return self.seconds

    def delay(
        self, attempt: int, rng: random.Random | None, previous: float | None = None
    ) -> float:
        """Return ``seconds``, whatever the attempt."""
        return self.seconds


@frozen(kw_only=True)
class Linear(Backoff):
    """A delay growing by ``step`` with each retry: ``initial + step * (attempt - 1)``, capped.

    Attributes:
        initial: The delay before the first retry.
        step: What each further retry adds.
        max: The cap.
    """

    kind: ClassVar[str] = "linear"
    initial: float = _seconds(default=1.0)
    step: float = _seconds(default=1.0)
    max: float = _seconds(default=30.0)

    def __attrs_post_init__(self) -> None:
        _initial_within_max(self)

    @property
    def cap(self) -> float:
        """The longest delay: ``max``."""
        return self.max

    def delay(
        self, attempt: int, rng: random.Random | None, previous: float | None = None
    ) -> float:
        """Return ``min(max, initial + step * (attempt - 1))``."""
        n = max(attempt - 1, 0)
        try:
            return min(self.max, self.initial + self.step * n)
        except OverflowError:
            return self.max


@frozen(kw_only=True)
class Exponential(Backoff):
    """A delay multiplied by ``multiplier`` with each retry, capped, then jittered.

    The un-jittered delay before retry ``n`` is ``min(max, initial * multiplier ** (n - 1))``.

    Attributes:
        initial: The un-jittered delay before the first retry.
        max: The cap, applied before jitter (so jitter never exceeds it).
        multiplier: The growth factor (at least 1).
        jitter: ``"full"`` (default), ``"equal"`` or ``"none"``.
    """

    kind: ClassVar[str] = "exponential"
    initial: float = _seconds(default=0.2)
    max: float = _seconds(default=10.0)
    multiplier: float = field(
        default=2.0, converter=_to_float, validator=[_finite_non_negative, validators.ge(1.0)]
    )
    jitter: Jitter = field(default="full", validator=one_of("full", "equal", "none"))

    def __attrs_post_init__(self) -> None:
        _initial_within_max(self)

    @property
    def jittered(self) -> bool:
        """Whether delays are random (any jitter but ``"none"``)."""
        return self.jitter != "none"

    @property
    def cap(self) -> float:
        """The longest delay: ``max``."""
        return self.max

    def base(self, attempt: int) -> float:
        """Return the un-jittered delay before retry ``attempt``."""
        n = max(attempt - 1, 0)
        try:
            grown = self.initial * self.multiplier**n
        except OverflowError:
            return self.max
        return min(self.max, grown)

    def delay(
        self, attempt: int, rng: random.Random | None, previous: float | None = None
    ) -> float:
        """Return the jittered delay before retry ``attempt`` (within ``[0, max]``)."""
        d = self.base(attempt)
        if self.jitter == "none":
            return d
        r = (rng or _SHARED_RNG).random()
        if self.jitter == "full":
            return d * r
        return d / 2 + d / 2 * r


@frozen(kw_only=True)
class DecorrelatedJitter(Backoff):
    """Each delay drawn between ``initial`` and ``multiplier`` times the previous delay, capped.

    Spreads a fleet's retries well while still growing: the first delay is drawn from
    ``[initial, initial * multiplier]``.

    Attributes:
        initial: The smallest delay.
        max: The cap.
        multiplier: How far above the previous delay the next may go (at least 1).
    """

    kind: ClassVar[str] = "decorrelated_jitter"
    initial: float = _seconds(default=0.2)
    max: float = _seconds(default=10.0)
    multiplier: float = field(
        default=3.0, converter=_to_float, validator=[_finite_non_negative, validators.ge(1.0)]
    )

    def __attrs_post_init__(self) -> None:
        _initial_within_max(self)

    @property
    def jittered(self) -> bool:
        """Always ``True``: every delay is random."""
        return True

    @property
    def cap(self) -> float:
        """The longest delay: ``max``."""
        return self.max

    def delay(
        self, attempt: int, rng: random.Random | None, previous: float | None = None
    ) -> float:
        """Return a delay in ``[initial, previous * multiplier]``, capped at ``max``."""
        low = min(self.initial, self.max)
        last = previous if previous is not None and previous >= low else low
        high = min(self.max, last * self.multiplier)
        return min(self.max, low + (high - low) * (rng or _SHARED_RNG).random())


def constant(seconds: float = 1.0) -> Constant:
    """Return a backoff waiting ``seconds`` before every retry."""
    return Constant(seconds=seconds)


def linear(initial: float = 1.0, step: float | None = None, max: float = 30.0) -> Linear:
    """Return a backoff growing by ``step`` (default: ``initial``) per retry, capped at ``max``."""
    return Linear(initial=initial, step=initial if step is None else step, max=max)


def exponential(
    initial: float = 0.2,
    max: float = 10.0,
    *,
    multiplier: float = 2.0,
    jitter: Jitter = "full",
) -> Exponential:
    """Return an exponential backoff: ``initial * multiplier ** (n - 1)``, capped, jittered.

    Args:
        initial: The un-jittered delay before the first retry.
        max: The cap.
        multiplier: The growth factor.
        jitter: ``"full"``, ``"equal"`` or ``"none"``.
    """
    return Exponential(initial=initial, max=max, multiplier=multiplier, jitter=jitter)


def decorrelated_jitter(
    initial: float = 0.2,
    max: float = 10.0,
    *,
    multiplier: float = 3.0,
) -> DecorrelatedJitter:
    """Return a decorrelated-jitter backoff (each delay random, up to ``multiplier`` x the last)."""
    return DecorrelatedJitter(initial=initial, max=max, multiplier=multiplier)


_KINDS: dict[str, type[Backoff]] = {
    cls.kind: cls for cls in (Constant, Linear, Exponential, DecorrelatedJitter)
}


def from_mapping(data: Mapping[str, Any] | Backoff | float) -> Backoff:
    """Build a backoff from its mapping form (or pass a backoff through).

    A bare number means a constant delay.

    Args:
        data: ``{"kind": "exponential", "initial": 0.2, ...}``, a number, or a backoff.

    Returns:
        The backoff.

    Raises:
        ValueError: If the kind is unknown or an option is missing, unknown or invalid.
    """
    if isinstance(data, Backoff):
        return data
    if isinstance(data, int | float) and not isinstance(data, bool):
        return Constant(seconds=data)
    if not isinstance(data, Mapping):
        raise ValueError(  # noqa: TRY004 - configuration errors are ValueErrors
            f"a backoff is a mapping with a 'kind', got {type(data).__name__}"
        )
    options = dict(data)
    kind = options.pop("kind", None)
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown backoff kind {kind!r}; expected one of {sorted(_KINDS)}")
    try:
        return cls(**options)
    except TypeError as exc:
        raise ValueError(f"invalid options for backoff {kind!r}: {exc}") from None
