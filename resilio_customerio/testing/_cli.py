"""Command-line entry point: run the simulator in the foreground until interrupted."""

from __future__ import annotations

import argparse
import sys
import threading

from resilio_customerio.testing._faults import Faults
from resilio_customerio.testing._simulator import Simulator


def serve_forever(
    simulator: Simulator,
    *,
    stop: threading.Event | None = None,
    announce: bool = True,
) -> None:
    """Start ``simulator``, print how to reach it, and serve until Ctrl-C or ``stop`` is set.

    Args:
        simulator: A simulator that is not started yet.
        stop: Event that ends serving when set (for embedding); Ctrl-C always does.
        announce: Print the address, CA path and credentials on standard output.
    """
    stop = stop or threading.Event()
    with simulator:
        if announce:
            _announce(simulator)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass


def _announce(sim: Simulator) -> None:
    lines = [
        "Customer.io simulator listening",
        f"  host:       {sim.host}",
        f"  port:       {sim.port}",
        f"  track url:  {sim.track_url}",
        f"  app url:    {sim.api_url}",
        f"  region:     {sim.region}",
        f"  site_id:    {sim.site_id}",
        f"  api_key:    {sim.api_key}",
        f"  app_key:    {sim.app_key}",
    ]
    if sim.ca_path:
        lines += [f"  ca:         {sim.ca_path}", f"  export REQUESTS_CA_BUNDLE={sim.ca_path}"]
    lines += [
        "To send a file to it from another shell (with the REQUESTS_CA_BUNDLE export above):",
        *send_command(sim),
    ]
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)


def send_command(sim: Simulator) -> list[str]:
    """Return the lines of a shell command that sends a JSONL file to ``sim``.

    Both APIs are pointed at the simulator (``--host``/``--port``/``--url-prefix`` for the
    Track API, ``--api-url`` for the App API), so no line goes to the real Customer.io.

    Args:
        sim: A started simulator.

    Returns:
        The command's lines, indented, joined by shell continuations.
    """
    return [
        f"  export CUSTOMERIO_SITE_ID={sim.site_id} CUSTOMERIO_API_KEY={sim.api_key} "
        f"CUSTOMERIO_APP_KEY={sim.app_key}",
        f"  resilio-customerio send FILE.jsonl --host {sim.host} --port {sim.port} \\",
        f"      --url-prefix {sim.url_prefix} --api-url {sim.api_url}",
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resilio-customerio simulate",
        description="Run a local Customer.io Track/App API simulator (loopback only).",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--site-id", default="site", help="Track API site id to accept")
    parser.add_argument("--api-key", default="key", help="Track API key to accept")
    parser.add_argument("--app-key", default="appkey", help="App API key to accept")
    parser.add_argument("--region", choices=("us", "eu"), default="us")
    parser.add_argument("--no-tls", action="store_true", help="serve plain HTTP")
    parser.add_argument(
        "--rate-limit", type=int, default=None, help="answer 429 past N requests per second"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for probabilistic faults")
    return parser


def run_simulator_cli(argv: list[str] | None = None) -> int:
    """Parse arguments, run the simulator until Ctrl-C, and return an exit status.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns:
        0 on a clean stop.
    """
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    simulator = Simulator(
        site_id=args.site_id,
        api_key=args.api_key,
        app_key=args.app_key,
        region=args.region,
        tls=not args.no_tls,
        port=args.port,
        faults=Faults(rate_limit=args.rate_limit, seed=args.seed),
    )
    serve_forever(simulator)
    return 0
