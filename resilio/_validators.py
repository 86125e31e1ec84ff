"""attrs validators whose errors read as one line naming the option, the rule and the value.

attrs' own validators raise exceptions whose ``args`` also hold the attribute object, so
``str(error)`` prints a tuple with internals; these keep only the message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["one_of", "plain"]

Validator = Callable[[Any, Any, Any], None]


def one_of(*choices: str) -> Validator:
    """Return a validator accepting exactly one of ``choices``.

    Args:
        *choices: The accepted values.

    Returns:
        The validator; it raises ``ValueError("mode must be 'a' or 'b', got 'x'")``.
    """
    allowed = frozenset(choices)
    shown = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"

    def validate(_inst: Any, attribute: Any, value: Any) -> None:
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(f"{attribute.name} must be {shown}, got {value!r}")

    return validate


def plain(validator: Validator) -> Validator:
    """Wrap an attrs validator so the error it raises carries its message only.

    Args:
        validator: An attrs validator (``attrs.validators.instance_of(bool)``, ...).

    Returns:
        A validator raising ``TypeError`` or ``ValueError`` (as the wrapped one did) with
        only its message.
    """

    def validate(inst: Any, attribute: Any, value: Any) -> None:
        try:
            validator(inst, attribute, value)
        except (TypeError, ValueError) as exc:
            if len(exc.args) <= 1:
                raise
            kind = TypeError if isinstance(exc, TypeError) else ValueError
            raise kind(str(exc.args[0])) from None

    return validate
