"""The ``resilio-customerio`` command: ``send``, ``demo``, ``simulate`` and ``outbox``.

Exit statuses: 0 when every line was delivered (or deduplicated, or queued in the outbox); 1 when
some lines are invalid, dead-lettered or of unknown outcome (the report lists them); 2 for a
usage or configuration mistake; 3 when Customer.io refused the credentials and the run stopped.
Payloads are never printed, and credentials only masked.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from resilio.errors import ConfigError

__all__ = ["build_parser", "main", "mask"]

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_AUTH = 3

DEFAULT_BATCH = 500
"""Operations per v2 batch with a bare ``--batch``: few requests, well under the 1000 cap."""


class UsageError(Exception):
    """A mistake in the command line or its environment; shown without a traceback."""


def mask(secret: str | None) -> str:
    """Return a secret in a form safe to print: only its last 4 characters, if it is long.

    Args:
        secret: A key or id.

    Returns:
        ``"(not set)"``, ``"****"`` or ``"****abcd"``.
    """
    if not secret:
        return "(not set)"
    return "****" + secret[-4:] if len(secret) >= 12 else "****"


# -- parser -------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


MAX_CONCURRENCY = 1000
"""Most worker threads ``send --concurrency`` starts."""


def _concurrency(text: str) -> int:
    value = _positive(text)
    if value > MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_CONCURRENCY}, got {value}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds, got {text!r}")
    return value


def _timeout(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0 seconds, got {text!r}")
    return value


def _wait(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 seconds or more, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def _batch_size(text: str) -> int:
    value = _positive(text)
    if value > 1000:
        raise argparse.ArgumentTypeError(f"a v2 batch holds at most 1000 operations, got {value}")
    return value


def _add_connection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Customer.io connection")
    group.add_argument(
        "--config", type=Path, help="resilio YAML file with pipelines (default: built-in)"
    )
    group.add_argument("--site-id", help="Track API site id (env CUSTOMERIO_SITE_ID)")
    group.add_argument(
        "--api-key",
        help="Track API key (env CUSTOMERIO_API_KEY; prefer the variable: "
        "arguments are visible to other users of the machine)",
    )
    group.add_argument("--app-key", help="App API key for send_* lines (env CUSTOMERIO_APP_KEY)")
    group.add_argument("--region", choices=("us", "eu"), default=None, help="workspace region")
    group.add_argument("--host", help="Track API host (e.g. 127.0.0.1 for a simulator)")
    group.add_argument("--port", type=_port, help="Track API port")
    group.add_argument("--url-prefix", help="Track API path prefix (default /api/v1)")
    group.add_argument("--api-url", help="App API base URL (e.g. https://127.0.0.1:8443)")
    group.add_argument(
        "--timeout", type=_timeout, default=None, help="per-request timeout, seconds (above 0)"
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``resilio-customerio``.

    Returns:
        The parser (``simulate`` and ``outbox`` forward their own arguments).
    """
    parser = argparse.ArgumentParser(
        prog="resilio-customerio",
        description="Resilient delivery to Customer.io: send files of operations, run a demo "
        "against a local simulator, and manage the outbox.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    send = sub.add_parser(
        "send",
        help="deliver a JSONL file of operations (resumable)",
        description="Deliver a JSONL file of operations through the resilience pipelines. "
        "Progress is kept in a journal next to the file: run the same command again after an "
        "interruption and it continues where it stopped, sending nothing twice.",
    )
    send.add_argument("file", type=Path, metavar="FILE.jsonl", help="one operation per line")
    _add_connection(send)
    run = send.add_argument_group("sending")
    run.add_argument(
        "--concurrency",
        type=_concurrency,
        default=4,
        help=f"parallel requests (4; at most {MAX_CONCURRENCY})",
    )
    run.add_argument(
        "--batch",
        type=_batch_size,
        nargs="?",
        const=DEFAULT_BATCH,
        default=0,
        metavar="N",
        help=f"send v2 batch requests of up to N operations (N defaults to {DEFAULT_BATCH}; "
        "a request also stays under 500 KB); without --batch: one request per line",
    )
    run.add_argument("--journal", type=Path, help="journal file (default: FILE.jsonl.journal)")
    run.add_argument(
        "--outbox",
        type=Path,
        metavar="PATH",
        help="SQLite outbox that takes calls which cannot be delivered now (default: none)",
    )
    run.add_argument("--restart", action="store_true", help="forget the journal and start over")
    run.add_argument(
        "--retry-failed", action="store_true", help="send dead-lettered lines of earlier runs again"
    )
    run.add_argument(
        "--resend-unknown",
        action="store_true",
        help="send again transactional lines whose outcome is unknown (may duplicate messages)",
    )
    run.add_argument(
        "--drain-timeout",
        type=_wait,
        default=30.0,
        help="seconds to wait at the end for the outbox to deliver queued lines (30; 0: don't)",
    )
    run.add_argument("--no-progress", action="store_true", help="no live progress display")
    run.add_argument(
        "--log",
        action="store_true",
        help="also log pipeline events (retries, breaker) through structlog",
    )

    demo = sub.add_parser(
        "demo",
        help="watch the pipelines ride out a bad day of a local Customer.io simulator",
        description="Start a local Customer.io simulator with a scripted bad day (an outage, a "
        "burst of 429s, resets, slow answers), send generated events through it, and reconcile "
        "what it recorded: exit status 0 only if every event arrived exactly once.",
    )
    demo.add_argument("--events", type=_positive, default=2000, help="events to send (2000)")
    demo.add_argument("--concurrency", type=_positive, default=8, help="parallel requests (8)")
    demo.add_argument("--quick", action="store_true", help="a shorter bad day (for tests)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the fault script")
    demo.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    demo.add_argument(
        "--svg",
        type=Path,
        help="also save the notes, two frames of the display and the summary as an SVG image",
    )

    sub.add_parser(
        "simulate",
        help="run the local Customer.io simulator (see: simulate --help)",
        add_help=False,
    )
    sub.add_parser(
        "outbox", help="inspect, drain and requeue the outbox (see: outbox --help)", add_help=False
    )
    return parser


# -- commands -----------------------------------------------------------------------------------


def _setting(value: str | None, env: str) -> str | None:
    return value if value else os.environ.get(env) or None


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """Collect the adapter's constructor arguments from options and the environment.

    Args:
        args: Parsed ``send`` options.

    Returns:
        Keyword arguments for :class:`~resilio_customerio.ResilientCustomerIO`.

    Raises:
        UsageError: If the site id or API key is missing.
    """
    site_id = _setting(args.site_id, "CUSTOMERIO_SITE_ID")
    api_key = _setting(args.api_key, "CUSTOMERIO_API_KEY")
    missing = []
    if not site_id:
        missing.append("--site-id (or CUSTOMERIO_SITE_ID)")
    if not api_key:
        missing.append("--api-key (or CUSTOMERIO_API_KEY)")
    if missing:
        raise UsageError(f"missing Customer.io credentials: {', '.join(missing)}")
    options: dict[str, Any] = {"site_id": site_id, "api_key": api_key}
    app_key = _setting(args.app_key, "CUSTOMERIO_APP_KEY")
    if app_key:
        options["app_key"] = app_key
    region = args.region or os.environ.get("CUSTOMERIO_REGION")
    if region:
        if region not in ("us", "eu"):
            raise UsageError(f"CUSTOMERIO_REGION must be us or eu, got {region!r}")
        options["region"] = region
    for name in ("host", "port", "url_prefix", "api_url", "timeout"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    if getattr(args, "outbox", None) is not None:
        from resilio.outbox import Outbox

        options["outbox"] = Outbox.sqlite(args.outbox)
    if args.config is not None:
        if not args.config.is_file():
            raise UsageError(f"--config: no such file: {args.config}")
        options["config"] = str(args.config)
    return options


def _first_line_for(path: Path, app_api: bool) -> int | None:
    """Return the number of the first line of ``path`` with an operation of one API, if any."""
    import json

    from resilio_customerio._jsonl import OPERATIONS

    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            if app_api and b"send_" not in raw:
                continue  # cheap: App API ops are all send_*
            try:
                op = json.loads(raw).get("op")
            except (ValueError, AttributeError):
                continue
            spec = OPERATIONS.get(op) if isinstance(op, str) else None
            if spec is not None and spec.app_api == app_api:
                return number
    return None


def check_destinations(path: Path, options: dict[str, Any]) -> None:
    """Refuse to send one API's lines to Customer.io while the other API points elsewhere.

    ``--host`` moves only the Track API and ``--api-url`` only the App API; given one without
    the other (to try a simulator, say), the other API's lines would go to the real Customer.io.

    Args:
        path: The input file.
        options: The adapter's options from :func:`client_options`.

    Raises:
        UsageError: If the file has lines for the API left at Customer.io's host.
    """
    moved_track = options.get("host") is not None
    moved_app = options.get("api_url") is not None
    if moved_track == moved_app:
        return
    if moved_track:
        number = _first_line_for(path, app_api=True)
        if number is not None:
            raise UsageError(
                f"--host points the Track API at {options['host']}, but line {number} is an App "
                "API send and there is no --api-url: it would go to Customer.io's App API. Give "
                "--api-url too (the simulator's is printed by `simulate`), or "
                "--api-url https://api.customer.io to mean it"
            )
    else:
        number = _first_line_for(path, app_api=False)
        if number is not None:
            raise UsageError(
                f"--api-url points the App API at {options['api_url']}, but line {number} is a "
                "Track API operation and there is no --host: it would go to Customer.io's Track "
                "API. Give --host (and --port) too, or --host track.customer.io to mean it"
            )


def _make_client(options: dict[str, Any]) -> Any:
    try:
        from resilio_customerio import ResilientCustomerIO
    except ImportError as exc:  # pragma: no cover - a broken installation
        raise UsageError(f"the Customer.io adapter cannot be imported ({exc})") from None
    return ResilientCustomerIO(**options)


def _outbox_depth(client: Any) -> Callable[[], int | None] | None:
    outbox = getattr(client, "outbox", None)
    if outbox is None or not hasattr(outbox, "stats"):
        return None
    return lambda: int(outbox.stats().depth)


def run_send(
    args: argparse.Namespace, *, client_factory: Callable[[dict[str, Any]], Any] | None = None
) -> int:
    """Run ``send``: deliver the file, print the report, return the exit status.

    Args:
        args: Parsed ``send`` options.
        client_factory: Builds the client from its options (tests pass fakes).

    Returns:
        The exit status.

    Raises:
        UsageError: For a missing file, credentials or a changed input.
    """
    from resilio_customerio._journal import Journal, JournalMismatchError, journal_path_for
    from resilio_customerio._progress import Progress, render_report
    from resilio_customerio._send import (
        SendOptions,
        SendStats,
        build_report,
        send_file,
        settle_queued,
    )

    path: Path = args.file
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    options = client_options(args)
    check_destinations(path, options)
    journal_path = args.journal or journal_path_for(path)
    if args.restart:
        for suffix in ("", "-wal", "-shm"):
            Path(str(journal_path) + suffix).unlink(missing_ok=True)
    resuming = journal_path.exists()
    client = (client_factory or _make_client)(options)
    print(
        f"{'Resuming' if resuming else 'Sending'} {path.name} "
        f"(site id {mask(options['site_id'])}, api key {mask(options['api_key'])}, "
        f"journal {journal_path.name})",
        flush=True,
    )
    stats = SendStats()
    from resilio.plugins import subscribe
    from resilio.telemetry import configure

    switches = configure(logging=bool(args.log))
    unsubscribe = subscribe(stats.listener)
    try:
        with (
            Journal(journal_path) as journal,
            Progress(
                stats,
                queued=_outbox_depth(client),
                live=False if args.no_progress else None,
                title=f"Sending {path.name}",
            ) as progress,
        ):
            try:
                report = send_file(
                    path,
                    client,
                    journal,
                    SendOptions(
                        concurrency=args.concurrency,
                        batch=args.batch,
                        retry_failed=args.retry_failed,
                        resend_unknown=args.resend_unknown,
                    ),
                    stats,
                )
            except JournalMismatchError as exc:
                raise UsageError(str(exc)) from None
            _drain(client, args.drain_timeout, progress)
            if getattr(client, "outbox", None) is not None and report.counts.get("queued"):
                settle_queued(journal, client.outbox)
                report = build_report(journal, report.lines, report.sent_this_run, report.aborted)
    finally:
        configure(**switches)
        unsubscribe()
        close = getattr(client, "close", None)
        if callable(close):
            close()
    for text in render_report(report, path.name):
        print(text)
    if report.aborted:
        return EXIT_AUTH
    return EXIT_OK if report.complete and not report.counts.get("invalid") else EXIT_INCOMPLETE


def _drain(client: Any, timeout: float, progress: Any) -> None:
    """Let a drainer deliver the outbox's due items for up to ``timeout`` seconds."""
    depth = _outbox_depth(client)
    if timeout <= 0 or depth is None or not depth():
        return
    import time

    from resilio.outbox import Drainer

    progress.note(f"waiting up to {timeout:g} s for the outbox to deliver queued lines")
    drainer = Drainer(client.outbox, client)
    deadline = time.monotonic() + timeout
    while depth() and time.monotonic() < deadline:
        if drainer.drain_once(limit=100).processed == 0:
            time.sleep(0.2)


def _connection_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resilio-customerio outbox", add_help=False)
    _add_connection(parser)
    return parser


def outbox_registry(args: argparse.Namespace) -> Any:
    """Build the adapter that ``outbox`` commands replay through: the built-in pipelines.

    ``--config`` is merged over the adapter's defaults (its ``outbox:`` section, if any, is
    the outbox); the connection options and ``CUSTOMERIO_*`` variables are those of ``send``.
    Only ``drain`` calls Customer.io, so only ``drain`` requires the credentials.

    Args:
        args: Parsed ``outbox`` options, with the connection options of ``send``.

    Returns:
        A :class:`~resilio_customerio.ResilientCustomerIO` (a registry for the drainer).

    Raises:
        UsageError: If ``drain`` lacks the site id or API key.
    """
    if args.outbox_command == "drain":
        options = client_options(args)
    else:
        options = {"config": str(args.config)} if args.config else {}
    return _make_client(options)


def _run_outbox(argv: list[str]) -> int:
    try:
        from resilio.outbox import cli as outbox_cli
    except ImportError:
        raise UsageError("the outbox commands are not available in this installation") from None
    connection, rest = _connection_parser().parse_known_args(argv)
    parser = argparse.ArgumentParser(
        prog="resilio-customerio",
        epilog="Also accepted: the Customer.io connection options of `send` (--site-id, "
        "--api-key, --app-key, --region, --host, --port, --url-prefix, --api-url, --timeout).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    outbox_cli.register(subparsers, registry_factory=outbox_registry)
    args = parser.parse_args(["outbox", *rest])
    for name, value in vars(connection).items():
        if name != "config" or getattr(args, "config", None) is None:
            setattr(args, name, value)
    args.config = Path(args.config) if args.config else None
    if args.outbox_command == "drain":
        # Build the adapter here, so missing credentials and configuration mistakes are this
        # command's usage errors (exit 2), not failures of the outbox command (exit 1).
        registry = outbox_registry(args)
        args.registry_factory = lambda _args: registry
    return int(args.func(args) or 0)


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "simulate":
        from resilio_customerio.testing import run_simulator_cli

        return run_simulator_cli(argv[1:])
    if argv and argv[0] == "outbox":
        return _run_outbox(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "send":
        return run_send(args)
    if args.command == "demo":
        from resilio_customerio._demo import run_demo

        return run_demo(
            events=args.events,
            concurrency=args.concurrency,
            quick=args.quick,
            seed=args.seed,
            live=False if args.plain else None,
            svg=args.svg,
        )
    parser.print_help()
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``resilio-customerio``.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except UsageError as exc:
        print(f"resilio-customerio: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print("resilio-customerio: configuration error:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
