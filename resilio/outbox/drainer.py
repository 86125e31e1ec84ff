"""The drainer: replays outbox items through their operation's handler and pipeline.

Each item is leased before it runs, so drainers in several threads or processes share one
outbox without running an item twice at the same time; a drainer that dies loses nothing, since
its leases expire and another drainer takes the items. What happens after a replay is decided by
:func:`decide`, which does no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import define, field, frozen

from resilio._clock import SYSTEM_CLOCK, Clock
from resilio._context import REPLAY_ATTRIBUTE, Context
from resilio._operation import is_async_handler
from resilio.classify import Classification, ErrorKind, default_classifier
from resilio.telemetry._log import log

if TYPE_CHECKING:
    from types import FrameType

    from resilio.classify import Classifier
    from resilio.outbox._model import OutboxItem
    from resilio.outbox._outbox import Outbox

__all__ = ["Decision", "DrainReport", "Drainer", "decide", "exponential_backoff"]

"""Context attribute set to ``True`` while an item is replayed (a fallback must not re-enqueue)."""


def exponential_backoff(attempt: int, *, base: float = 1.0, cap: float = 600.0) -> float:
    """Return the default delay before replaying an item again: 1 s, 2 s, 4 s ... up to 10 min."""
    return float(min(cap, base * 2 ** max(attempt - 1, 0)))


@frozen
class Decision:
    """What to do with an item after a failed replay.

    Attributes:
        action: ``"retry"`` or ``"dead"``.
        next_run_at: For ``"retry"``, when to run it again.
        reason: The reason to record.
    """

    action: str
    next_run_at: float | None
    reason: str | None


def decide(
    item: OutboxItem,
    classification: Classification,
    now: float,
    *,
    max_attempts: int | None,
    max_age: float | None,
    backoff: Callable[[int], float],
) -> Decision:
    """Decide the fate of an item whose replay failed (pure function).

    PERMANENT failures are dead at once; other failures are retried after the backoff (at least
    the service's ``retry_after``) unless the item has used its attempts or would run after its
    maximum age.
    """
    reason = classification.reason
    if classification.kind is ErrorKind.PERMANENT:
        return Decision("dead", None, reason)
    if max_attempts is not None and item.attempts >= max_attempts:
        return Decision("dead", None, "attempts exhausted" + (f": {reason}" if reason else ""))
    delay = max(backoff(item.attempts), classification.retry_after or 0.0)
    next_run_at = now + delay
    if max_age is not None and next_run_at - item.created_at > max_age:
        return Decision("dead", None, "max age exceeded" + (f": {reason}" if reason else ""))
    return Decision("retry", next_run_at, reason)


@define
class DrainReport:
    """What one :meth:`Drainer.drain_once` did.

    Attributes:
        delivered: Items whose handler succeeded.
        retried: Items rescheduled after a failure.
        dead: Items dead-lettered.
        released: Items given back unrun (shutdown).
        lost: Items whose lease had passed to another drainer before the result was recorded.
        skipped: Items given back unrun because this drainer cannot run them: its registry does
            not know their operation or pipeline, or the operation has no handler. They stay
            pending, their attempts unchanged, and are not due again for the drainer's
            ``lease`` seconds (another drainer, or this one after a deploy, may know them).
        skipped_operations: For each operation skipped, why (``"unknown operation 'x'"``).
    """

    delivered: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    lost: int = 0
    skipped: int = 0
    skipped_operations: dict[str, str] = field(factory=dict)

    @property
    def processed(self) -> int:
        """Items that were run (delivered, retried or dead)."""
        return self.delivered + self.retried + self.dead


class _UnrunnableError(Exception):
    """An item cannot be replayed here: its operation, handler or pipeline is missing."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _GraceExpired(BaseException):
    """Raised in the draining thread when the shutdown grace period is over."""


class Drainer:
    """Replays an outbox's items through ``registry``'s operations.

    Args:
        outbox: The outbox to drain.
        registry: Anything with ``operation(name)`` (returning an object with ``handler``,
            ``idempotent`` and ``pipeline``, a pipeline name or ``None``) and ``pipeline(name)``.
        clock: Source of time (wall clock for item times, monotonic for lease renewal).
        lease: Seconds an item stays leased; longer than any handler call should take. Leases of
            a batch are renewed while it is worked through. Also how long an item this drainer
            cannot run (unknown operation or pipeline, no handler) waits before it is due again.
        max_attempts: Attempts after which a failing item is dead (``None``: no limit).
        max_age: Seconds after enqueueing after which a failing item is dead (``None``: no limit).
        backoff: ``attempt -> seconds`` before the next replay (default 1, 2, 4 ... 600 s).
        batch: How many items to lease at a time.
        classifier: Classifies replay failures before the pipeline's classifiers do.
        keep_done: Seconds to keep delivered items before :meth:`run` purges them
            (``None``: keep them).
    """

    def __init__(
        self,
        outbox: Outbox,
        registry: Any,
        *,
        clock: Clock | None = None,
        lease: float = 30.0,
        max_attempts: int | None = 20,
        max_age: float | None = 7 * 24 * 3600.0,
        backoff: Callable[[int], float] | None = None,
        batch: int = 20,
        classifier: Classifier | None = None,
        keep_done: float | None = 3600.0,
    ) -> None:
        if lease <= 0:
            raise ValueError(f"lease must be > 0 seconds, got {lease!r}")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 or None, got {max_attempts!r}")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch!r}")
        self.outbox = outbox
        self.registry = registry
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self.lease = float(lease)
        self.max_attempts = max_attempts
        self.max_age = max_age
        self.backoff: Callable[[int], float] = backoff or exponential_backoff
        self.batch = batch
        self.classifier = classifier
        self.keep_done = keep_done
        self._stop = threading.Event()
        self._grace = 10.0
        self._busy = False
        self._previous_handlers: dict[int, Any] = {}
        self._external: threading.Event | None = None

    # -- one item ----------------------------------------------------------------------------

    def _resolve(self, item: OutboxItem) -> tuple[Any, Any, Context]:
        try:
            op = self.registry.operation(item.operation)
        except LookupError:
            raise _UnrunnableError(f"unknown operation {item.operation!r}") from None
        if getattr(op, "handler", None) is None:
            raise _UnrunnableError(f"operation {item.operation!r} has no handler")
        pipeline_name = getattr(op, "pipeline_name", None) or getattr(op, "pipeline", None)
        try:
            pipeline = self.registry.pipeline(pipeline_name) if pipeline_name else None
        except LookupError:
            raise _UnrunnableError(f"unknown pipeline {pipeline_name!r}") from None
        ctx = Context(
            operation=item.operation,
            idempotency_key=item.idempotency_key,
            idempotent=getattr(op, "idempotent", None),
            attributes={REPLAY_ATTRIBUTE: True},
            payload=item.payload,
        )
        return op, pipeline, ctx

    def _classify(self, pipeline: Any, error: BaseException, ctx: Context) -> Classification:
        if self.classifier is not None:
            c = self.classifier(error, ctx)
            if c is not None:
                return c
        classify = getattr(pipeline, "classify", None)
        if classify is not None:
            result: Classification = classify(error, ctx)
            return result
        return default_classifier(error, ctx)

    def _record(
        self,
        item: OutboxItem,
        error: BaseException | None,
        c: Classification | None,
        report: DrainReport,
    ) -> None:
        backend = self.outbox.backend
        now = self.clock.time()
        if error is None:
            if backend.complete(item, now):
                report.delivered += 1
            else:
                report.lost += 1
            return
        assert c is not None
        d = decide(
            item,
            c,
            now,
            max_attempts=self.max_attempts,
            max_age=self.max_age,
            backoff=self.backoff,
        )
        if d.action == "dead":
            ok = backend.bury(item, now, c.kind.value, d.reason)
            report.dead += ok
        else:
            assert d.next_run_at is not None
            ok = backend.reschedule(item, now, d.next_run_at, c.kind.value, d.reason)
            report.retried += ok
        report.lost += not ok

    def _skip(self, item: OutboxItem, error: _UnrunnableError, report: DrainReport) -> None:
        """Give back an item this drainer cannot run, to be due again in ``lease`` seconds.

        It stays pending with its attempts unchanged; the first item of each operation in a
        pass logs a warning (names only).
        """
        now = self.clock.time()
        if self.outbox.backend.release(item, now, now + self.lease):
            report.skipped += 1
        else:
            report.lost += 1
        if item.operation not in report.skipped_operations:
            report.skipped_operations[item.operation] = error.reason
            log(
                "warning",
                "resilio.outbox.skipped",
                outbox=self.outbox.name,
                operation=item.operation,
                reason=error.reason,
                retry_in=self.lease,
            )

    def _expired(self, item: OutboxItem) -> bool:
        return self.max_age is not None and self.clock.time() - item.created_at > self.max_age

    def _run_item(self, item: OutboxItem, report: DrainReport) -> None:
        if self._expired(item):
            report.dead += self.outbox.backend.bury(
                item,
                self.clock.time(),
                item.error_kind or ErrorKind.TRANSIENT.value,
                "max age exceeded",
            )
            return
        try:
            op, pipeline, ctx = self._resolve(item)
        except _UnrunnableError as exc:
            self._skip(item, exc, report)
            return
        try:
            # Only while the handler runs may a signal interrupt (raise _GraceExpired): never
            # while an outcome is being recorded or the item given back.
            self._busy = True
            try:
                if pipeline is None:
                    result = op.handler(item.payload)
                    if inspect.isawaitable(result):
                        result = asyncio.run(_await(result))
                elif is_async_handler(op.handler):
                    asyncio.run(pipeline.execute_async(op.handler, item.payload, context=ctx))
                else:
                    pipeline.execute(op.handler, item.payload, context=ctx)
            finally:
                self._busy = False
        except Exception as exc:
            self._record(item, exc, self._classify(pipeline, exc, ctx), report)
            return
        except BaseException:
            self.outbox.backend.release(item, self.clock.time())
            raise
        self._record(item, None, None, report)

    async def _run_item_async(self, item: OutboxItem, report: DrainReport) -> None:
        backend = self.outbox.backend
        if self._expired(item):
            report.dead += await asyncio.to_thread(
                backend.bury,
                item,
                self.clock.time(),
                item.error_kind or ErrorKind.TRANSIENT.value,
                "max age exceeded",
            )
            return
        try:
            op, pipeline, ctx = self._resolve(item)
        except _UnrunnableError as exc:
            await asyncio.to_thread(self._skip, item, exc, report)
            return
        thread: asyncio.Future[Any] | None = None
        try:
            if is_async_handler(op.handler):
                if pipeline is None:
                    await op.handler(item.payload)
                else:
                    await pipeline.execute_async(op.handler, item.payload, context=ctx)
            else:  # a plain handler runs in a worker thread: the event loop never blocks
                if pipeline is None:
                    call = functools.partial(op.handler, item.payload)
                else:
                    call = functools.partial(
                        pipeline.execute, op.handler, item.payload, context=ctx
                    )
                thread = asyncio.ensure_future(asyncio.to_thread(call))
                thread.add_done_callback(_retrieve)
                result = await asyncio.shield(thread)
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:
            c = self._classify(pipeline, exc, ctx)
            await asyncio.to_thread(self._record, item, exc, c, report)
            return
        except BaseException:
            if thread is not None and not thread.done():
                # Cancelled while the handler still runs in its thread, which cannot be
                # stopped: the item stays leased, so no drainer replays it meanwhile; when the
                # lease expires it is replayed (with the same idempotency key).
                raise
            await asyncio.shield(asyncio.to_thread(backend.release, item, self.clock.time()))
            raise
        await asyncio.to_thread(self._record, item, None, None, report)

    # -- batches -----------------------------------------------------------------------------

    @staticmethod
    def _fresh(
        leased: list[OutboxItem], seen: set[str], held: dict[str, OutboxItem]
    ) -> list[OutboxItem] | None:
        """Return the leased items not yet run in this pass; ``None`` when the pass is over.

        An item that failed and became due again at once (a zero backoff, or a clock advanced
        by the pipeline's own waits) runs at most once per pass, so the report counts items,
        not attempts. Such an item is kept in ``held`` (still leased, so the next lease skips
        it) and given back unrun when the pass ends.
        """
        if not leased:
            return None
        fresh = [i for i in leased if i.item_id not in seen]
        again = [i for i in leased if i.item_id in seen]
        stale = all(i.item_id in held for i in again)
        held.update((i.item_id, i) for i in again)
        if not fresh and stale:  # only items whose hold expired came back: stop
            return None
        seen.update(i.item_id for i in fresh)
        return fresh

    def drain_once(self, limit: int = 100) -> DrainReport:
        """Lease and replay up to ``limit`` due items, one after another, each at most once.

        An item that fails and is due again before the pass ends waits for the next call, so
        the report counts items (three failing items: ``retried == 3``, whatever ``limit``).

        Returns:
            What was done.
        """
        report = DrainReport()
        held: dict[str, OutboxItem] = {}
        try:
            self._drain_pass(limit, report, held)
        finally:
            for item in held.values():
                self.outbox.backend.release(item, self.clock.time())
        return report

    def _drain_pass(self, limit: int, report: DrainReport, held: dict[str, OutboxItem]) -> None:
        backend = self.outbox.backend
        seen: set[str] = set()
        while limit > 0 and not self._stop.is_set():
            leased_at = self.clock.monotonic()
            leased = backend.lease(min(limit, self.batch), self.clock.time(), self.lease)
            items = self._fresh(leased, seen, held)
            if items is None:
                return
            limit -= len(items)
            for i, item in enumerate(items):
                if self._stop.is_set():
                    for rest in items[i:]:
                        report.released += backend.release(rest, self.clock.time())
                    return
                if self.clock.monotonic() - leased_at > self.lease / 2:
                    backend.renew(items[i:], self.clock.time(), self.lease)
                    leased_at = self.clock.monotonic()
                try:
                    self._run_item(item, report)
                except BaseException:
                    for rest in items[i + 1 :]:
                        backend.release(rest, self.clock.time())
                    raise

    async def drain_once_async(self, limit: int = 100) -> DrainReport:
        """Like :meth:`drain_once` on the event loop: storage calls run in worker threads.

        An ``async def`` handler is awaited (through its pipeline's ``execute_async``); a plain
        handler runs through the pipeline's ``execute`` in a worker thread, so the event loop
        never blocks.

        Returns:
            What was done.
        """
        report = DrainReport()
        held: dict[str, OutboxItem] = {}
        try:
            await self._drain_pass_async(limit, report, held)
        finally:
            for item in held.values():
                await asyncio.shield(
                    asyncio.to_thread(self.outbox.backend.release, item, self.clock.time())
                )
        return report

    async def _drain_pass_async(
        self, limit: int, report: DrainReport, held: dict[str, OutboxItem]
    ) -> None:
        backend = self.outbox.backend
        seen: set[str] = set()
        while limit > 0 and not self._stop.is_set():
            leased_at = self.clock.monotonic()
            leased = await asyncio.to_thread(
                backend.lease, min(limit, self.batch), self.clock.time(), self.lease
            )
            items = self._fresh(leased, seen, held)
            if items is None:
                return
            limit -= len(items)
            for i, item in enumerate(items):
                if self._stop.is_set():
                    for rest in items[i:]:
                        report.released += await asyncio.to_thread(
                            backend.release, rest, self.clock.time()
                        )
                    return
                if self.clock.monotonic() - leased_at > self.lease / 2:
                    await asyncio.to_thread(backend.renew, items[i:], self.clock.time(), self.lease)
                    leased_at = self.clock.monotonic()
                try:
                    await self._run_item_async(item, report)
                except BaseException:
                    for rest in items[i + 1 :]:
                        backend.release(rest, self.clock.time())
                    raise

    # -- running until stopped ---------------------------------------------------------------

    def _purge_done(self) -> None:
        if self.keep_done is not None:
            try:
                self.outbox.purge("done", older_than=self.keep_done)
            except Exception:
                return

    def run(self, stop_event: threading.Event | None = None, *, poll_interval: float = 1.0) -> None:
        """Drain until ``stop_event`` is set or :meth:`shutdown` is called.

        Args:
            stop_event: Set it to stop; the item in flight finishes, leased ones are given back.
            poll_interval: Seconds to wait when no item is due.
        """
        stop = stop_event if stop_event is not None else self._stop
        self._external = stop
        rounds = 0
        try:
            while not stop.is_set() and not self._stop.is_set():
                report = self.drain_once(self.batch)
                rounds += 1
                if rounds % 100 == 1:
                    self._purge_done()
                if report.processed == 0 and report.lost == 0:
                    stop.wait(poll_interval)
        except _GraceExpired:
            return

    async def run_async(
        self, stop_event: asyncio.Event | None = None, *, poll_interval: float = 1.0
    ) -> None:
        """Drain on the event loop until ``stop_event`` is set or :meth:`shutdown` is called.

        When stopped, the item in flight gets the grace period of :meth:`shutdown` (default
        10 s) to finish; then it is cancelled and given back to the outbox. A plain (sync)
        handler runs in a worker thread, which cannot be cancelled: its item stays leased
        instead, so no drainer replays it while the thread still runs, and is replayed once the
        lease expires.

        Args:
            stop_event: Set it to stop.
            poll_interval: Seconds to wait when no item is due.
        """
        stop = stop_event if stop_event is not None else asyncio.Event()
        rounds = 0
        while not stop.is_set() and not self._stop.is_set():
            work = asyncio.ensure_future(self.drain_once_async(self.batch))
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if work not in done:
                self._stop.set()
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(work, self._grace)
                stopper.cancel()
                return
            stopper.cancel()
            report = work.result()
            rounds += 1
            if rounds % 100 == 1:
                await asyncio.to_thread(self._purge_done)
            if report.processed == 0 and report.lost == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_interval)

    def shutdown(self, grace: float = 10.0) -> None:
        """Stop taking items; the one in flight may finish within ``grace`` seconds.

        Items leased but not started are given back at once. Every state change is committed as
        it happens, so nothing is left to flush.
        """
        self._grace = grace
        self._stop.set()
        if self._external is not None:
            self._external.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`shutdown` was called (or a stop signal received)."""
        return self._stop.is_set()

    def install_signal_handlers(self, grace: float = 10.0) -> None:
        """Make SIGTERM and SIGINT shut the drainer down gracefully (call from the main thread).

        The first signal stops taking items; the item in flight has ``grace`` seconds to finish,
        after which (or at a second signal) it is interrupted and given back to the outbox, its
        attempt not counted, and :meth:`run` returns. The grace is timed with ``SIGALRM``.
        """

        def interrupt(signum: int, frame: FrameType | None) -> None:
            if self._busy:  # a handler is running: cut it short
                raise _GraceExpired

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self._stop.is_set():  # a second signal
                interrupt(signum, frame)
                return
            self.shutdown(grace)
            # Armed even when no handler runs right now: one may be starting.
            signal.signal(signal.SIGALRM, interrupt)
            signal.setitimer(signal.ITIMER_REAL, max(grace, 0.001))

        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[sig] = signal.signal(sig, on_signal)

    def __repr__(self) -> str:
        return f"Drainer(outbox={self.outbox!r}, lease={self.lease!r})"


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A handler thread that outlived its cancelled drain pass: nobody awaits its outcome.
    if not future.cancelled():
        future.exception()
