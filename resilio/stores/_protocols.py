"""The contracts of the stores that share policy state between processes.

Three stateful policies can share their state through a store: the circuit breaker
(:class:`BreakerStore`), the rate limiter (:class:`RateLimitStore`) and the idempotency policy
(:class:`IdempotencyStore`). Each protocol has a synchronous form (used by
:meth:`resilio.Pipeline.execute`) and an asynchronous form whose methods carry an ``_async``
suffix (used by :meth:`resilio.Pipeline.execute_async`). One store object may implement both
forms; a policy run on the event loop with a store that only has the synchronous form calls it
in a worker thread (:func:`asyncio.to_thread`) so the loop never blocks, and a policy run
synchronously with a store that only has the asynchronous form raises :class:`TypeError`.

Every method is **atomic**: it reads and writes the state of one name (or key) as one
indivisible step relative to every other method call on the same name, in every process (a Redis
Lua script, an SQLite ``BEGIN IMMEDIATE`` transaction). Shared timings use the **store's clock**
(Redis ``TIME``; for SQLite, the host's wall clock), never the caller's: methods take no ``now``.
Results that carry times carry the store's ``now`` too, so callers only ever use differences.

Stores raise any :class:`Exception` when the backend is unreachable; the policies decide what to
do then (the breaker falls back to its local state and reports
:class:`~resilio.events.BreakerStoreDegraded`).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from attrs import field, frozen

__all__ = [
    "AsyncBreakerStore",
    "AsyncIdempotencyStore",
    "AsyncRateLimitStore",
    "BreakerStore",
    "Completed",
    "IdempotencyStore",
    "InFlight",
    "RateLimitGrant",
    "RateLimitStore",
    "Reservation",
    "Reserved",
    "SharedBreakerState",
    "SharedState",
    "WINDOW_BUCKETS",
]

SharedState = Literal["closed", "open", "half_open", "isolated"]
"""The states a shared breaker can be in."""

WINDOW_BUCKETS = 10
"""How many buckets a store's sliding time window is cut into (see :meth:`BreakerStore.record`)."""


# -- circuit breaker -------------------------------------------------------------------------


@frozen(kw_only=True)
class SharedBreakerState:
    """What a breaker store holds for one breaker name, as of one atomic operation.

    A name never seen before reads as ``closed``, version 0, every count 0, every time ``None``.

    Attributes:
        state: ``"closed"``, ``"open"``, ``"half_open"`` or ``"isolated"``.
        version: Increases by one on every transition; the compare-and-set token of
            :meth:`BreakerStore.transition`. Counting (``record``) does not change it.
        now: The store's clock (seconds) when the operation ran.
        opened_at: Store time of the last transition to ``open``/``isolated``; ``None`` when
            closed.
        until: ``open``: store time at which the break ends. ``half_open``: store time at which
            the trial lease ends (a process that never reports frees the trial then).
            ``None`` otherwise.
        openings: Consecutive openings without a close in between (0 when closed). Breakers
            derive an escalating break duration from it.
        consecutive_failures: Counted failures since the last success, across all processes.
        window_calls: Calls recorded in the sliding time window.
        window_failures: Counted failures recorded in the sliding time window.
        window_slow: Slow calls recorded in the sliding time window.
    """

    state: SharedState = "closed"
    version: int = 0
    now: float = 0.0
    opened_at: float | None = None
    until: float | None = None
    openings: int = 0
    consecutive_failures: int = 0
    window_calls: int = 0
    window_failures: int = 0
    window_slow: int = 0


@runtime_checkable
class BreakerStore(Protocol):
    """Shared state for circuit breakers, namespaced by breaker name.

    The breaker runs its state machine locally and uses the store as the shared truth:

    * It **records** outcomes in batches. A counted failure is flushed at once (the failure
      path may pay a round trip); successes and slow calls accumulate locally and are flushed
      with the next failure or on the first call after ``sync_interval`` seconds since the
      last sync. So the closed-state success path pays at most one round trip per
      ``sync_interval``, and an opening made by another process is seen by this one on its
      first call after at most ``sync_interval`` seconds, or at once on its next failure.
    * It decides from the returned counts whether a rule trips, and then asks the store to
      **transition** with the version it saw (compare-and-set). Only one process wins a
      race; the others receive the winner's state and adopt it. A process that starts while
      the circuit is open only ever *loads* that state: it neither closes it nor extends the
      break, because its transitions carry a stale version.
    * Half-open: the process whose ``open -> half_open`` transition won owns the trial; the
      others treat ``half_open`` as open until the state changes. If the owner never reports,
      any process may take the trial over once ``until`` has passed (a ``half_open ->
      half_open`` transition with the current version).

    A store may forget a name whose state is ``closed`` and that has not been written for
    longer than a day; it must keep every other state until it is transitioned.
    """

    def load(self, name: str) -> SharedBreakerState:
        """Return the current shared state of ``name`` without changing it.

        Args:
            name: The breaker's name.

        Returns:
            The state; ``now`` is the store's clock.
        """
        ...

    def record(
        self,
        name: str,
        *,
        successes: int,
        failures: int,
        slow: int,
        trailing_failures: int,
        window: float,
    ) -> SharedBreakerState:
        """Add a batch of outcomes to the counts of ``name``, then return the state.

        Only a ``closed`` breaker counts: in any other state the batch is dropped (those are
        late reports from before an opening) and the state is returned unchanged. When
        ``closed``:

        * ``consecutive_failures`` becomes ``trailing_failures`` if ``successes > 0`` (a
          success in the batch reset the run) and grows by ``failures`` otherwise.
        * If ``window > 0``, the sliding time window covers the last ``window`` seconds of
          store time in :data:`WINDOW_BUCKETS` buckets of ``window / WINDOW_BUCKETS`` seconds,
          bucket ``floor(now / width)``. The batch (``successes + failures`` calls,
          ``failures``, ``slow``) is added to the current bucket, buckets older than
          ``window`` are dropped, and the ``window_*`` fields are the sums of the kept buckets.
          If ``window == 0`` the window is not kept and the ``window_*`` fields are 0.

        The version is not changed.

        Args:
            name: The breaker's name.
            successes: Calls that succeeded (not counted failures) in the batch.
            failures: Counted failures (TRANSIENT or AMBIGUOUS) in the batch.
            slow: Calls in the batch slower than the breaker's slow-call duration.
            trailing_failures: Counted failures after the batch's last success (only used
                when ``successes > 0``).
            window: Length of the sliding time window in seconds, 0 for none.

        Returns:
            The state after the update.
        """
        ...

    def transition(
        self,
        name: str,
        *,
        expected_version: int | None,
        state: SharedState,
        break_duration: float,
    ) -> SharedBreakerState:
        """Move ``name`` to ``state`` if its version is still ``expected_version``.

        If ``expected_version`` is not ``None`` and differs from the stored version, nothing
        changes and the current state is returned (the caller lost a race and adopts it).
        ``None`` forces the transition (manual ``isolate()`` and ``reset()``). Otherwise the
        version grows by one and, with ``now`` the store's clock:

        * ``"open"``: ``opened_at = now``, ``until = now + break_duration``, ``openings += 1``,
          every count and the window reset to 0.
        * ``"half_open"``: ``until = now + break_duration`` (the trial lease); ``opened_at``
          and ``openings`` are kept.
        * ``"closed"``: ``opened_at = until = None``, ``openings = 0``, counts and window reset.
        * ``"isolated"``: ``opened_at = now``, ``until = None``; ``openings`` kept.

        Args:
            name: The breaker's name.
            expected_version: The version the caller's decision was based on, or ``None``.
            state: The new state.
            break_duration: Seconds of the break (``open``) or trial lease (``half_open``).

        Returns:
            The state after the operation (the new one, or the unchanged current one).
        """
        ...


@runtime_checkable
class AsyncBreakerStore(Protocol):
    """The asynchronous form of :class:`BreakerStore`: same contract, ``_async`` methods."""

    async def load_async(self, name: str) -> SharedBreakerState:
        """See :meth:`BreakerStore.load`."""
        ...

    async def record_async(
        self,
        name: str,
        *,
        successes: int,
        failures: int,
        slow: int,
        trailing_failures: int,
        window: float,
    ) -> SharedBreakerState:
        """See :meth:`BreakerStore.record`."""
        ...

    async def transition_async(
        self,
        name: str,
        *,
        expected_version: int | None,
        state: SharedState,
        break_duration: float,
    ) -> SharedBreakerState:
        """See :meth:`BreakerStore.transition`."""
        ...


# -- rate limiter ----------------------------------------------------------------------------


@frozen
class RateLimitGrant:
    """The answer of :meth:`RateLimitStore.acquire`.

    Attributes:
        granted: Whether the tokens were reserved. If so, the caller sleeps ``wait`` seconds
            and then runs. If not, nothing was consumed.
        wait: Granted: seconds to wait before running (0 for at once). Refused: seconds after
            which the tokens would be available (a ``retry_after`` hint).
    """

    granted: bool
    wait: float


@runtime_checkable
class RateLimitStore(Protocol):
    """Shared token buckets, namespaced by limiter name."""

    def acquire(
        self,
        name: str,
        *,
        rate: float,
        per: float,
        burst: float,
        tokens: float = 1.0,
        max_wait: float,
    ) -> RateLimitGrant:
        """Reserve ``tokens`` from the bucket of ``name``, atomically.

        The bucket holds a level ``L`` (may go negative: tokens reserved ahead of time) and the
        store time ``t`` it was computed at; a new bucket is full (``L = burst``). With ``now``
        the store's clock: ``L = min(burst, L + (now - t) * rate / per)``, then
        ``need = tokens - L``. If ``need <= 0`` the wait is 0; else ``wait = need * per / rate``.
        If ``wait <= max_wait`` the reservation is stored (``L -= tokens``, ``t = now``) and
        ``RateLimitGrant(True, wait)`` returned; else nothing is stored and
        ``RateLimitGrant(False, wait)`` returned. Callers that reserve in arrival order are
        therefore served in arrival order (FIFO), each waiting only for its missing part.

        Args:
            name: The limiter's name.
            rate: Tokens added per ``per`` seconds (> 0).
            per: The period in seconds (> 0).
            burst: The bucket's capacity (>= ``tokens``).
            tokens: Tokens this call needs.
            max_wait: The longest wait the caller accepts, in seconds.

        Returns:
            The grant or refusal.
        """
        ...


@runtime_checkable
class AsyncRateLimitStore(Protocol):
    """The asynchronous form of :class:`RateLimitStore`."""

    async def acquire_async(
        self,
        name: str,
        *,
        rate: float,
        per: float,
        burst: float,
        tokens: float = 1.0,
        max_wait: float,
    ) -> RateLimitGrant:
        """See :meth:`RateLimitStore.acquire`."""
        ...


# -- idempotency -----------------------------------------------------------------------------


@frozen
class Reserved:
    """The key was free (or its lease had expired): the caller owns it and must run the call.

    Attributes:
        token: The owner's fencing token, passed back to ``complete``/``release``.
    """

    token: str


@frozen
class Completed:
    """A call with the key already succeeded: ``result`` is its stored result.

    Attributes:
        result: The stored result (JSON-decoded for shared stores).
    """

    result: Any


@frozen
class InFlight:
    """Another owner holds the key and has not finished.

    Attributes:
        retry_after: Seconds until the owner's lease ends (>= 0).
    """

    retry_after: float = field(default=0.0)


Reservation = Reserved | Completed | InFlight
"""What :meth:`IdempotencyStore.reserve` answers."""


@runtime_checkable
class IdempotencyStore(Protocol):
    """Shared idempotency records: one per key, either in flight or completed.

    Shared stores keep results as JSON; they raise :class:`TypeError` from ``complete`` for a
    result that is not JSON-serialisable. The in-memory store keeps any object.
    """

    def reserve(self, key: str, *, lease: float) -> Reservation:
        """Claim ``key`` for ``lease`` seconds, atomically.

        * No record, or an in-flight record whose lease has ended (its owner died):
          a new in-flight record with a fresh token is stored; returns :class:`Reserved`.
        * A completed record that has not expired: returns :class:`Completed`.
        * An in-flight record within its lease: returns :class:`InFlight`.

        Args:
            key: The idempotency key.
            lease: Seconds the reservation lasts if never completed or released.

        Returns:
            The reservation's outcome.
        """
        ...

    def complete(self, key: str, *, token: str, result: Any, ttl: float) -> bool:
        """Store the result of the owner's successful call for ``ttl`` seconds.

        Args:
            key: The idempotency key.
            token: The token from :class:`Reserved`.
            result: The call's result.
            ttl: Seconds the completed record is kept.

        Returns:
            ``True`` if stored; ``False`` if ``token`` no longer owns ``key`` (its lease
            ended and someone else reserved it), in which case nothing changes.
        """
        ...

    def release(self, key: str, *, token: str) -> bool:
        """Delete the in-flight record of ``key`` if ``token`` still owns it (the call failed).

        Returns:
            Whether a record was deleted.
        """
        ...


@runtime_checkable
class AsyncIdempotencyStore(Protocol):
    """The asynchronous form of :class:`IdempotencyStore`."""

    async def reserve_async(self, key: str, *, lease: float) -> Reservation:
        """See :meth:`IdempotencyStore.reserve`."""
        ...

    async def complete_async(self, key: str, *, token: str, result: Any, ttl: float) -> bool:
        """See :meth:`IdempotencyStore.complete`."""
        ...

    async def release_async(self, key: str, *, token: str) -> bool:
        """See :meth:`IdempotencyStore.release`."""
        ...
