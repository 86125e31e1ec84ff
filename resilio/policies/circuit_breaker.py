"""The circuit breaker: stop calling a failing service, then probe it with a few trial calls.

The decisions live in the I/O-free :class:`~resilio.policies._breaker_state.BreakerMachine`;
this module holds the options, the policy object (state shared by every pipeline it sits in)
and the layer that drives the machine around each call. A lock guards the machine only while
it updates: never while the user's function runs. With a ``store``, the breaker shares its state
across processes (see :mod:`resilio.policies._breaker_shared`).
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from attrs import field, frozen

from resilio._clock import SYSTEM_CLOCK
from resilio._outcome import Failure
from resilio.errors import CircuitOpen
from resilio.events import (
    CallRejected,
    CircuitClosed,
    CircuitHalfOpened,
    CircuitOpened,
    error_type_name,
)
from resilio.policies._base import Args, Env, Kwargs, Layer, Policy
from resilio.policies._breaker_state import BreakerMachine, BreakerRules, CircuitState, Transition

if TYPE_CHECKING:
    from resilio._clock import Clock

__all__ = ["BreakerSnapshot", "CircuitBreaker", "CircuitBreakerOptions", "CircuitState"]

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_REFUSING = {
    CircuitState.ISOLATED: "is isolated (isolate() was called; reset() closes it)",
    CircuitState.HALF_OPEN: "is half-open and every trial slot is taken",
}


def _positive(_inst: object, attribute: Any, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"circuit_breaker: {attribute.name} must be > 0, got {value!r}")


def _fraction(_inst: object, attribute: Any, value: float | None) -> None:
    if value is not None and not 0 < value <= 1:
        raise ValueError(
            f"circuit_breaker: {attribute.name} must be a fraction in (0, 1], got {value!r}"
        )


def _at_least_one(_inst: object, attribute: Any, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ValueError(
            f"circuit_breaker: {attribute.name} must be an integer >= 1, got {value!r}"
        )


@frozen(kw_only=True)
class CircuitBreakerOptions:
    """Validated options of a :class:`CircuitBreaker` (see its docstring for their meaning)."""

    failure_threshold: int | None = field(default=5, validator=_at_least_one)
    break_duration: float = field(default=30.0, converter=float, validator=_positive)
    failure_rate: float | None = field(default=None, validator=_fraction)
    minimum_calls: int = field(default=10, validator=_at_least_one)
    window: float | None = field(default=None, validator=_positive)
    window_size: int | None = field(default=None, validator=_at_least_one)
    slow_call_duration: float | None = field(default=None, validator=_positive)
    slow_call_rate: float | None = field(default=None, validator=_fraction)
    break_duration_multiplier: float = field(default=1.0, converter=float)
    max_break_duration: float | None = field(default=None, validator=_positive)
    half_open_max_calls: int = field(default=1, validator=_at_least_one)
    success_threshold: int = field(default=1, validator=_at_least_one)
    store: Any = field(default=None)
    sync_interval: float = field(default=1.0, converter=float, validator=_positive)

    @break_duration_multiplier.validator
    def _check_multiplier(self, _attribute: object, value: float) -> None:
        if not value >= 1:
            raise ValueError(
                f"circuit_breaker: break_duration_multiplier must be >= 1, got {value!r}"
            )

    def __attrs_post_init__(self) -> None:
        if self.window is not None and self.window_size is not None:
            raise ValueError(
                "circuit_breaker: give window (seconds) or window_size (calls), not both"
            )
        if (self.slow_call_rate is None) != (self.slow_call_duration is None):
            raise ValueError("circuit_breaker: slow_call_rate and slow_call_duration go together")
        if (
            self.failure_threshold is None
            and self.failure_rate is None
            and (self.slow_call_rate is None)
        ):
            raise ValueError(
                "circuit_breaker: no rule can open the circuit: set failure_threshold, "
                "failure_rate or slow_call_rate"
            )
        if self.store is not None:
            from resilio.policies._breaker_shared import check_store

            check_store(self.store)
            if self.window_size is not None:
                raise ValueError(
                    "circuit_breaker: a shared breaker counts rates over a time window: "
                    "use window= (seconds) instead of window_size="
                )

    def rules(self) -> BreakerRules:
        """Return the state machine's rules for these options."""
        windowed = self.failure_rate is not None or self.slow_call_rate is not None
        return BreakerRules(
            failure_threshold=self.failure_threshold,
            failure_rate=self.failure_rate,
            slow_call_rate=self.slow_call_rate,
            minimum_calls=self.minimum_calls,
            window=self.window,
            window_size=(self.window_size or 100) if windowed and self.window is None else None,
            break_duration=self.break_duration,
            break_duration_multiplier=self.break_duration_multiplier,
            max_break_duration=self.max_break_duration,
            half_open_max_calls=self.half_open_max_calls,
            success_threshold=self.success_threshold,
        )


@frozen(kw_only=True)
class BreakerSnapshot:
    """A breaker's health at one moment, for health checks and metrics.

    Attributes:
        name: The breaker's name.
        state: The current state.
        consecutive_failures: Counted failures since the last success.
        window_calls: Calls in the sliding window (0 without rate rules).
        window_failures: Counted failures in the sliding window.
        window_slow: Slow calls in the sliding window.
        failures: Counted failures since the breaker was made.
        rejections: Calls rejected since the breaker was made.
        last_opened_at: Wall-clock time of the last opening, if any.
        last_failure_at: Wall-clock time of the last counted failure, if any.
        last_success_at: Wall-clock time of the last success, if known (see the docs: a
            breaker with only the consecutive-failure rule never reads the clock on success).
        retry_after: Seconds until an open circuit admits a trial, if open.
        degraded: Whether a shared breaker lost its store and runs on local state.
    """

    name: str
    state: CircuitState
    consecutive_failures: int
    window_calls: int
    window_failures: int
    window_slow: int
    failures: int
    rejections: int
    last_opened_at: float | None
    last_failure_at: float | None
    last_success_at: float | None
    retry_after: float | None
    degraded: bool = False


class CircuitBreaker(Policy):
    """Stops calls to a failing service for a while, then lets a few trial calls probe it.

    Trip rules (any one opens the circuit):

    * ``failure_threshold`` counted failures in a row (``None`` to disable);
    * a ``failure_rate`` (fraction, 0.5 = half) of counted failures among at least
      ``minimum_calls`` calls in the sliding window: the last ``window`` seconds, or the last
      ``window_size`` calls (default: the last 100 calls);
    * a ``slow_call_rate`` of calls slower than ``slow_call_duration`` seconds, same window.

    Only TRANSIENT and AMBIGUOUS failures count. PERMANENT and THROTTLED failures count as
    neither success nor failure: a bad request says nothing about the service's health.

    An open circuit rejects calls with :class:`~resilio.CircuitOpen` (its ``__cause__`` is the
    failure that opened it; the call that tripped the breaker gets its own error). The first
    call after ``break_duration`` half-opens it: up to ``half_open_max_calls`` concurrent trial
    calls run, ``success_threshold`` successful trials close it, any counted failure reopens it
    for ``break_duration * break_duration_multiplier ** n`` (capped at ``max_break_duration``)
    after ``n`` consecutive reopenings. A trial that never reports frees its slot after a break.

    Args:
        failure_threshold: Consecutive counted failures that open the circuit.
        break_duration: Seconds the circuit stays open before a trial.
        failure_rate: Fraction of counted failures in the window that opens the circuit.
        minimum_calls: Calls the window needs before rates are judged.
        window: Sliding window length in seconds (rate rules).
        window_size: Sliding window length in calls (rate rules).
        slow_call_duration: Seconds after which a call is slow.
        slow_call_rate: Fraction of slow calls in the window that opens the circuit.
        break_duration_multiplier: Growth of the break with consecutive openings (>= 1).
        max_break_duration: Cap of the escalating break.
        half_open_max_calls: Concurrent trial calls while half-open.
        success_threshold: Successful trials that close the circuit.
        store: A :class:`~resilio.stores.BreakerStore` to share state across processes
            (``None``: purely local, no store calls at all).
        sync_interval: Shared breakers: seconds between syncs on the success path.
        name: The breaker's name (default ``"circuit_breaker"``); the store's key.
    """

    kind: ClassVar[str] = "circuit_breaker"
    options_class: ClassVar[type] = CircuitBreakerOptions

    def __init__(
        self,
        failure_threshold: int | None = 5,
        *,
        break_duration: float = 30.0,
        failure_rate: float | None = None,
        minimum_calls: int = 10,
        window: float | None = None,
        window_size: int | None = None,
        slow_call_duration: float | None = None,
        slow_call_rate: float | None = None,
        break_duration_multiplier: float = 1.0,
        max_break_duration: float | None = None,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        store: Any = None,
        sync_interval: float = 1.0,
        name: str | None = None,
    ) -> None:
        self._setup(
            CircuitBreakerOptions(
                failure_threshold=failure_threshold,
                break_duration=break_duration,
                failure_rate=failure_rate,
                minimum_calls=minimum_calls,
                window=window,
                window_size=window_size,
                slow_call_duration=slow_call_duration,
                slow_call_rate=slow_call_rate,
                break_duration_multiplier=break_duration_multiplier,
                max_break_duration=max_break_duration,
                half_open_max_calls=half_open_max_calls,
                success_threshold=success_threshold,
                store=store,
                sync_interval=sync_interval,
            ),
            name,
        )

    @classmethod
    def from_options(
        cls, options: CircuitBreakerOptions, *, name: str | None = None
    ) -> CircuitBreaker:
        """Build a breaker from validated options."""
        self = cls.__new__(cls)
        self._setup(options, name)
        return self

    def _setup(self, options: CircuitBreakerOptions, name: str | None) -> None:
        self.options = options
        self.name = name or self.kind
        self._machine = BreakerMachine(options.rules())
        self._lock = threading.Lock()
        self._trial_ids = itertools.count(1)
        # The breaker's layers, weakly and in the order they were made: a pipeline holds its
        # layers (and its layers its Env, whose emit holds the pipeline), so holding them
        # strongly would keep every pipeline the breaker was ever put in alive.
        self._layer_ids = itertools.count()
        self._layers: weakref.WeakValueDictionary[int, _BreakerLayer] = (
            weakref.WeakValueDictionary()
        )
        self._clock: Clock | None = None  # the first pipeline's clock, for snapshot()
        self._opened_by: BaseException | None = None
        self._failures = 0
        self._rejections = 0
        self._last_opened_at: float | None = None
        self._last_failure_at: float | None = None
        self._last_success_at: float | None = None
        self._slow_after = options.slow_call_duration
        self._needs_now = options.window is not None and options.store is None
        self._shared: Any = None
        if options.store is not None:
            from resilio.policies._breaker_shared import SharedSync

            self._shared = SharedSync(self, options.store)

    # -- public state ---------------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state (as this process knows it)."""
        return self._machine.state

    def snapshot(self) -> BreakerSnapshot:
        """Return the breaker's health and counters at this moment.

        Times are wall-clock seconds, read from the clock of the first pipeline the breaker
        was put in (the system clock if none).
        """
        m = self._machine
        clock = self._clock if self._clock is not None else SYSTEM_CLOCK
        now = clock.monotonic()
        offset = clock.time() - now

        def wall(t: float | None) -> float | None:
            return None if t is None else t + offset

        with self._lock:
            window = m.window
            return BreakerSnapshot(
                name=self.name,
                state=m.state,
                consecutive_failures=m.consecutive,
                window_calls=window.calls if window else 0,
                window_failures=window.failures if window else 0,
                window_slow=window.slow if window else 0,
                failures=self._failures,
                rejections=self._rejections,
                last_opened_at=wall(self._last_opened_at),
                last_failure_at=wall(self._last_failure_at),
                last_success_at=wall(self._last_success_at),
                retry_after=m.retry_after(now),
                degraded=bool(self._shared is not None and self._shared.degraded),
            )

    def isolate(self) -> None:
        """Force the circuit open (rejecting every call) until :meth:`reset`."""
        with self._lock:
            transition = self._machine.isolate()
            self._opened_by = None
        if self._shared is not None:
            self._shared.force("isolated")
        self._report_all(transition)

    def reset(self) -> None:
        """Close the circuit and forget its counts (also ends an :meth:`isolate`)."""
        with self._lock:
            transition = self._machine.close("reset")
            self._opened_by = None
        if self._shared is not None:
            self._shared.force("closed")
        self._report_all(transition)

    # -- decisions (shared by the sync and async layers) ------------------------------------

    def _admit(self, env: Env, ctx: Any) -> int | Failure | None:
        """Ask to run a call: ``None`` closed, an ``int`` trial id, or a rejection Failure."""
        m = self._machine
        if m.state is _CLOSED:
            return None
        now = env.clock.monotonic()
        tid = next(self._trial_ids)
        with self._lock:
            if m.state is _CLOSED:
                return None
            admitted, transition = m.acquire(now, tid)
            closed = m.state is _CLOSED
            if not admitted:
                self._rejections += 1
                retry_after = m.retry_after(now)
                cause = self._opened_by
                state = m.state
        if transition is not None:
            self._report(transition, env, ctx, None)
        if admitted:
            return None if closed else tid
        return self._reject(env, ctx, retry_after, cause, state)

    def _reject(
        self,
        env: Env,
        ctx: Any,
        retry_after: float | None,
        cause: BaseException | None,
        state: CircuitState,
    ) -> Failure:
        error = CircuitOpen(
            f"circuit breaker {self.name!r} {_REFUSING.get(state, 'is open')}",
            pipeline=env.pipeline,
            policy=self.name,
            retry_after=retry_after,
        )
        error.__cause__ = cause
        error.__suppress_context__ = True
        env.emit(
            CallRejected(
                pipeline=env.pipeline,
                policy=self.name,
                operation=ctx.operation,
                attempt=ctx.attempt,
                reason="circuit_open",
                retry_after=retry_after,
            )
        )
        return Failure(error)

    def _outcome(self, env: Env, ctx: Any, result: Any) -> bool | None:
        """``True`` success, ``False`` counted failure, ``None`` neither."""
        if result.__class__ is Failure:
            return False if env.classify(result, ctx).counts_as_failure else None
        return True

    def _settle(
        self, env: Env, ctx: Any, admission: int | None, result: Any, started: float
    ) -> None:
        """Feed a call's outcome to the machine and report any transition."""
        outcome = self._outcome(env, ctx, result)
        slow_after = self._slow_after
        if (
            slow_after is not None
            or self._needs_now
            or admission is not None
            or outcome is not True
        ):
            now = env.clock.monotonic()
            timed = True
        else:  # consecutive-failure rule only: a success needs no clock
            now = 0.0
            timed = False
        slow = slow_after is not None and now - started >= slow_after
        m = self._machine
        with self._lock:
            if admission is None:
                transition = m.record(now, not outcome, slow) if outcome is not None else None
            else:
                transition = m.trial_done(now, admission, outcome)
            if transition is not None and transition.state is _CLOSED:
                self._opened_by = None  # its traceback would keep the pipeline it came from
            if outcome is False:
                self._failures += 1
                self._last_failure_at = now
            elif outcome and timed:
                self._last_success_at = now
        if transition is not None:
            self._opened(transition, env, ctx, result, now)

    def _success(self, env: Env, ctx: Any) -> None:
        """Count a success of a call admitted while closed (fast path, no slow-call rule)."""
        clock = env.clock
        now = clock.monotonic() if self._needs_now else None
        with self._lock:
            transition = self._machine.record_success(now, clock.monotonic)
            if now is not None:
                self._last_success_at = now
        if transition is not None:  # the window just reached minimum_calls at a tripping rate
            self._opened(transition, env, ctx, None, clock.monotonic())

    def _opened(self, transition: Transition, env: Env, ctx: Any, result: Any, now: float) -> None:
        """Remember what opened the circuit (if it opened), then report the transition."""
        if transition.state is _OPEN:
            with self._lock:
                self._opened_by = result.exception if result.__class__ is Failure else None
                self._last_opened_at = now
        self._report(transition, env, ctx, result)

    def _abandon(self, env: Env, admission: int | None) -> None:
        """A call was cancelled or interrupted: free its trial slot without counting it."""
        if admission is not None:
            with self._lock:
                self._machine.trial_done(env.clock.monotonic(), admission, None)

    # -- events ---------------------------------------------------------------------------------

    def _report(self, transition: Transition, env: Env, ctx: Any, result: Any) -> None:
        operation = ctx.operation if ctx is not None else None
        attempt = ctx.attempt if ctx is not None else 1
        state = transition.state
        event: CircuitOpened | CircuitHalfOpened | CircuitClosed
        if state is _OPEN or state is CircuitState.ISOLATED:
            error = result.exception if result.__class__ is Failure else None
            event = CircuitOpened(
                pipeline=env.pipeline,
                policy=self.name,
                operation=operation,
                attempt=attempt,
                reason=transition.reason,
                break_duration=transition.break_duration,
                error_type=error_type_name(error) if error is not None else None,
            )
        elif state is CircuitState.HALF_OPEN:
            event = CircuitHalfOpened(
                pipeline=env.pipeline, policy=self.name, operation=operation, attempt=attempt
            )
        else:
            event = CircuitClosed(
                pipeline=env.pipeline,
                policy=self.name,
                operation=operation,
                attempt=attempt,
                reason=transition.reason,
            )
        env.emit(event)

    def _live_envs(self) -> list[Env]:
        """The Env of each live pipeline the breaker is in, once per pipeline, oldest first."""
        with self._lock:
            layers = list(self._layers.values())
        return list({id(layer.env): layer.env for layer in layers}.values())

    def _report_all(self, transition: Transition) -> None:
        """Report a manual transition once to each live pipeline the breaker is in."""
        for env in self._live_envs():
            self._report(transition, env, None, None)

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        """Build the breaker's layer for one pipeline (held weakly: the pipeline owns it)."""
        layer = _BreakerLayer(inner, env, self)
        with self._lock:
            if self._clock is None:
                self._clock = env.clock
            self._layers[next(self._layer_ids)] = layer
        return layer


class _BreakerLayer(Layer):
    """Drives a breaker around each call; the closed-state success path does almost nothing."""

    __slots__ = (
        "__weakref__",
        "_breaker",
        "_fast",
        "_inner_run",
        "_inner_run_async",
        "_machine",
        "_track",
    )

    def __init__(self, inner: Layer, env: Env, breaker: CircuitBreaker) -> None:
        super().__init__(inner, env, breaker)
        self._breaker = breaker
        self._machine = breaker._machine
        self._inner_run = inner.run
        self._inner_run_async = inner.run_async
        options = breaker.options
        # The fast path needs no clock: no slow-call rule, no store.
        self._fast = options.slow_call_duration is None and options.store is None
        # Whether a closed success must be recorded even with no failure run pending.
        self._track = breaker._machine.window is not None

    def run(self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Any) -> Any:
        m = self._machine
        if m.state is _CLOSED and self._fast:
            result = self._inner_run(fn, args, kwargs, ctx)
            if result.__class__ is Failure:
                self._breaker._settle(self.env, ctx, None, result, 0.0)
            elif m.consecutive or self._track:
                self._breaker._success(self.env, ctx)
            return result
        return self._run_slow(fn, args, kwargs, ctx)

    def _run_slow(self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Any) -> Any:
        breaker = self._breaker
        env = self.env
        shared = breaker._shared
        admission = shared.admit(env, ctx) if shared is not None else breaker._admit(env, ctx)
        if isinstance(admission, Failure):
            return admission
        started = env.clock.monotonic() if breaker._slow_after is not None else 0.0
        try:
            result = self._inner_run(fn, args, kwargs, ctx)
        except BaseException:
            breaker._abandon(env, admission)
            raise
        if shared is not None:
            shared.settle(env, ctx, admission, result, started)
        else:
            breaker._settle(env, ctx, admission, result, started)
        return result

    async def run_async(self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Any) -> Any:
        m = self._machine
        if m.state is _CLOSED and self._fast:
            result = await self._inner_run_async(fn, args, kwargs, ctx)
            if result.__class__ is Failure:
                self._breaker._settle(self.env, ctx, None, result, 0.0)
            elif m.consecutive or self._track:
                self._breaker._success(self.env, ctx)
            return result
        breaker = self._breaker
        env = self.env
        shared = breaker._shared
        if shared is not None:
            admission = await shared.admit_async(env, ctx)
        else:
            admission = breaker._admit(env, ctx)
        if isinstance(admission, Failure):
            return admission
        started = env.clock.monotonic() if breaker._slow_after is not None else 0.0
        try:
            result = await self._inner_run_async(fn, args, kwargs, ctx)
        except BaseException:
            breaker._abandon(env, admission)
            raise
        if shared is not None:
            await shared.settle_async(env, ctx, admission, result, started)
        else:
            breaker._settle(env, ctx, admission, result, started)
        return result
