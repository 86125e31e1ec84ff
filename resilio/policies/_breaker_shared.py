"""Sharing a circuit breaker's state across processes through a breaker store.

The breaker's local :class:`~resilio.policies._breaker_state.BreakerMachine` stays the source
of every admission decision; this module keeps it in step with the store. The logic is written
once, as generators that yield store operations; a sync and an async driver run them (the async
one never blocks the loop: it awaits the store's ``*_async`` methods, or runs the sync ones in a
worker thread). See :class:`resilio.stores.BreakerStore` for the protocol and its guarantees.

If the store fails, the breaker reports :class:`~resilio.events.BreakerStoreDegraded`, goes on
with its local state and rules, and tries the store again every ``sync_interval``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from resilio._outcome import Failure
from resilio.events import BreakerStoreDegraded, error_type_name
from resilio.policies._breaker_state import CircuitState
from resilio.stores._protocols import SharedBreakerState

if TYPE_CHECKING:
    from resilio.policies._base import Env
    from resilio.policies.circuit_breaker import CircuitBreaker

__all__ = ["SharedSync", "check_store"]

_CLOSED = CircuitState.CLOSED
_SYNC = ("load", "record", "transition")
_ASYNC = ("load_async", "record_async", "transition_async")
_STATES = {
    "closed": CircuitState.CLOSED,
    "open": CircuitState.OPEN,
    "half_open": CircuitState.OPEN,  # another process's trial: wait for its lease to end
    "isolated": CircuitState.ISOLATED,
}

Op = tuple[str, dict[str, Any]]
Flow = Generator[Op, "SharedBreakerState | None", Any]


def check_store(store: object) -> None:
    """Raise :class:`TypeError` unless ``store`` implements a breaker store form."""
    if not (
        all(callable(getattr(store, m, None)) for m in _SYNC)
        or all(callable(getattr(store, m, None)) for m in _ASYNC)
    ):
        raise TypeError(
            f"circuit_breaker: store {type(store).__name__} implements neither BreakerStore "
            "nor AsyncBreakerStore"
        )


class SharedSync:
    """Keeps one breaker in step with its store."""

    def __init__(self, breaker: CircuitBreaker, store: Any) -> None:
        self.breaker = breaker
        self.store = store
        self.has_sync = all(callable(getattr(store, m, None)) for m in _SYNC)
        self.has_async = all(callable(getattr(store, m, None)) for m in _ASYNC)
        self.interval = breaker.options.sync_interval
        self.window = breaker.options.window or 0.0
        self.version = -1  # adopt whatever the store holds on the first sync
        self.next_sync = float("-inf")
        self.machine = breaker._machine
        self.degraded = False
        # A success needs nothing but a tick: no slow-call rule, store reachable.
        self.plain = breaker._slow_after is None
        self.failures = self.slow = self.trailing = 0
        # Closed-state successes are ticks of a C counter: ``next()`` on it is atomic under the
        # GIL, so the success path takes no lock. Reading it ticks it too; reads are counted
        # (under the lock) and subtracted.
        self._ok = itertools.count()
        self._ok_reads = 0
        self._ok_sent = 0  # successes already in a batch
        self._ok_at_failure = 0  # successes counted when the latest failure was

    def _ok_total(self) -> int:
        """Successes counted so far (call under the breaker's lock)."""
        total = next(self._ok) - self._ok_reads
        self._ok_reads += 1
        return total

    def _count_failure(self) -> None:
        """Count a failure in the batch (call under the breaker's lock)."""
        total = self._ok_total()
        if total != self._ok_at_failure:  # a success came since the last failure
            self._ok_at_failure = total
            self.trailing = 0
        self.failures += 1
        self.trailing += 1

    # -- batching -------------------------------------------------------------------------------

    def _take_batch(self) -> Op:
        total = self._ok_total()
        batch = {
            "successes": total - self._ok_sent,
            "failures": self.failures,
            "slow": self.slow,
            "trailing_failures": self.trailing if total == self._ok_at_failure else 0,
            "window": self.window,
        }
        self._ok_sent = self._ok_at_failure = total
        self.failures = self.slow = self.trailing = 0
        return "record", batch

    def _adopt(self, shared: SharedBreakerState, env: Env, ctx: Any, now: float) -> None:
        breaker = self.breaker
        with breaker._lock:
            if shared.version == self.version:
                return
            self.version = shared.version
            state = _STATES[shared.state]
            until = shared.until if shared.until is not None else shared.now
            transition = breaker._machine.adopt(
                now, state, now + max(until - shared.now, 0.0), shared.openings
            )
            if transition is not None and transition.state is _CLOSED:
                breaker._opened_by = None
        if transition is not None and shared.state != "half_open":
            breaker._report(transition, env, ctx, None)

    # -- flows ----------------------------------------------------------------------------------

    def _admit_flow(self, env: Env, ctx: Any) -> Flow:
        breaker = self.breaker
        m = breaker._machine
        now = env.clock.monotonic()
        if now >= self.next_sync:
            with breaker._lock:
                self.next_sync = now + self.interval
                op = self._take_batch()
            shared = yield op
            if shared is not None:
                self._adopt(shared, env, ctx, now)
        if m.state is CircuitState.OPEN and now >= m.open_until and not self.degraded:
            expected = self.version
            shared = yield (
                "transition",
                {
                    "expected_version": expected,
                    "state": "half_open",
                    "break_duration": m.rules.break_for(max(m.openings, 1)),
                },
            )
            if shared is not None:
                if shared.state == "half_open" and shared.version == expected + 1:
                    self.version = shared.version  # this process owns the trial
                else:
                    self._adopt(shared, env, ctx, now)
        return breaker._admit(env, ctx)

    def _settle_flow(
        self, env: Env, ctx: Any, admission: int | None, result: Any, started: float
    ) -> Flow:
        breaker = self.breaker
        m = breaker._machine
        outcome = breaker._outcome(env, ctx, result)
        now = env.clock.monotonic()
        slow_after = breaker._slow_after
        slow = slow_after is not None and now - started >= slow_after
        if admission is not None:
            yield from self._trial_flow(env, ctx, admission, outcome, result, now)
            return None
        if outcome is None:
            return None
        with breaker._lock:
            if m.state is not CircuitState.CLOSED:
                return None
            if outcome:
                next(self._ok)
            else:
                self._count_failure()
                breaker._failures += 1
                breaker._last_failure_at = now
            self.slow += slow
            if self.degraded or not (outcome is False or now >= self.next_sync):
                local = m.record(now, not outcome, slow) if self.degraded else None
                op = None
            else:
                self.next_sync = now + self.interval
                op = self._take_batch()
        if op is None:
            if local is not None:
                breaker._opened(local, env, ctx, result, now)
            return None
        shared = yield op
        if shared is None:
            with breaker._lock:
                local = m.record(now, not outcome, slow)
            if local is not None:
                breaker._opened(local, env, ctx, result, now)
            return None
        if shared.version != self.version or shared.state != "closed":
            self._adopt(shared, env, ctx, now)
            return None
        reason = None
        threshold = m.rules.failure_threshold
        if threshold is not None and shared.consecutive_failures >= threshold and not outcome:
            reason = "failures"
        if reason is None and m.rules.windowed:
            reason = m.rate_rule(shared.window_calls, shared.window_failures, shared.window_slow)
        if reason is None:
            return None
        expected = shared.version
        opened = yield (
            "transition",
            {
                "expected_version": expected,
                "state": "open",
                "break_duration": m.rules.break_for(shared.openings + 1),
            },
        )
        if opened is None:
            return None
        if opened.version == expected + 1 and opened.state == "open":
            with breaker._lock:
                self.version = opened.version
                m.openings = shared.openings
                transition = m.open(now, reason)
                m.open_until = now + max((opened.until or opened.now) - opened.now, 0.0)
            breaker._opened(transition, env, ctx, result, now)
        else:
            self._adopt(opened, env, ctx, now)
        return None

    def _trial_flow(
        self, env: Env, ctx: Any, trial: int, outcome: bool | None, result: Any, now: float
    ) -> Flow:
        breaker = self.breaker
        with breaker._lock:
            transition = breaker._machine.trial_done(now, trial, outcome)
            if outcome is False:
                breaker._failures += 1
                breaker._last_failure_at = now
        if transition is None:
            return
        if not self.degraded:
            expected = self.version
            state = "open" if transition.state is CircuitState.OPEN else "closed"
            shared = yield (
                "transition",
                {
                    "expected_version": expected,
                    "state": state,
                    "break_duration": transition.break_duration,
                },
            )
            if shared is not None and shared.version != expected + 1:
                self._adopt(shared, env, ctx, now)
                return
            if shared is not None:
                self.version = shared.version
        breaker._opened(transition, env, ctx, result, now)

    # -- drivers --------------------------------------------------------------------------------

    def _degrade(self, env: Env, error: BaseException | None) -> None:
        degraded = error is not None
        if degraded == self.degraded:
            return
        self.degraded = degraded
        self.plain = not degraded and self.breaker._slow_after is None
        env.emit(
            BreakerStoreDegraded(
                pipeline=env.pipeline,
                policy=self.breaker.name,
                degraded=degraded,
                error_type=error_type_name(error) if error is not None else None,
            )
        )

    def _call(self, op: Op) -> SharedBreakerState:
        method, kwargs = op
        name = self.breaker.name
        if method == "load":
            return self.store.load(name)  # type: ignore[no-any-return]
        return getattr(self.store, method)(name, **kwargs)  # type: ignore[no-any-return]

    async def _call_async(self, op: Op) -> SharedBreakerState:
        if not self.has_async:
            return await asyncio.to_thread(self._call, op)
        method, kwargs = op
        return await getattr(self.store, method + "_async")(  # type: ignore[no-any-return]
            self.breaker.name, **kwargs
        )

    def _run(self, flow: Flow, env: Env) -> Any:
        if not self.has_sync:
            raise TypeError(
                f"circuit breaker {self.breaker.name!r}: its store has only async methods; "
                "use execute_async() or a store with the synchronous BreakerStore methods"
            )
        try:
            op = next(flow)
            while True:
                try:
                    shared: SharedBreakerState | None = self._call(op)
                except Exception as exc:
                    self._degrade(env, exc)
                    shared = None
                else:
                    self._degrade(env, None)
                op = flow.send(shared)
        except StopIteration as stop:
            return stop.value

    async def _run_async(self, flow: Flow, env: Env) -> Any:
        try:
            op = next(flow)
            while True:
                try:
                    shared: SharedBreakerState | None = await self._call_async(op)
                except Exception as exc:
                    self._degrade(env, exc)
                    shared = None
                else:
                    self._degrade(env, None)
                op = flow.send(shared)
        except StopIteration as stop:
            return stop.value

    def admit(self, env: Env, ctx: Any) -> int | Failure | None:
        """Admission for a call run synchronously (see ``CircuitBreaker._admit``)."""
        if self.machine.state is _CLOSED and env.clock.monotonic() < self.next_sync:
            return None
        return self._run(self._admit_flow(env, ctx), env)  # type: ignore[no-any-return]

    async def admit_async(self, env: Env, ctx: Any) -> int | Failure | None:
        """Admission for a call run on the event loop."""
        if self.machine.state is _CLOSED and env.clock.monotonic() < self.next_sync:
            return None
        return await self._run_async(self._admit_flow(env, ctx), env)  # type: ignore[no-any-return]

    def settle(
        self, env: Env, ctx: Any, admission: int | None, result: Any, started: float
    ) -> None:
        """Record a synchronous call's outcome locally and, when due, in the store.

        The success path of a closed, healthy shared breaker ends at the first test: one tick
        of a counter, no lock, no clock read, no store call. The batch reaches the store with
        the next admission after ``sync_interval`` (a failure is sent at once).
        """
        if (
            admission is None
            and self.plain
            and result.__class__ is not Failure
            and self.machine.state is _CLOSED
        ):
            next(self._ok)
            return
        self._run(self._settle_flow(env, ctx, admission, result, started), env)

    async def settle_async(
        self, env: Env, ctx: Any, admission: int | None, result: Any, started: float
    ) -> None:
        """Record an async call's outcome locally and, when due, in the store (see settle)."""
        if (
            admission is None
            and self.plain
            and result.__class__ is not Failure
            and self.machine.state is _CLOSED
        ):
            next(self._ok)
            return
        await self._run_async(self._settle_flow(env, ctx, admission, result, started), env)

    def force(self, state: str) -> None:
        """Force the shared state (manual ``isolate()``/``reset()``).

        Raises:
            TypeError: If the store has only the async form.
        """
        if not self.has_sync:
            raise TypeError(
                f"circuit breaker {self.breaker.name!r}: isolate()/reset() need a store with "
                "the synchronous BreakerStore methods"
            )
        shared = self.store.transition(
            self.breaker.name,
            expected_version=None,
            state=state,
            break_duration=self.breaker.options.break_duration,
        )
        self.version = shared.version
