"""The ``resilio health`` command: print the health report, or serve it over HTTP.

``resilio health`` prints the JSON report and exits 0 (healthy or degraded) or 1 (unhealthy);
``resilio health --serve PORT`` serves it until interrupted. ``--config FILE`` builds the
pipelines declared in a configuration file first, so they are reported even before any call.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["main", "register", "run"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``health`` subcommand to a :mod:`argparse` subparsers object.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The ``health`` parser; its ``func`` default is :func:`run`.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "health",
        help="print the health report of pipelines, or serve it over HTTP",
        description=__doc__,
    )
    parser.add_argument("--serve", metavar="PORT", type=int, help="serve the report on PORT")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--config", metavar="FILE", help="build the pipelines of this config file")
    parser.add_argument("--probe", action="store_true", help="run registered active probes")
    parser.set_defaults(func=run)
    return parser


def _load(path: str) -> Any:
    from resilio.config import load_config
    from resilio.errors import ConfigError

    try:
        return load_config(path)
    except (ConfigError, OSError) as exc:
        raise SystemExit(f"resilio health: cannot load {path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Run the ``health`` subcommand.

    Returns:
        The exit status: 0 when healthy or degraded, 1 when unhealthy.
    """
    from resilio.telemetry.health import health
    from resilio.telemetry.http import serve

    source: Any = None
    if args.config:
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
