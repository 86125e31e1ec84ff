"""Deliver a JSONL file of operations, resumably: the engine behind ``resilio-customerio send``.

:func:`send_file` reads the input line by line, records each line in a :class:`Journal` (with
the event ULIDs it assigns, committed before the line is sent), calls the client (one call per
line, or v2 batches with ``batch=N``) from a pool of worker threads, and records each outcome.
Run again on the same input, it skips finished lines and resends lines that were in flight with
the ULIDs they were first given, so Customer.io drops anything it already accepted.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from attrs import define, field, frozen

from resilio._clock import SYSTEM_CLOCK, Clock
from resilio_customerio._journal import FINAL, Journal, JournalMismatchError, digest
from resilio_customerio._jsonl import (
    MAX_V2_BATCH_BYTES,
    MAX_V2_OP_BYTES,
    InvalidLineError,
    Line,
    _size,
    new_ulid,
    parse_line,
)

__all__ = ["Pace", "Report", "SendOptions", "SendStats", "describe_error", "send_file"]

_COMMIT_EVERY = 0.25  # seconds between commits of finished lines


@frozen(kw_only=True)
class SendOptions:
    """How :func:`send_file` sends.

    Attributes:
        concurrency: Worker threads calling the client.
        batch: Operations per v2 batch request; 0 sends one request per line.
        retry_failed: Send dead-lettered lines of a previous run again.
        resend_unknown: Send again transactional lines whose outcome is unknown.
        rate: Requests per second handed to the workers at most, to model a stream of events
            arriving over time (0: as fast as the workers take them).
    """

    concurrency: int = 1
    batch: int = 0
    retry_failed: bool = False
    resend_unknown: bool = False
    rate: float = 0.0


@define
class SendStats:
    """Live counters of a run, read by the progress display (updated by one thread).

    Attributes:
        total: Lines in the input (non-blank lines are counted as they are read).
        done: Lines finished so far, including those finished by earlier runs.
        counts: Lines per final status.
        retries: Retries scheduled by the pipelines.
        breaker: The latest circuit breaker state seen (``closed``, ``open``, ``half-open``).
        started: Monotonic time the run started.
        sent_this_run: Lines delivered by this run (for the rate).
    """

    total: int = 0
    done: int = 0
    counts: Counter[str] = field(factory=Counter)
    retries: int = 0
    breaker: str = "closed"
    started: float = field(factory=time.monotonic)
    sent_this_run: int = 0

    def listener(self, event: Any) -> None:
        """Count a pipeline event (retries, breaker transitions)."""
        name = getattr(event, "name", "")
        if name == "retry.scheduled":
            self.retries += 1
        elif name == "circuit.opened":
            self.breaker = "open"
        elif name == "circuit.half_opened":
            self.breaker = "half-open"
        elif name == "circuit.closed":
            self.breaker = "closed"


@frozen(kw_only=True)
class Report:
    """The outcome of every line of an input, over all runs so far.

    Attributes:
        lines: Non-blank lines in the input.
        counts: Lines per status (``sent``, ``deduplicated``, ``queued``, ``dead``, ``invalid``,
            ``unknown``, ``pending``).
        details: For every line not sent: ``(line number, status, detail)``, by line number.
        sent_this_run: Lines delivered by this run.
        aborted: Why the run stopped early (e.g. rejected credentials), or ``None``.
    """

    lines: int
    counts: dict[str, int]
    details: list[tuple[int, str, str]]
    sent_this_run: int = 0
    aborted: str | None = None

    @property
    def complete(self) -> bool:
        """Whether every line reached a final status and none failed."""
        bad = ("dead", "unknown", "pending")
        return self.aborted is None and not any(self.counts.get(s) for s in bad)

    def lines_with(self, status: str) -> list[int]:
        """Return the line numbers with one status (not for ``sent``)."""
        return [n for n, s, _ in self.details if s == status]


def describe_error(error: BaseException) -> tuple[str, bool]:
    """Return a payload-free description of a failed call, and whether it is an auth failure.

    Args:
        error: What the client raised.

    Returns:
        ``(description, is_auth)``.
    """
    from customerio import CustomerIOException

    from resilio.errors import ResilioError
    from resilio_customerio.errors import AuthenticationFailed, CustomerIOError

    if isinstance(error, CustomerIOException) and not isinstance(error, CustomerIOError):
        from resilio_customerio.classify import translate

        error = translate(error, "customerio")
    if isinstance(error, CustomerIOError):
        reason = f"{error.short}: {error.reason}" if error.short != error.reason else error.reason
        return reason, isinstance(error, AuthenticationFailed)
    if isinstance(error, ResilioError):
        return f"{type(error).__name__}: {error}", False
    return type(error).__name__, False


def _is_queued(result: Any) -> bool:
    try:
        from resilio.outbox import Queued
    except ImportError:  # pragma: no cover - outbox not installed
        return type(result).__name__ == "Queued"
    return isinstance(result, Queued)


def _batch_outcomes(result: Any, count: int) -> list[tuple[str, str | None]]:
    """Return ``(status, detail)`` per operation of a v2 batch answer.

    Understands the adapter's ``BatchResult`` (per-item results, possibly queued) and the bare
    client's ``requests.Response`` (a 207 body lists the refused operations).
    """
    items = getattr(result, "items", None)
    if isinstance(items, tuple | list):
        out: list[tuple[str, str | None]] = [("sent", None)] * count
        for item in items:
            index = getattr(item, "index", None)
            if not isinstance(index, int) or not 0 <= index < count:
                continue
            if getattr(item, "queued", False):
                out[index] = ("queued", None)
            elif not getattr(item, "ok", True):
                error = getattr(item, "error", None)
                if error is not None:
                    out[index] = ("dead", describe_error(error)[0])
                else:
                    why = " ".join(x for x in (item.reason, item.field) if x) or "invalid"
                    out[index] = ("dead", f"rejected by Customer.io: {why}")
        return out
    out = [("sent", None)] * count
    if getattr(result, "status_code", None) == 207:
        try:
            errors = result.json().get("errors") or ()
        except (ValueError, AttributeError):
            errors = ()
        for entry in errors:
            index = entry.get("batch_index") if isinstance(entry, dict) else None
            if isinstance(index, int) and 0 <= index < count:
                why = " ".join(str(entry[k]) for k in ("reason", "field") if entry.get(k))
                out[index] = ("dead", f"rejected by Customer.io: {why or 'invalid'}")
    return out


@define
class _Work:
    """Lines sent in one request (one line, or several in a v2 batch)."""

    lines: list[Line]
    ids: list[list[str]]
    v2: bool = False


class _Run:
    def __init__(
        self,
        path: Path,
        client: Any,
        journal: Journal,
        options: SendOptions,
        stats: SendStats,
    ) -> None:
        self.path, self.client, self.journal = path, client, journal
        self.options, self.stats = options, stats
        self.rows = {row.line: row for row in journal.rows()}
        self.in_flight_before = {n for n, r in self.rows.items() if r.status == "pending"}
        self.seen_ids: dict[str, int] = {}
        for row in self.rows.values():
            if row.status not in ("invalid", "deduplicated"):
                for event_id in row.event_ids:
                    self.seen_ids.setdefault(event_id, row.line)
        self.aborted: str | None = None
        self.last_commit = time.monotonic()

    # -- reading ----------------------------------------------------------------------------

    def _raw_lines(self) -> Iterator[tuple[int, bytes]]:
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                yield number, raw.rstrip(b"\r\n")

    def prepare(self) -> Iterator[tuple[Line, list[str]]]:
        """Journal each line and yield those to send, with their ULIDs (already committed)."""
        for number, raw in self._raw_lines():
            if self.aborted:
                return
            dig = digest(raw)
            row = self.rows.get(number)
            if row is not None and row.digest != dig:
                raise JournalMismatchError(
                    f"line {number} of {self.path.name} changed since {self.journal.path.name} "
                    "was written; restore the file, or start over with --restart"
                )
            if row is not None and row.status in FINAL:
                self._finish_counted(row.status)
                continue
            try:
                line = parse_line(raw, number)
            except InvalidLineError as exc:
                self.journal.record(number, dig, "invalid", detail=str(exc))
                self._finish_counted("invalid")
                continue
            if line is None:
                continue
            if row is not None:  # in flight when the last run stopped, or reset by the user
                if not line.spec.idempotent and number in self.in_flight_before:
                    detail = "was in flight when a previous run stopped; not sent again"
                    self.journal.update(number, "unknown", detail)
                    self._finish_counted("unknown")
                    continue
                yield line, list(row.event_ids)
                continue
            ids = self._assign(line, dig)
            if ids is not None:
                yield line, ids

    def _assign(self, line: Line, dig: str) -> list[str] | None:
        ids: list[str] = []
        if line.spec.event:
            given = line.event_id
            if given is not None:
                first = self.seen_ids.get(given)
                if first is not None:
                    detail = f"same event_id as line {first}"
                    self.journal.record(line.number, dig, "deduplicated", [given], detail)
                    self._finish_counted("deduplicated")
                    return None
            ids = [given or new_ulid()]
        elif line.spec.name == "batch":
            ids = [new_ulid() for _ in range(line.batch_events_missing_id())]
        for event_id in ids:
            self.seen_ids[event_id] = line.number
        self.journal.record(line.number, dig, "pending", ids)
        return ids

    def _finish_counted(self, status: str) -> None:
        self.stats.counts[status] += 1
        self.stats.done += 1

    # -- grouping -----------------------------------------------------------------------------

    def work(self) -> Iterator[_Work]:
        """Group prepared lines into requests; commit their ULIDs before yielding."""
        size = self.options.batch
        group: list[Line] = []
        group_ids: list[list[str]] = []
        group_bytes = 0
        for line, ids in self.prepare():
            op = line.v2(ids[0] if ids else None) if size > 0 else None
            op_bytes = _size(op) if op is not None else 0
            if op is None or op_bytes > MAX_V2_OP_BYTES:
                self.journal.commit()
                yield _Work([line], [ids])
                continue
            if group and (len(group) >= size or group_bytes + op_bytes > MAX_V2_BATCH_BYTES - 64):
                self.journal.commit()
                yield _Work(group, group_ids, v2=True)
                group, group_ids, group_bytes = [], [], 0
            group.append(line)
            group_ids.append(ids)
            group_bytes += op_bytes + 1
        if group:
            self.journal.commit()
            yield _Work(group, group_ids, v2=True)
        self.journal.commit()

    # -- sending ------------------------------------------------------------------------------

    def call(self, work: _Work) -> list[tuple[str, str | None]]:
        """Send one request; return ``(status, detail)`` per line (runs in a worker thread)."""
        if not work.v2:
            method, args, kwargs = work.lines[0].call(work.ids[0])
            return [self._outcome(method, args, kwargs)]
        ops = [
            line.v2(ids[0] if ids else None) for line, ids in zip(work.lines, work.ids, strict=True)
        ]
        try:
            result = self.client.batch(ops)
        except Exception as exc:  # every failure becomes a line status
            return [self._failure(exc)] * len(work.lines)
        if _is_queued(result):
            return [("queued", None)] * len(work.lines)
        return _batch_outcomes(result, len(ops))

    def _outcome(self, method: str, args: Any, kwargs: Any) -> tuple[str, str | None]:
        try:
            result = getattr(self.client, method)(*args, **kwargs)
        except Exception as exc:  # every failure becomes a line status
            return self._failure(exc)
        if _is_queued(result):
            return "queued", f"outbox item {result.item_id}"
        if method != "batch":
            return "sent", None
        count = len(args[0])
        outcomes = _batch_outcomes(result, count)
        failed = [i for i, (status, _) in enumerate(outcomes) if status == "dead"]
        if failed:
            listed = ", ".join(str(i) for i in failed[:10])
            return "dead", f"operations [{listed}] rejected: {outcomes[failed[0]][1]}"
        if any(status == "queued" for status, _ in outcomes):
            return "queued", None
        return "sent", None

    def _failure(self, exc: Exception) -> tuple[str, str | None]:
        detail, auth = describe_error(exc)
        return ("auth" if auth else "dead"), detail

    def finish(self, work: _Work, outcomes: list[tuple[str, str | None]]) -> None:
        """Record a request's outcome for each of its lines (main thread)."""
        changes: list[tuple[int, str, str | None]] = []
        for line, (status, detail) in zip(work.lines, outcomes, strict=True):
            if status == "auth":
                if self.aborted is None:
                    self.aborted = f"Customer.io refused the credentials ({detail})"
                if line.spec.idempotent:
                    continue  # stays pending: resent with the same ULIDs after the fix
                status = "dead"
            changes.append((line.number, status, detail))
            self._finish_counted(status)
            if status == "sent":
                self.stats.sent_this_run += 1
        self.journal.update_many(changes)
        now = time.monotonic()
        if now - self.last_commit >= _COMMIT_EVERY:
            self.journal.commit()
            self.last_commit = now


class Pace:
    """Spaces hand-overs ``1 / rate`` seconds apart on average (no wait when ``rate`` is 0).

    A late hand-over is caught up on, but by at most one second's worth of requests.

    Args:
        rate: Hand-overs per second; 0 for no pacing.
        clock: Source of time and sleeps.
    """

    def __init__(self, rate: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock = clock
        self.next = clock.monotonic()

    def wait(self) -> None:
        """Return when the next hand-over is due."""
        if not self.interval:
            return
        delay = self.next - self.clock.monotonic()
        if delay > 0:
            self.clock.sleep(delay)
        self.next = max(self.next, self.clock.monotonic() - 1.0) + self.interval


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                count += 1
    return count


def send_file(
    path: Path,
    client: Any,
    journal: Journal,
    options: SendOptions | None = None,
    stats: SendStats | None = None,
) -> Report:
    """Send every operation of a JSONL file through ``client``, resuming from ``journal``.

    Args:
        path: The JSONL input.
        client: An object with the ``customerio`` methods (``identify``, ``track``, ``batch``,
            ``send_email``...): a :class:`~resilio_customerio.ResilientCustomerIO` normally.
        journal: The run's journal (see :func:`~resilio_customerio._journal.journal_path_for`).
        options: How to send.
        stats: Counters to update as the run goes (for a progress display).

    Returns:
        The report over every line of the input, this run and earlier ones.

    Raises:
        JournalMismatchError: If the input changed since the journal was written.
    """
    options = options or SendOptions()
    stats = stats if stats is not None else SendStats()
    stats.total = _count_lines(path)
    if options.retry_failed:
        journal.reset_status("dead")
    if options.resend_unknown:
        journal.reset_status("unknown")
    journal.commit()
    run = _Run(path, client, journal, options, stats)
    window = max(1, options.concurrency) * 2
    pace = Pace(options.rate)
    with cf.ThreadPoolExecutor(max(1, options.concurrency), "cio-send") as pool:
        pending: dict[cf.Future[list[tuple[str, str | None]]], _Work] = {}
        for work in run.work():
            pace.wait()
            pending[pool.submit(run.call, work)] = work
            while len(pending) >= window:
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    run.finish(pending.pop(future), future.result())
            if run.aborted:
                break
        for future in cf.as_completed(list(pending)):
            run.finish(pending.pop(future), future.result())
    journal.commit()
    return build_report(journal, stats.total, stats.sent_this_run, run.aborted)


def settle_queued(journal: Journal, outbox: Any) -> int:
    """Mark queued lines whose outbox item was delivered as sent (or dead-lettered as dead).

    Args:
        journal: The run's journal.
        outbox: The :class:`resilio.Outbox` the lines were queued in.

    Returns:
        How many lines changed status.
    """
    waiting: set[str] = set()
    for state in ("pending", "leased"):
        waiting.update(item.item_id for item in outbox.items(state, limit=1_000_000))
    dead = {item.item_id: item for item in outbox.items("dead", limit=1_000_000)}
    changed = 0
    for row in journal.rows():
        if row.status != "queued" or not (row.detail or "").startswith("outbox item "):
            continue
        item_id = (row.detail or "")[len("outbox item ") :]
        if item_id in dead:
            reason = dead[item_id].error_reason or dead[item_id].error_kind or "failed"
            journal.update(row.line, "dead", f"dead-lettered by the outbox: {reason}")
        elif item_id not in waiting:
            journal.update(row.line, "sent", "delivered from the outbox")
        else:
            continue
        changed += 1
    journal.commit()
    return changed


def build_report(
    journal: Journal, lines: int, sent_this_run: int = 0, aborted: str | None = None
) -> Report:
    """Summarise the journal of an input.

    Args:
        journal: The journal.
        lines: Non-blank lines in the input.
        sent_this_run: Lines delivered by the current run.
        aborted: Why the run stopped early, if it did.

    Returns:
        The report.
    """
    counts: Counter[str] = Counter()
    details: list[tuple[int, str, str]] = []
    for row in journal.rows():
        counts[row.status] += 1
        if row.status != "sent":
            details.append((row.line, row.status, row.detail or ""))
    return Report(
        lines=lines,
        counts=dict(counts),
        details=details,
        sent_this_run=sent_this_run,
        aborted=aborted,
    )
