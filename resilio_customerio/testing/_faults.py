"""Scriptable fault injection for the simulator: rules, outages, rate limits and idle drops."""

from __future__ import annotations

import fnmatch
import random
import threading
from typing import Literal

from attrs import Factory, define, field, frozen, validators

ResetWhen = Literal["before", "after"]
"""When a reset happens: ``"before"`` the request is applied, or ``"after"``."""


def _opt_positive(_inst: object, attribute: object, value: float | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{getattr(attribute, 'name', 'value')} must be >= 0, got {value!r}")


def _status_code(_inst: object, _attribute: object, value: int | None) -> None:
    if value is not None and not 100 <= value <= 599:
        raise ValueError(f"status must be an HTTP status code (100-599), got {value!r}")


@frozen(kw_only=True)
class FaultAction:
    """What the server does instead of (or on top of) answering a request normally.

    Attributes:
        source: Which mechanism chose the action: ``"rule"``, ``"outage"`` or ``"rate_limit"``.
        status: Status code to answer with instead of the real answer; nothing is applied.
        retry_after: Value of a ``Retry-After`` header, if any.
        body: Body to send with ``status`` (the endpoint's usual error envelope when None).
        location: Value of a ``Location`` header (for redirect statuses).
        latency: Seconds to wait before handling the request.
        delay: Seconds to wait after applying the request and before answering.
        reset: Close the connection without a response, ``"before"`` or ``"after"`` applying.
    """

    source: str
    status: int | None = None
    retry_after: str | None = None
    body: str | None = None
    location: str | None = None
    latency: float = 0.0
    delay: float | None = None
    reset: ResetWhen | None = None


@define(kw_only=True)
class FaultRule:
    """One scripted fault, matched per request.

    A rule fires on a request when its ``endpoint`` matches, the simulator's elapsed time is
    inside ``[start, end)``, and its counting conditions hold: among matching requests, it fires
    on the ``first`` N, or on every ``every``-th, each with ``probability``. Counting conditions
    combine with "and".

    Attributes:
        endpoint: ``"*"``; an endpoint name such as ``"track"``, ``"identify"``, ``"batch"``,
            ``"send_email"`` (shell-style wildcards allowed: ``"send_*"``); a family,
            ``"track_api"`` or ``"app_api"``; or ``"METHOD /path/glob"`` matched against the
            raw request path, e.g. ``"POST /api/v1/customers/*/events"`` (the method may be
            omitted or ``*``).
        status: Answer with this status code and do not apply the request.
        retry_after: ``Retry-After`` header to send with ``status`` (seconds or an HTTP date).
        body: Body to send with ``status``; defaults to the endpoint's error envelope.
        location: ``Location`` header to send with ``status`` (to script redirects).
        latency: Seconds to wait before handling the request (real time).
        timeout_after_commit: Apply the request, then wait this many seconds before answering,
            so the answer arrives after a short client timeout.
        reset: Close the TCP connection abruptly without answering: ``"before"`` applying the
            request (nothing recorded as accepted) or ``"after"`` (the effect is kept).
        probability: Chance that an otherwise eligible request is hit (seeded generator).
        every: Fire only on every N-th matching request (N, 2N, ...).
        first: Fire only on the first N matching requests.
        start: Seconds after simulator start at which the rule becomes active.
        end: Seconds after simulator start at which the rule stops being active.
        seen: How many requests matched the rule's endpoint and window so far.
        fired: How many times the rule fired so far.
    """

    endpoint: str = "*"
    status: int | None = field(default=None, validator=_status_code)
    retry_after: str | int | None = None
    body: str | None = None
    location: str | None = None
    latency: float = field(default=0.0, validator=validators.ge(0.0))
    timeout_after_commit: float | None = field(default=None, validator=_opt_positive)
    reset: ResetWhen | None = field(
        default=None, validator=validators.optional(validators.in_(("before", "after")))
    )
    probability: float = field(default=1.0, validator=[validators.ge(0.0), validators.le(1.0)])
    every: int | None = field(default=None, validator=validators.optional(validators.ge(1)))
    first: int | None = field(default=None, validator=validators.optional(validators.ge(0)))
    start: float | None = None
    end: float | None = None
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def matches(self, name: str, family: str, method: str, path: str) -> bool:
        """Return whether the rule's ``endpoint`` selects this request.

        Args:
            name: The endpoint name the router gave the request.
            family: ``"track_api"``, ``"app_api"`` or ``"unknown"``.
            method: The HTTP method.
            path: The raw request path, without the query string.

        Returns:
            True when the rule applies to the request.
        """
        pattern = self.endpoint
        if pattern in ("*", family):
            return True
        if "/" in pattern:
            want_method, _, want_path = pattern.rpartition(" ")
            if want_method not in ("", "*") and want_method.upper() != method:
                return False
            return fnmatch.fnmatchcase(path, want_path)
        return fnmatch.fnmatchcase(name, pattern)

    def _action(self) -> FaultAction:
        retry_after = None if self.retry_after is None else str(self.retry_after)
        return FaultAction(
            source="rule",
            status=self.status,
            retry_after=retry_after,
            body=self.body,
            location=self.location,
            latency=self.latency,
            delay=self.timeout_after_commit,
            reset=self.reset,
        )


@define(kw_only=True)
class Faults:
    """The simulator's fault plan; safe to change while the simulator runs.

    Checks run in this order for each request: ``outage``, ``rate_limit``, then ``rules`` (the
    first rule that fires wins).

    Attributes:
        rules: Scripted :class:`FaultRule` objects, in priority order.
        outage: ``(start, end)`` seconds after simulator start during which every request fails.
        outage_reset: During the outage, reset connections instead of answering.
        outage_status: Status answered during the outage (when not resetting).
        rate_limit: Requests allowed per one-second window; the rest get 429.
        rate_limit_retry_after: ``Retry-After`` sent with rate-limit 429s; None sends none.
        drop_idle: Close keep-alive connections that stay idle this many seconds.
        seed: Seed of the random generator used by ``probability``.
    """

    rules: list[FaultRule] = Factory(list)
    outage: tuple[float, float] | None = None
    outage_reset: bool = False
    outage_status: int = field(default=503, validator=_status_code)
    rate_limit: int | None = field(default=None, validator=validators.optional(validators.ge(0)))
    rate_limit_retry_after: str | int | None = 1
    drop_idle: float | None = field(default=None, validator=_opt_positive)
    seed: int | None = 0
    _rng: random.Random = field(init=False)
    _lock: threading.Lock = field(init=False, factory=threading.Lock)
    _window: int = field(init=False, default=-1)
    _window_count: int = field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - reproducible test faults

    def add(self, endpoint: str = "*", **options: object) -> FaultRule:
        """Append a rule and return it (its counters show how often it fired).

        Args:
            endpoint: Which requests the rule applies to (see :class:`FaultRule`).
            **options: Any other :class:`FaultRule` field.

        Returns:
            The new rule.
        """
        rule = FaultRule(endpoint=endpoint, **options)  # type: ignore[arg-type]
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule, the outage, the rate limit and idle drops; reseed the generator."""
        with self._lock:
            self.rules.clear()
            self.outage = None
            self.rate_limit = None
            self.drop_idle = None
            self._rng.seed(self.seed)
            self._window = -1
            self._window_count = 0

    def decide(
        self, *, name: str, family: str, method: str, path: str, elapsed: float
    ) -> FaultAction | None:
        """Choose the fault for one request, updating counters.

        Args:
            name: Endpoint name from the router.
            family: ``"track_api"``, ``"app_api"`` or ``"unknown"``.
            method: HTTP method.
            path: Raw request path without the query string.
            elapsed: Seconds since the simulator started, from its clock.

        Returns:
            The action to take, or None to answer normally.
        """
        with self._lock:
            outage = self.outage
            if outage is not None and outage[0] <= elapsed < outage[1]:
                if self.outage_reset:
                    return FaultAction(source="outage", reset="before")
                return FaultAction(source="outage", status=self.outage_status)
            limit = self.rate_limit
            if limit is not None:
                window = int(elapsed)
                if window != self._window:
                    self._window, self._window_count = window, 0
                self._window_count += 1
                if self._window_count > limit:
                    retry = self.rate_limit_retry_after
                    return FaultAction(
                        source="rate_limit",
                        status=429,
                        retry_after=None if retry is None else str(retry),
                    )
            for rule in self.rules:
                if self._fires(rule, name, family, method, path, elapsed):
                    return rule._action()
        return None

    def _fires(
        self, rule: FaultRule, name: str, family: str, method: str, path: str, elapsed: float
    ) -> bool:
        if rule.start is not None and elapsed < rule.start:
            return False
        if rule.end is not None and elapsed >= rule.end:
            return False
        if not rule.matches(name, family, method, path):
            return False
        rule.seen += 1
        if rule.first is not None and rule.seen > rule.first:
            return False
        if rule.every is not None and rule.seen % rule.every != 0:
            return False
        if rule.probability < 1.0 and self._rng.random() >= rule.probability:
            return False
        rule.fired += 1
        return True
