"""The Acme Mail adapter's resilio plugin: operations, a classifier and a policy type.

Published with::

    [project.entry-points.resilio]
    acme = "acme_resilio.plugin"
"""

from __future__ import annotations

from typing import Any, ClassVar

from attrs import field, frozen, validators

import resilio
from resilio.classify import Classification, ErrorKind
from resilio.policies import Env, Failure, Layer, Policy

_DAY = 86400.0

SENT: list[dict[str, Any]] = []
"""What the fake client "sent" (the example has no network)."""


class AcmeError(Exception):
    """An error response of the Acme API.

    Args:
        status: The HTTP status code.
        retry_after: The ``Retry-After`` header in seconds, if any.
    """

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"acme api status {status}")
        self.status = status
        self.retry_after = retry_after


def classify(error: BaseException, context: Any) -> Classification | None:
    """Classify Acme errors: 429 throttled, 5xx transient, 408 ambiguous, 4xx permanent."""
    if not isinstance(error, AcmeError):
        return None
    if error.status == 429:
        return Classification(
            kind=ErrorKind.THROTTLED, retry_after=error.retry_after, reason="http 429"
        )
    if error.status == 408:
        return Classification(kind=ErrorKind.AMBIGUOUS, reason="http 408")
    if error.status >= 500:
        return Classification(kind=ErrorKind.TRANSIENT, reason=f"http {error.status}")
    return Classification(kind=ErrorKind.PERMANENT, reason=f"http {error.status}")


def send_email(payload: dict[str, Any]) -> str:
    """Send an email described by a JSON payload (``{"to": ..., "template": ...}``)."""
    SENT.append(payload)
    return f"msg-{len(SENT)}"


def get_status(payload: dict[str, Any]) -> str:
    """Read the delivery status of a message (``{"id": ...}``)."""
    return "delivered"


@frozen(kw_only=True)
class QuotaOptions:
    """Options of the Acme quota guard.

    Attributes:
        daily_limit: Emails allowed per day by the account's plan.
    """

    daily_limit: int = field(default=1000, validator=validators.ge(1))


class QuotaGuard(Policy):
    """Refuses calls once the account's daily quota is used (a policy type a plugin adds).

    Args:
        daily_limit: Emails allowed per day.
        name: The policy's name.
    """

    kind: ClassVar[str] = "acme_quota"
    options_class: ClassVar[type] = QuotaOptions

    def __init__(self, *, daily_limit: int = 1000, name: str | None = None) -> None:
        self.options = QuotaOptions(daily_limit=daily_limit)
        self.name = name or self.kind
        self.used = 0

    @classmethod
    def from_options(cls, options: QuotaOptions, *, name: str | None = None) -> QuotaGuard:
        """Build the guard from validated options."""
        return cls(daily_limit=options.daily_limit, name=name)

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        """Build the guard's layer."""
        return _QuotaLayer(inner, env, self)


class _QuotaLayer(Layer):
    __slots__ = ()

    def _admit(self) -> Failure | None:
        """Count the call, or refuse it until the next UTC midnight once the quota is used."""
        guard: QuotaGuard = self.policy  # type: ignore[assignment]
        if guard.used >= guard.options.daily_limit:
            until_midnight = _DAY - self.env.clock.time() % _DAY
            refusal = resilio.Rejected(
                "acme daily quota used", policy=guard.name, retry_after=until_midnight
            )
            return Failure(refusal)
        guard.used += 1
        return None

    def run(self, fn: Any, args: Any, kwargs: Any, ctx: Any) -> Any:
        refused = self._admit()
        return refused if refused is not None else self.inner.run(fn, args, kwargs, ctx)

    async def run_async(self, fn: Any, args: Any, kwargs: Any, ctx: Any) -> Any:
        refused = self._admit()
        if refused is not None:
            return refused
        return await self.inner.run_async(fn, args, kwargs, ctx)


@resilio.hookimpl
def resilio_register_operations(registry: Any) -> None:
    """Register the adapter's operations."""
    registry.add(
        resilio.Operation(
            name="acme.send_email",
            idempotent=False,
            classifier=classify,
            handler=send_email,
            pipeline="acme.write",
            description="Send one email",
        )
    )
    registry.add(
        resilio.Operation(
            name="acme.get_status",
            idempotent=True,
            classifier=classify,
            handler=get_status,
            pipeline="acme.read",
            description="Read a message's delivery status",
        )
    )


@resilio.hookimpl
def resilio_register_policies(registry: Any) -> None:
    """Register the quota guard policy type."""
    registry.add(QuotaGuard)
