"""Live progress for ``resilio-customerio send`` and ``demo``: a rich display, or plain lines.

On a terminal, :class:`Progress` redraws a bar with the rate, retries, the circuit breaker's state
and the outbox depth a few times a second. When standard output is not a terminal (a log file, a
CI job) it prints one plain line per interval instead, and only when something changed.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from resilio_customerio._send import SendStats

__all__ = ["Progress", "status_line"]

Extra = Callable[[], dict[str, str]]
"""Returns more ``label: value`` pairs to show (the demo adds the simulator's counters)."""


def _rate(stats: SendStats) -> float:
    elapsed = max(time.monotonic() - stats.started, 1e-6)
    return stats.sent_this_run / elapsed


def status_line(
    stats: SendStats, queued: int | None = None, extra: dict[str, str] | None = None
) -> str:
    """Return a one-line summary of a run's progress.

    Args:
        stats: The run's counters.
        queued: Items waiting in the outbox, if known.
        extra: More ``label: value`` pairs.

    Returns:
        For example ``"1200/5000 lines  412/s  retries 3  breaker closed  outbox 0"``.
    """
    parts = [
        f"{stats.done}/{stats.total} lines",
        f"{_rate(stats):.0f}/s",
        f"retries {stats.retries}",
        f"breaker {stats.breaker}",
    ]
    if queued is not None:
        parts.append(f"outbox {queued}")
    for status in ("queued", "dead", "invalid", "deduplicated"):
        if stats.counts.get(status):
            parts.append(f"{status} {stats.counts[status]}")
    for label, value in (extra or {}).items():
        parts.append(f"{label} {value}")
    return "  ".join(parts)


class Progress:
    """Shows a run's progress until stopped; use as a context manager.

    Args:
        stats: The counters to show.
        queued: Returns the outbox depth (``None`` when there is no outbox).
        extra: Returns more ``label: value`` pairs.
        stream: Where to write (default: standard output).
        live: Force the rich display on (``True``) or off (``False``); by default it is on
            when ``stream`` is a terminal and rich is installed.
        interval: Seconds between plain lines.
        title: A heading for the rich display.
    """

    def __init__(
        self,
        stats: SendStats,
        *,
        queued: Callable[[], int | None] | None = None,
        extra: Extra | None = None,
        stream: IO[str] | None = None,
        live: bool | None = None,
        interval: float = 1.0,
        title: str = "Sending",
    ) -> None:
        self.stats = stats
        self._queued = queued or (lambda: None)
        self._extra = extra or dict
        self.stream = stream if stream is not None else sys.stdout
        if live is None:
            live = self.stream.isatty() and _has_rich()
        self.live = live
        self.interval = interval
        self.title = title
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = ""
        self._rich: Any = None
        self.notes: list[str] = []

    def _safe_queued(self) -> int | None:
        try:
            return self._queued()
        except Exception:  # a display must never break the run
            return None

    def _safe_extra(self) -> dict[str, str]:
        try:
            return self._extra()
        except Exception:  # a display must never break the run
            return {}

    def line(self) -> str:
        """Return the current plain status line."""
        return status_line(self.stats, self._safe_queued(), self._safe_extra())

    def note(self, message: str) -> None:
        """Print a message above the display (or as a plain line).

        Args:
            message: A payload-free message.
        """
        self.notes.append(message)
        if self._rich is not None:
            self._rich.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.stream, flush=True)

    # -- rich -------------------------------------------------------------------------------

    def snapshot(self) -> Any:
        """Return the rich display's current frame (needs rich)."""
        return self._renderable()

    def _renderable(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        stats = self.stats
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        breaker_style = {"open": "bold red", "half-open": "yellow"}.get(stats.breaker, "green")
        table.add_row("lines", f"{stats.done}/{stats.total}")
        table.add_row("rate", f"{_rate(stats):.0f} lines/s")
        table.add_row("retries", str(stats.retries))
        table.add_row("breaker", Text(stats.breaker, style=breaker_style))
        queued = self._safe_queued()
        if queued is not None:
            table.add_row("outbox", str(queued))
        for status in ("sent", "queued", "deduplicated", "invalid", "dead", "unknown"):
            if stats.counts.get(status):
                table.add_row(status, str(stats.counts[status]))
        for label, value in self._safe_extra().items():
            table.add_row(label, value)
        bar = ProgressBar(total=max(stats.total, 1), completed=stats.done, width=50)
        return Group(Text(self.title, style="bold"), bar, table)

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> Progress:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream)
            self._rich = Live(
                get_renderable=self._renderable,
                console=console,
                refresh_per_second=8,
                transient=False,
            )
            self._rich.__enter__()
        else:
            self._thread = threading.Thread(target=self._plain, name="cio-progress", daemon=True)
            self._thread.start()
        return self

    def _plain(self) -> None:
        while not self._stop.wait(self.interval):
            self._print_if_changed()

    def _print_if_changed(self) -> None:
        text = self.line()
        if text != self._last:
            self._last = text
            print(text, file=self.stream, flush=True)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._rich is not None:
            self._rich.__exit__(None, None, None)
            self._rich = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self._print_if_changed()


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


_LABELS = (
    ("sent", "sent"),
    ("deduplicated", "deduplicated"),
    ("queued", "queued (in the outbox)"),
    ("dead", "dead-lettered"),
    ("invalid", "rejected as invalid"),
    ("unknown", "outcome unknown"),
    ("pending", "not finished"),
)
_MAX_LISTED = 50


def ranges(numbers: list[int]) -> str:
    """Return line numbers compactly: ``[1, 2, 3, 7]`` gives ``"1-3, 7"``.

    Args:
        numbers: Sorted line numbers.

    Returns:
        The compact text.
    """
    parts: list[str] = []
    start = prev = None
    for n in numbers:
        if start is None:
            start = prev = n
        elif prev is not None and n == prev + 1:
            prev = n
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = n
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(parts)


def render_report(report: Any, source: str) -> list[str]:
    """Return the final report of a send as lines of text.

    Args:
        report: A :class:`~resilio_customerio._send.Report`.
        source: The input's name, for the heading.

    Returns:
        The lines: counts per outcome, then each line that was not sent and why.
    """
    out = [f"Report for {source}: {report.lines} lines"]
    for status, label in _LABELS:
        count = report.counts.get(status, 0)
        if count or status in ("sent", "deduplicated", "queued", "dead", "invalid"):
            out.append(f"  {label:<24}{count:>8}")
    if report.sent_this_run != report.counts.get("sent", 0):
        out.append(f"  (sent by this run: {report.sent_this_run})")
    for status, label in _LABELS[1:]:
        rows = [(n, d) for n, s, d in report.details if s == status]
        if not rows:
            continue
        if status in ("queued", "pending"):
            out.append(f"{label}: lines {ranges([n for n, _ in rows])}")
            continue
        out.append(f"{label}:")
        for number, detail in rows[:_MAX_LISTED]:
            out.append(f"  line {number}: {detail}")
        if len(rows) > _MAX_LISTED:
            out.append(f"  ... and {len(rows) - _MAX_LISTED} more (see the journal)")
    if report.aborted:
        out.append(f"stopped early: {report.aborted}")
    return out
