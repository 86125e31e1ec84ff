"""The ``resilio outbox`` command: inspect, drain and maintain an outbox.

Subcommands: ``stats``, ``list``, ``drain``, ``dead``, ``requeue`` and ``purge``. The outbox comes
from a configuration file's ``outbox:`` section (``--config FILE``) or directly from
``--sqlite PATH`` / ``--redis URL``. ``drain`` needs ``--config``: replaying an item needs its
operation's handler and pipeline. Payloads are never printed unless ``--show-payload`` is given.
``--sqlite PATH`` must name an existing outbox: the commands never create one (exit status 2).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import threading
from typing import Any, TextIO

from resilio.outbox._model import ItemState, OutboxItem
from resilio.outbox._outbox import Outbox

__all__ = ["register"]


class _UsageError(Exception):
    pass


def _duration(text: str) -> float:
    """Parse ``--older-than``: a duration with a unit (``7d``, ``12h``) or a number of seconds."""
    from resilio.config import parse_duration

    value: object = text
    with contextlib.suppress(ValueError):
        value = float(text)
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (e.g. 7d, 12h, 30m or 3600 seconds)"
        ) from exc


def _positive_int(text: str) -> int:
    """Parse a count option: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("outbox")
    source.add_argument("--config", metavar="FILE", help="a YAML file with an 'outbox:' section")
    source.add_argument("--sqlite", metavar="PATH", help="a SQLite outbox file")
    source.add_argument("--redis", metavar="URL", help="a Redis outbox (redis://host:port/db)")
    source.add_argument("--name", default="outbox", help="the Redis outbox's name")


def register(subparsers: Any, *, registry_factory: Any = None) -> None:
    """Add the ``outbox`` command and its subcommands to ``resilio``'s argument parser.

    Args:
        subparsers: The parser's subparsers.
        registry_factory: ``args -> registry`` used instead of ``load_config(args.config)``, for
            a command with built-in operations and pipelines (``resilio-customerio outbox``);
            with it, ``drain`` does not need ``--config``.
    """
    outbox = subparsers.add_parser(
        "outbox",
        help="inspect, drain and maintain the outbox",
        description="Inspect, drain and maintain the outbox of queued work.",
    )
    outbox.set_defaults(registry_factory=registry_factory)
    sub = outbox.add_subparsers(dest="outbox_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("stats", help="count items per state")
    _common(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_stats)

    for name, help_text in (("list", "list items"), ("dead", "list dead-lettered items")):
        p = sub.add_parser(name, help=help_text)
        _common(p)
        if name == "list":
            p.add_argument(
                "--state",
                choices=[s.value for s in ItemState],
                default="pending",
                help="which items (default: pending)",
            )
        p.add_argument(
            "--limit", type=_positive_int, default=50, help="most items to show (default 50)"
        )
        p.add_argument("--show-payload", action="store_true", help="also print payloads")
        p.add_argument("--json", action="store_true", help="print JSON lines")
        p.set_defaults(func=_list)
        if name == "dead":
            p.set_defaults(state="dead")

    p = sub.add_parser("drain", help="replay due items through their operations")
    _common(p)
    p.add_argument(
        "--limit", type=_positive_int, default=1000, help="most items to replay (default 1000)"
    )
    p.add_argument("--forever", action="store_true", help="keep draining until SIGTERM/SIGINT")
    p.add_argument("--lease", type=_duration, default=30.0, help="lease per item (default 30s)")
    p.add_argument(
        "--max-attempts", type=_positive_int, default=20, help="attempts before dead (20)"
    )
    p.add_argument("--grace", type=_duration, default=10.0, help="shutdown grace (default 10s)")
    p.set_defaults(func=_drain)

    p = sub.add_parser("requeue", help="make dead items pending again")
    _common(p)
    p.add_argument("ids", nargs="*", metavar="ITEM_ID", help="items to requeue")
    p.add_argument("--all", action="store_true", help="requeue every dead item")
    p.set_defaults(func=_requeue)

    p = sub.add_parser("purge", help="delete done or dead items")
    _common(p)
    p.add_argument("--state", choices=["done", "dead"], default="done", help="default: done")
    p.add_argument("--older-than", type=_duration, default=None, help="e.g. 7d, 12h, 3600")
    p.set_defaults(func=_purge)


# -- opening ---------------------------------------------------------------------------------


def _registry(args: argparse.Namespace) -> Any:
    factory = getattr(args, "registry_factory", None)
    if factory is not None:
        return factory(args)
    if not args.config:
        return None
    from resilio.config import load_config

    return load_config(args.config, telemetry=False)


def _open(args: argparse.Namespace, registry: Any = None) -> Outbox:
    if args.sqlite and args.redis:
        raise _UsageError("give --sqlite or --redis, not both")
    if args.sqlite:
        try:  # never create an outbox here: a mistyped path must not look like an empty outbox
            return Outbox.sqlite(args.sqlite, create=False)
        except (FileNotFoundError, ValueError) as exc:
            raise _UsageError(str(exc)) from None
    if args.redis:
        return Outbox.redis(args.redis, name=args.name)
    if registry is None:
        registry = _registry(args)
    if registry is None:
        raise _UsageError("give --config FILE, --sqlite PATH or --redis URL")
    outbox = getattr(registry, "outbox", None)
    if outbox is None:
        if not args.config:
            raise _UsageError("give --config FILE, --sqlite PATH or --redis URL")
        raise _UsageError(f"{args.config}: no 'outbox:' section")
    return outbox  # type: ignore[no-any-return]


def _run(args: argparse.Namespace, body: Any) -> int:
    # A closed standard output (``resilio outbox list ... | head``) exits 141 quietly, as the
    # other ``resilio`` commands do, also under another program (``resilio-customerio outbox``).
    from resilio.cli import quiet_on_closed_pipe

    return quiet_on_closed_pipe(lambda: _report_errors(args, body))


def _report_errors(args: argparse.Namespace, body: Any) -> int:
    out: TextIO = sys.stdout
    try:
        return int(body(args, out))
    except BrokenPipeError:
        raise  # the reader went away: not an error of the outbox
    except _UsageError as exc:
        print(f"resilio outbox: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # report configuration and connection problems, not tracebacks
        from resilio.errors import ConfigError

        if isinstance(exc, ConfigError):
            for line in exc.problems:
                print(line, file=sys.stderr)
            return 1
        print(f"resilio outbox: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- commands --------------------------------------------------------------------------------


def _stats(args: argparse.Namespace) -> int:
    def body(args: argparse.Namespace, out: TextIO) -> int:
        outbox = _open(args)
        s = outbox.stats()
        row = {
            "pending": s.pending,
            "leased": s.leased,
            "dead": s.dead,
            "done": s.done,
            "oldest_pending_at": s.oldest_pending_at,
        }
        if args.json:
            print(json.dumps(row), file=out)
        else:
            for key in ("pending", "leased", "dead", "done"):
                print(f"{key:<8} {row[key]:>10}", file=out)
            print(f"{'oldest':<8} {_when(s.oldest_pending_at):>10}", file=out)
        outbox.close()
        return 0

    return _run(args, body)


def _item_row(item: OutboxItem, payload: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "item_id": item.item_id,
        "operation": item.operation,
        "state": item.state.value,
        "attempts": item.attempts,
        "next_run_at": _when(item.next_run_at),
        "created_at": _when(item.created_at),
        "error_kind": item.error_kind,
        "error_reason": item.error_reason,
        "idempotency_key": item.idempotency_key,
    }
    if payload:
        row["payload"] = item.payload
    return row


def _list(args: argparse.Namespace) -> int:
    def body(args: argparse.Namespace, out: TextIO) -> int:
        outbox = _open(args)
        items = outbox.items(args.state, args.limit)
        for item in items:
            row = _item_row(item, args.show_payload)
            if args.json:
                print(json.dumps(row), file=out)
                continue
            error = f"{row['error_kind']}: {row['error_reason'] or '-'}" if item.error_kind else "-"
            line = (
                f"{item.item_id}  {item.operation:<24} {item.state.value:<7} "
                f"attempts={item.attempts:<3} next={row['next_run_at']}  error={error}"
            )
            if args.show_payload:
                line += "  payload=" + json.dumps(item.payload)
            print(line, file=out)
        if not args.json:
            print(f"{len(items)} item(s)", file=out)
        outbox.close()
        return 0

    return _run(args, body)


def _drain(args: argparse.Namespace) -> int:
    def body(args: argparse.Namespace, out: TextIO) -> int:
        if not args.config and getattr(args, "registry_factory", None) is None:
            raise _UsageError("drain needs --config FILE (for the operations' pipelines)")
        registry = _registry(args)
        outbox = _open(args, registry)
        from resilio.outbox.drainer import Drainer

        drainer = Drainer(outbox, registry, lease=args.lease, max_attempts=args.max_attempts)
        if args.forever:
            drainer.install_signal_handlers(grace=args.grace)
            drainer.run(threading.Event())
            print("stopped", file=out)
            outbox.close()
            return 0
        r = drainer.drain_once(args.limit)
        print(
            f"delivered {r.delivered}, retried {r.retried}, dead {r.dead}, "
            f"skipped {r.skipped}, lost leases {r.lost}",
            file=out,
        )
        outbox.close()
        if r.skipped:
            reasons = "; ".join(r.skipped_operations[name] for name in sorted(r.skipped_operations))
            print(
                f"resilio outbox drain: skipped {r.skipped} item(s) this drainer cannot run "
                f"({reasons}); they stay pending, attempts unchanged, due again in "
                f"{args.lease:g}s",
                file=sys.stderr,
            )
            return 1
        return 0

    return _run(args, body)


def _requeue(args: argparse.Namespace) -> int:
    def body(args: argparse.Namespace, out: TextIO) -> int:
        if not args.ids and not args.all:
            raise _UsageError("give item ids or --all")
        outbox = _open(args)
        n = outbox.requeue(None if args.all else args.ids)
        print(f"requeued {n} item(s)", file=out)
        outbox.close()
        missing = 0 if args.all else len(set(args.ids)) - n
        if missing > 0:
            print(
                f"resilio outbox requeue: {missing} of the given item id(s) are not dead items "
                "(unknown, or not in the dead state)",
                file=sys.stderr,
            )
            return 1
        return 0

    return _run(args, body)


def _purge(args: argparse.Namespace) -> int:
    def body(args: argparse.Namespace, out: TextIO) -> int:
        outbox = _open(args)
        n = outbox.purge(args.state, older_than=args.older_than)
        print(f"purged {n} {args.state} item(s)", file=out)
        outbox.close()
        return 0

    return _run(args, body)
