"""The ``resilio health`` command: report the pipelines of a configuration file.

``resilio health --config FILE`` builds the pipelines declared in ``FILE`` in this (new)
process, prints their JSON report and exits 0 (healthy or degraded) or 1 (unhealthy);
``--serve PORT`` serves that report over HTTP until interrupted. ``--config`` is required: the
command cannot see another process's pipelines, and a report of its own empty process would
say "healthy" whatever the application's state. Use it to check a configuration and to run
active probes (``--probe``); for the live state of an application, mount
:func:`resilio.telemetry.http.wsgi_app` or :func:`~resilio.telemetry.http.asgi_app` in the
application, or run :func:`~resilio.telemetry.http.make_health_server` in a thread of it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["DESCRIPTION", "main", "register", "run"]

DESCRIPTION = (
    "Build the pipelines of a configuration file in this process and print their health "
    "report as JSON (exit status 0 when healthy or degraded, 1 when unhealthy), or serve it "
    "over HTTP with --serve. This process cannot see a running application's pipelines: its "
    "breakers start closed. For the live state of an application, mount "
    "resilio.telemetry.http.wsgi_app() or asgi_app() in it, or run make_health_server() in "
    "one of its threads."
)
"""The ``--help`` description of ``resilio health`` (plain text, no markup)."""

_MISSING_CONFIG = (
    "--config FILE is required: this command reports the pipelines of a configuration file, "
    "built in this new process, and cannot see a running application's pipelines (without a "
    "file it would report its own empty process as healthy). For a live readiness check, "
    "mount resilio.telemetry.http.wsgi_app() or asgi_app() in the application, or run "
    "make_health_server() in one of its threads."
)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``health`` subcommand to a :mod:`argparse` subparsers object.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The ``health`` parser; its ``func`` default is :func:`run`.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "health",
        help="report the health of a config file's pipelines, or serve it over HTTP",
        description=DESCRIPTION,
        usage="%(prog)s --config FILE [--probe] [--serve PORT [--host HOST]]",
    )
    parser.add_argument("--serve", metavar="PORT", type=int, help="serve the report on PORT")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="required: the configuration file whose pipelines are built and reported",
    )
    parser.add_argument("--probe", action="store_true", help="run registered active probes")
    parser.set_defaults(func=run, health_parser=parser)
    return parser


def _load(path: str) -> Any:
    from resilio.config import load_config
    from resilio.errors import ConfigError

    try:
        return load_config(path)
    except (ConfigError, OSError) as exc:
        raise SystemExit(f"resilio health: cannot load {path}: {exc}") from None


def _usage_error(args: argparse.Namespace, message: str) -> None:
    parser = getattr(args, "health_parser", None)
    if isinstance(parser, argparse.ArgumentParser):
        parser.error(message)  # prints the usage and the message, exits 2
    print(f"resilio health: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run(args: argparse.Namespace) -> int:
    """Run the ``health`` subcommand.

    Raises:
        SystemExit: With status 2 when ``--config`` is missing, or with a message naming the
            file when it cannot be loaded.

    Returns:
        The exit status: 0 when healthy or degraded, 1 when unhealthy.
    """
    from resilio.telemetry.health import health
    from resilio.telemetry.http import serve

    if not args.config:
        _usage_error(args, _MISSING_CONFIG)
    source = _load(args.config)
    if args.serve is not None:
        print(f"serving health on http://{args.host}:{args.serve}/health", file=sys.stderr)
        try:
            serve(args.serve, source, host=args.host, probe=args.probe)
        except KeyboardInterrupt:
            return 0
        return 0
    report = health(source, probe=args.probe)
    print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    return 1 if report.http_status == 503 else 0


def main(argv: list[str] | None = None) -> int:
    """Run ``resilio health`` on its own (``python -m resilio.telemetry.cli``)."""
    parser = argparse.ArgumentParser(prog="resilio")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
