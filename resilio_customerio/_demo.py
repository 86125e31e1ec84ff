"""``resilio-customerio demo``: a bad day at a local Customer.io, ridden out, then reconciled.

The demo starts the simulator with a scripted bad day (slow answers, connection resets, a burst
of 429s and an outage of several seconds), writes a JSONL file of generated events, and sends it
with ``send``'s engine through the adapter's default pipelines and a SQLite outbox in a temporary
directory, while a drainer delivers what the outbox takes. It shows the breaker opening and
closing and the outbox filling and draining, then checks the simulator's records: every event
must have arrived exactly once, or the command exits with status 1.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from attrs import frozen

from resilio_customerio._journal import Journal
from resilio_customerio._progress import Progress
from resilio_customerio._send import SendOptions, SendStats, send_file
from resilio_customerio.testing import Faults, Simulator

__all__ = ["BadDay", "run_demo"]

_NAMES = ("page_viewed", "added_to_cart", "checkout_started", "purchase")


@frozen(kw_only=True)
class BadDay:
    """The fault script, in seconds after the simulator starts.

    Attributes:
        burst: When the burst of 429s (with ``Retry-After: 1``) happens.
        outage: When every request gets 503.
        slow: Share of requests answered 0.3 s late.
        resets: Share of requests whose connection is reset (half after applying them).
        drain_wait: Seconds to wait for the outbox to empty at the end.
        break_duration: Seconds the breaker stays open before a trial call.
        max_wait: Longest wait of a call for a retry (a longer one sends it to the outbox).
        stream: Seconds over which the generated events arrive, like a live stream (0: all
            at once).
    """

    burst: tuple[float, float] = (2.0, 3.5)
    outage: tuple[float, float] = (6.0, 12.0)
    slow: float = 0.02
    resets: float = 0.01
    drain_wait: float = 60.0
    break_duration: float = 2.0
    max_wait: float = 1.0
    stream: float = 18.0

    @classmethod
    def quick(cls) -> BadDay:
        """A shorter script for tests: the same faults, squeezed into about three seconds."""
        return cls(
            burst=(0.3, 0.8),
            outage=(1.2, 2.7),
            slow=0.01,
            resets=0.01,
            drain_wait=30.0,
            break_duration=0.5,
            max_wait=0.3,
            stream=3.0,
        )

    def config(self) -> dict[str, Any]:
        """Return the adapter configuration: the defaults, tuned for an outage lasting seconds.

        The built-in pipelines suit a real outage: a call waits up to a minute for the breaker's
        30 s break. The demo's outage lasts seconds, so the breaker tries again after
        ``break_duration``, and a call gives up as soon as the breaker would make it wait longer
        than ``max_wait``: it falls into the outbox at once, and the drainer delivers it after
        the recovery.

        Returns:
            A configuration mapping merged over the built-in pipelines.
        """
        from resilio_customerio.operations import SPECS

        breaker = {"failure_threshold": 5, "break_duration": self.break_duration}
        backoff = {"kind": "exponential", "initial": 0.1, "max": self.max_wait}
        track = [
            {"timeout": {"seconds": 4 * self.max_wait + 2}},
            {"retry": {"attempts": 4, "backoff": backoff, "max_delay": self.max_wait}},
            {"circuit_breaker": {"ref": "customerio.track.breaker"}},
            {"rate_limiter": {"ref": "customerio.track.rate"}},
            {"bulkhead": {"ref": "customerio.track.bulkhead"}},
            {"timeout": {"seconds": 2}},
        ]
        return {
            "version": 1,
            "policies": {"customerio.track.breaker": {"circuit_breaker": breaker}},
            "pipelines": {name: track for name, spec in SPECS.items() if spec.api == "track"},
        }

    def faults(self, seed: int) -> Faults:
        """Build the simulator's fault plan.

        Args:
            seed: Seed of the random choice of slow and reset requests.

        Returns:
            The plan.
        """
        plan = Faults(outage=self.outage, outage_status=503, seed=seed)
        plan.add(
            "track_api",
            status=429,
            retry_after=1,
            probability=0.6,
            start=self.burst[0],
            end=self.burst[1],
        )
        plan.add("track_api", reset="after", probability=self.resets / 2)
        plan.add("track_api", reset="before", probability=self.resets / 2)
        plan.add("track_api", latency=0.3, probability=self.slow)
        return plan


def write_events(path: Path, events: int) -> int:
    """Write the demo's input: one identify per customer, then ``events`` track lines.

    Args:
        path: Where to write the JSONL file.
        events: Track events to generate (each carries a unique ``seq`` in its data).

    Returns:
        How many customers were identified.
    """
    customers = max(1, events // 20)
    with path.open("w", encoding="utf-8") as out:
        for c in range(customers):
            attrs = {"plan": ("free", "pro")[c % 2], "created_at": 1700000000 + c}
            out.write(json.dumps({"op": "identify", "id": f"c{c}", "attributes": attrs}) + "\n")
        for seq in range(events):
            line = {
                "op": "track",
                "id": f"c{seq % customers}",
                "name": _NAMES[seq % len(_NAMES)],
                "data": {"seq": seq},
            }
            out.write(json.dumps(line) + "\n")
    return customers


@frozen(kw_only=True)
class Reconciliation:
    """What the simulator recorded compared with what was sent.

    Attributes:
        expected: Events generated.
        once: Events recorded exactly once.
        missing: ``seq`` values never recorded.
        repeated: ``seq`` values recorded more than once.
        dropped_duplicates: Resent events the simulator dropped by their ULID.
        customers_missing: Identified customers the simulator does not know.
    """

    expected: int
    once: int
    missing: list[int]
    repeated: list[int]
    dropped_duplicates: int
    customers_missing: int

    @property
    def ok(self) -> bool:
        """Whether every event arrived exactly once and every customer exists."""
        return not self.missing and not self.repeated and self.customers_missing == 0


def reconcile(sim: Simulator, events: int, customers: int) -> Reconciliation:
    """Compare the simulator's records with the generated input.

    Args:
        sim: The simulator the demo sent to.
        events: Events generated.
        customers: Customers identified.

    Returns:
        The comparison.
    """
    seen: Counter[int] = Counter()
    for c in range(customers):
        for event in sim.events(f"c{c}"):
            seen[int(event["data"]["seq"])] += 1
    return Reconciliation(
        expected=events,
        once=sum(1 for s in range(events) if seen[s] == 1),
        missing=[s for s in range(events) if seen[s] == 0],
        repeated=sorted(s for s, n in seen.items() if n > 1),
        dropped_duplicates=int(sim.stats()["duplicates"]),
        customers_missing=sum(1 for c in range(customers) if sim.customer(f"c{c}") is None),
    )


class _Watch:
    """Breaker transitions and outbox peaks, as notes for the display."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.notes: list[str] = []
        self.opened = 0
        self.closed = 0
        self.outbox_peak = 0
        self.draining = False
        self.depth = 0
        self.say: Callable[[str], None] = self.notes.append
        self.at_peak: Callable[[], None] = lambda: None
        self._lock = threading.Lock()

    def listener(self, event: Any) -> None:
        name = getattr(event, "name", "")
        label = {
            "circuit.opened": "breaker OPENED",
            "circuit.half_opened": "breaker half-open (trial call)",
            "circuit.closed": "breaker CLOSED",
        }.get(name)
        if label is None:
            return
        with self._lock:
            if name == "circuit.opened":
                self.opened += 1
            elif name == "circuit.closed":
                self.closed += 1
        self.say(f"[{self.sim.elapsed():5.1f}s] {label}")

    def sample(self, outbox: Any) -> int:
        """Read the outbox depth; note when it starts filling and when it starts draining."""
        depth = int(outbox.stats().depth)
        with self._lock:
            peak, self.outbox_peak = self.outbox_peak, max(self.outbox_peak, depth)
            self.depth = depth
            filling = depth and not peak
            draining = peak and depth < peak and not self.draining and self.closed
            self.draining = self.draining or bool(draining)
        if filling:
            self.say(f"[{self.sim.elapsed():5.1f}s] outbox filling: calls fail fast into it")
        if draining:
            self.at_peak()
            self.say(f"[{self.sim.elapsed():5.1f}s] outbox draining from its peak of {peak}")
        return depth

    def run(self, outbox: Any, stop: threading.Event) -> None:
        """Sample the outbox until ``stop`` is set (in its own thread, not the display's)."""
        while not stop.wait(0.2):
            self.sample(outbox)

    def extra(self) -> dict[str, str]:
        stats = self.sim.stats()
        statuses: dict[Any, int] = stats["statuses"]
        return {
            "time": f"{self.sim.elapsed():.1f} s",
            "simulator": f"{stats['requests']} requests, {statuses.get(429, 0)}x 429, "
            f"{statuses.get(503, 0)}x 503, {statuses.get(None, 0)} resets",
            "dedupe": f"{stats['duplicates']} resends dropped by ULID",
        }


def run_demo(
    *,
    events: int = 2000,
    concurrency: int = 8,
    quick: bool = False,
    seed: int = 7,
    live: bool | None = None,
    stream: IO[str] | None = None,
    svg: Path | None = None,
) -> int:
    """Run the demo and return the exit status (0 when the reconciliation is clean).

    Args:
        events: Track events to send.
        concurrency: Parallel requests.
        quick: Use the short fault script.
        seed: Seed of the fault script.
        live: Force the rich display on or off (default: on for a terminal).
        stream: Where to write (default: standard output).
        svg: Also save the notes, the final frame and the summary as an SVG image here.

    Returns:
        0 when every event was delivered exactly once, 1 otherwise.
    """
    from resilio.outbox import Outbox
    from resilio.plugins import subscribe
    from resilio.telemetry import configure
    from resilio_customerio import ResilientCustomerIO

    script = BadDay.quick() if quick else BadDay()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="resilio-demo-") as tmp:
        workdir = Path(tmp)
        source = workdir / "events.jsonl"
        customers = write_events(source, events)
        rate = (customers + events) / script.stream if script.stream > 0 else 0.0
        options = SendOptions(concurrency=concurrency, rate=rate)
        outbox = Outbox.sqlite(workdir / "outbox.sqlite3")
        with Simulator(faults=script.faults(seed)) as sim, sim.trust():
            watch = _Watch(sim)
            stats = SendStats()
            client = ResilientCustomerIO(
                **sim.client_kwargs(), outbox=outbox, config=script.config()
            )
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=_drain_loop, args=(client, outbox, stop), name="demo-drain", daemon=True
                ),
                threading.Thread(
                    target=watch.run, args=(outbox, stop), name="demo-watch", daemon=True
                ),
            ]
            unsubscribe = [subscribe(stats.listener), subscribe(watch.listener)]
            switches = configure(logging=False)  # the display shows what the logs would say
            try:
                with Progress(
                    stats,
                    queued=lambda: watch.depth,
                    extra=watch.extra,
                    stream=stream,
                    live=live,
                    interval=0.5,
                    title=f"Sending {events} events to a Customer.io simulator having a bad day",
                ) as progress:
                    watch.say = progress.note
                    frames: list[Any] = []
                    if svg is not None:
                        watch.at_peak = lambda: frames.append(progress.snapshot())
                    progress.note(_script_text(script, sim))
                    for thread in threads:
                        thread.start()
                    with Journal(workdir / "events.jsonl.journal") as journal:
                        report = send_file(source, client, journal, options, stats)
                    progress.note(f"[{sim.elapsed():5.1f}s] all lines handed over; draining")
                    deadline = time.monotonic() + script.drain_wait
                    while watch.sample(outbox) and time.monotonic() < deadline:
                        time.sleep(0.1)
                    progress.note(f"[{sim.elapsed():5.1f}s] outbox empty")
                    if svg is not None:
                        frames.append(progress.snapshot())
                    notes = list(progress.notes)
            finally:
                stop.set()
                for thread in threads:
                    if thread.is_alive():
                        thread.join(timeout=10)
                for stop_listening in unsubscribe:
                    stop_listening()
                configure(**switches)
            result = reconcile(sim, events, customers)
            lines = _summary(result, report, watch, outbox, time.monotonic() - started)
        outbox.close()
        _close(client)
    for text in lines:
        print(text, file=stream, flush=True)
    if svg is not None:
        _save_svg(svg, notes, frames, lines)
    return 0 if result.ok else 1


def _save_svg(path: Path, notes: list[str], frames: list[Any], summary: list[str]) -> None:
    import io

    from rich.console import Console

    console = Console(record=True, width=104, file=io.StringIO(), force_terminal=True)
    console.print("$ resilio-customerio demo", style="bold", highlight=False)
    for text in notes:
        console.print(text, markup=False, highlight=False)
    captions = ["when the outbox started draining:"] * (len(frames) - 1) + ["at the end:"]
    for caption, frame in zip(captions, frames, strict=False):
        console.print(f"\nThe display {caption}", style="dim", highlight=False)
        console.print(frame)
    for text in summary:
        style = (
            "bold green" if text.startswith("OK") else "bold red" if text.startswith("FAIL") else ""
        )
        console.print(text, style=style, markup=False, highlight=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    console.save_svg(str(path), title="resilio-customerio demo")


def _drain_loop(client: Any, outbox: Any, stop: threading.Event) -> None:
    drainer = client.drainer(outbox) if hasattr(client, "drainer") else None
    if drainer is None:
        from resilio.outbox import Drainer

        drainer = Drainer(outbox, client, backoff=lambda attempt: min(2.0, 0.25 * 2**attempt))
    drainer.run(stop, poll_interval=0.1)


def _close(client: Any) -> None:
    close = getattr(client, "close", None)
    if callable(close):
        close()


def _script_text(script: BadDay, sim: Simulator) -> str:
    return (
        f"simulator at {sim.api_url}; the bad day: 429 burst {script.burst[0]:g}-"
        f"{script.burst[1]:g} s, outage {script.outage[0]:g}-{script.outage[1]:g} s, "
        f"{script.resets:.0%} resets, {script.slow:.0%} slow answers"
    )


def _summary(
    result: Reconciliation, report: Any, watch: _Watch, outbox: Any, seconds: float
) -> list[str]:
    depth = outbox.stats().depth
    lines = [
        "",
        "Reconciliation against what the simulator recorded:",
        f"  events sent                  {result.expected:>7}",
        f"  recorded exactly once        {result.once:>7}",
        f"  missing                      {len(result.missing):>7}",
        f"  recorded more than once      {len(result.repeated):>7}",
        f"  resends dropped by ULID      {result.dropped_duplicates:>7}",
        f"  customers missing            {result.customers_missing:>7}",
        f"  breaker opened / closed      {watch.opened:>3} / {watch.closed}",
        f"  outbox peak / left           {watch.outbox_peak:>3} / {depth}",
        f"  lines queued on the way      {report.counts.get('queued', 0):>7}",
        f"  time                         {seconds:>6.1f}s",
    ]
    if result.ok:
        lines.append("OK: every event was delivered exactly once.")
    else:
        lines.append("FAILED: the simulator's records do not match what was sent.")
        if result.missing:
            lines.append(f"  first missing seq: {result.missing[:10]}")
        if result.repeated:
            lines.append(f"  first repeated seq: {result.repeated[:10]}")
    return lines
