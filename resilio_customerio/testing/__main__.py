"""Run the simulator: ``python -m resilio_customerio.testing [--port N] ...``."""

from resilio_customerio.testing._cli import run_simulator_cli

if __name__ == "__main__":
    raise SystemExit(run_simulator_cli())
