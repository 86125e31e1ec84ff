"""v2 batches: splitting under the size limits, per-item results, and the buffered mode.

``/api/v2/batch`` takes up to 500 KB of operations, each at most 32 KB, and answers 207 with
the index, reason and field of each operation it refused (the others are applied). The
``customerio`` client treats 207 as success; :func:`parse_errors` reads the body so a
:class:`BatchResult` says which operations succeeded and which failed, and why.

:class:`BatchBuffer` is the opt-in buffered mode: identify and track calls become v2 operations
that a background thread sends in batches, bounded by count, bytes and age, and flushed on
``close()``, at interpreter exit and on shutdown: :func:`install_shutdown_handlers` makes
SIGTERM (whose default action kills the process without running exit handlers) end the program
gracefully, so the buffers are flushed before it exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from attrs import frozen

from resilio.classify import ErrorKind
from resilio_customerio.payload import MAX_BATCH_BYTES, MAX_V2_OP_BYTES, check_size, size

if TYPE_CHECKING:
    from types import FrameType

__all__ = [
    "BatchBuffer",
    "BatchItemResult",
    "BatchResult",
    "install_shutdown_handlers",
    "parse_errors",
    "split",
]

_ENVELOPE = len('{"batch": []}')
_SEPARATOR = len(", ")


@frozen(kw_only=True)
class BatchItemResult:
    """The outcome of one operation of a batch.

    Attributes:
        index: The operation's position in the list given to ``batch()``.
        ok: Whether Customer.io accepted it (or it was queued, see ``queued``).
        queued: Whether it was put in the outbox to be sent later.
        reason: Customer.io's (or the adapter's) short reason for a failure.
        field: The offending field, when Customer.io named one.
        error: The error for operations whose whole request failed.
        kind: How a failure is classified: ``PERMANENT`` for an operation Customer.io refused
            in a 207 answer (sending it again changes nothing), else the request's error's kind;
            ``None`` for an accepted or queued operation.
    """

    index: int
    ok: bool
    queued: bool = False
    reason: str | None = None
    field: str | None = None
    error: BaseException | None = None
    kind: ErrorKind | None = None


@frozen
class BatchResult:
    """Per-operation results of a ``batch()`` call, in the order the operations were given.

    Attributes:
        items: One result per operation.
        requests: How many ``/api/v2/batch`` requests were made (or queued).
    """

    items: tuple[BatchItemResult, ...]
    requests: int = 1

    @property
    def ok(self) -> bool:
        """Whether every operation was accepted (or queued)."""
        return all(item.ok for item in self.items)

    @property
    def succeeded(self) -> list[int]:
        """Indexes of the accepted operations."""
        return [i.index for i in self.items if i.ok and not i.queued]

    @property
    def failed(self) -> list[BatchItemResult]:
        """Results of the refused operations."""
        return [i for i in self.items if not i.ok]

    @property
    def queued(self) -> list[int]:
        """Indexes of operations put in the outbox."""
        return [i.index for i in self.items if i.queued]


def split(
    operations: Sequence[dict[str, Any]],
    operation: str = "customerio.batch",
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[list[int]]:
    """Group operations into batches under the request size limit, keeping their order.

    Args:
        operations: Normalised v2 operations.
        operation: The operation's name, for errors.
        max_bytes: The limit of one request (500 KB by default).

    Returns:
        Lists of indexes into ``operations``, one list per request.

    Raises:
        PayloadTooLarge: If one operation is over 32 KB (nothing is sent).
    """
    sizes = [check_size(op, MAX_V2_OP_BYTES, "v2 operations", operation) for op in operations]
    groups: list[list[int]] = []
    current: list[int] = []
    used = _ENVELOPE
    for index, n in enumerate(sizes):
        extra = n + (_SEPARATOR if current else 0)
        if current and used + extra > max_bytes:
            groups.append(current)
            current, used, extra = [], _ENVELOPE, n
        current.append(index)
        used += extra
    if current:
        groups.append(current)
    return groups


def parse_errors(body: Any) -> dict[int, tuple[str | None, str | None]]:
    """Read a 207 body's per-operation errors.

    Args:
        body: The decoded JSON body (``{"errors": [{"batch_index", "reason", "field"}]}``).

    Returns:
        ``batch_index -> (reason, field)``; empty when the body names none.
    """
    errors = body.get("errors") if isinstance(body, dict) else None
    found: dict[int, tuple[str | None, str | None]] = {}
    if not isinstance(errors, list):
        return found
    for entry in errors:
        if not isinstance(entry, dict):
            continue
        index = entry.get("batch_index")
        if isinstance(index, int) and not isinstance(index, bool):
            reason = entry.get("reason")
            where = entry.get("field")
            found[index] = (
                reason if isinstance(reason, str) else "rejected",
                where if isinstance(where, str) and where else None,
            )
    return found


_live: weakref.WeakSet[BatchBuffer] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:  # pragma: no cover - runs at exit (tests/customerio/test_buffer_shutdown)
    for buffer in list(_live):
        buffer.close()


_SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_previous: dict[int, Any] = {}
_stopping: set[int] = set()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Chain to the handler that was there before, or exit gracefully where it was the default.

    A graceful exit raises :class:`SystemExit` in the main thread: ``with`` blocks and
    ``finally`` clauses run (closing adapters), then the exit handlers flush every live buffer.
    A second such signal while shutting down ends the process at once, as the default would.
    """
    previous = _previous.get(signum)
    if callable(previous):
        previous(signum, frame)  # e.g. SIGINT's default raises KeyboardInterrupt
        return
    if previous == signal.SIG_IGN:
        return
    if signum in _stopping:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _stopping.add(signum)
    raise SystemExit(128 + signum)


def install_shutdown_handlers(signals: Iterable[int] = _SHUTDOWN_SIGNALS) -> bool:
    """Make SIGTERM and SIGINT flush the batch buffers before the process exits.

    SIGTERM's default action ends the process at once, without exit handlers, so operations
    still in a buffer would be lost. The handler installed here chains to the one it replaces:
    a handler of yours is called (your shutdown path then closes the adapter, or the exit
    handlers flush the buffers), an ignored signal stays ignored, and where the action was the
    default the program exits gracefully with status ``128 + signal`` after the buffers were
    flushed; a second signal then ends it at once. Python's own SIGINT handler (which raises
    ``KeyboardInterrupt``, after which the exit handlers flush the buffers) is left in place, so
    ``asyncio.run`` still installs its own. Installing again is a no-op. The buffered adapter
    calls this when it is built in the main thread.

    Args:
        signals: The signals to handle.

    Returns:
        Whether the handlers are installed (``False`` outside the main thread, where Python
        does not allow it: call it from the main thread yourself).
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    for signum in signals:
        current = signal.getsignal(signum)
        if current is _on_signal or current is signal.default_int_handler:
            continue  # Python's SIGINT default already unwinds (and asyncio's runner needs it)
        _previous[signum] = current
        signal.signal(signum, _on_signal)
    return True


class BatchBuffer:
    """Groups v2 operations and sends them in batches from a background thread.

    A batch is sent when ``max_operations`` are waiting, when their size nears ``max_bytes``,
    or ``max_delay`` seconds after the oldest one arrived; :meth:`flush` sends at once and
    :meth:`close` (also run at interpreter exit, and so on SIGTERM and SIGINT once
    :func:`install_shutdown_handlers` ran) sends what is left and stops the thread.

    Args:
        send: Sends a list of operations (``ResilientCustomerIO.batch``).
        max_operations: Most operations per batch.
        max_bytes: Most bytes per batch (at most 500 KB).
        max_delay: Longest time an operation waits, in seconds.
        on_result: Called with each batch's result (or exception); errors are not raised.

    Raises:
        ValueError: For a bound that is not positive or over the API's limit.
    """

    def __init__(
        self,
        send: Callable[[list[dict[str, Any]]], Any],
        *,
        max_operations: int = 100,
        max_bytes: int = MAX_BATCH_BYTES,
        max_delay: float = 1.0,
        on_result: Callable[[Any], None] | None = None,
    ) -> None:
        if max_operations < 1:
            raise ValueError(f"max_operations must be >= 1, got {max_operations!r}")
        if not 0 < max_bytes <= MAX_BATCH_BYTES:
            raise ValueError(f"max_bytes must be in (0, {MAX_BATCH_BYTES}], got {max_bytes!r}")
        if not max_delay > 0:
            raise ValueError(f"max_delay must be > 0 seconds, got {max_delay!r}")
        self._send = send
        self.max_operations = max_operations
        self.max_bytes = max_bytes
        self.max_delay = float(max_delay)
        self._on_result = on_result
        self._cond = threading.Condition()
        self._pending: list[dict[str, Any]] = []
        self._bytes = _ENVELOPE
        self._closed = False
        self._flush_now = False
        self._sending = 0
        self._thread = threading.Thread(target=self._loop, name="customerio-batch", daemon=True)
        self._thread.start()
        _live.add(self)

    def add(self, operation: dict[str, Any]) -> None:
        """Queue one normalised v2 operation (checked against the 32 KB limit).

        Raises:
            PayloadTooLarge: If the operation is over 32 KB.
            RuntimeError: If the buffer is closed.
        """
        n = check_size(operation, MAX_V2_OP_BYTES, "v2 operations", "customerio.batch")
        n += _SEPARATOR
        with self._cond:
            if self._closed:
                raise RuntimeError("the batch buffer is closed")
            if self._pending and self._bytes + n > self.max_bytes:
                self._flush_now = True
                self._cond.notify_all()
                while self._pending and not self._closed:
                    self._cond.wait()
            self._pending.append(operation)
            self._bytes += n
            if len(self._pending) >= self.max_operations:
                self._flush_now = True
            self._cond.notify_all()

    def flush(self) -> None:
        """Send everything waiting now and return when it was handed over and sent."""
        with self._cond:
            self._flush_now = True
            self._cond.notify_all()
            while self._pending or self._sending:
                self._cond.wait()

    def close(self) -> None:
        """Send what is left, then stop the background thread (idempotent)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        _live.discard(self)

    @property
    def pending(self) -> int:
        """Operations waiting to be sent."""
        with self._cond:
            return len(self._pending)

    def _take(self) -> list[dict[str, Any]] | None:
        with self._cond:
            while True:
                if self._pending and (self._flush_now or self._closed):
                    break
                if self._closed:
                    return None
                if self._pending:
                    if not self._cond.wait(self.max_delay):
                        break
                else:
                    self._cond.wait()
            batch, self._pending = self._pending, []
            self._bytes = _ENVELOPE
            self._flush_now = False
            self._sending += 1
            self._cond.notify_all()
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                result: Any = self._send(batch)
            except Exception as exc:  # reported to on_result; the thread must survive
                result = exc
            finally:
                with self._cond:
                    self._sending -= 1
                    self._cond.notify_all()
            if self._on_result is not None:
                with contextlib.suppress(Exception):  # a callback must not stop the sender
                    self._on_result(result)


def merge_results(
    parts: Iterable[tuple[list[int], list[BatchItemResult]]], total: int
) -> BatchResult:
    """Combine the results of several requests into one, ordered by index.

    Args:
        parts: ``(indexes, results)`` per request.
        total: The number of operations.

    Returns:
        The combined result.
    """
    items: list[BatchItemResult | None] = [None] * total
    requests = 0
    for _indexes, results in parts:
        requests += 1
        for item in results:
            items[item.index] = item
    return BatchResult(tuple(i for i in items if i is not None), requests)


def size_of(operations: Sequence[dict[str, Any]]) -> int:
    """Return the size of a batch request body for ``operations``."""
    return size({"batch": list(operations)})
