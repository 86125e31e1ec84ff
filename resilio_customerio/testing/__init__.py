"""A local Customer.io simulator for testing integrations with the real ``customerio`` client.

Example:
    >>> from resilio_customerio.testing import Simulator
    >>> with Simulator() as sim, sim.trust():  # doctest: +SKIP
    ...     cio = customerio.CustomerIO(**sim.client_kwargs(), retries=0)
    ...     cio.identify("42", plan="pro")
    ...     assert sim.customer("42") == {"plan": "pro"}
"""

from resilio_customerio.testing._cli import run_simulator_cli, serve_forever
from resilio_customerio.testing._faults import FaultAction, FaultRule, Faults
from resilio_customerio.testing._routes import ENDPOINTS
from resilio_customerio.testing._simulator import Simulator
from resilio_customerio.testing._state import Delivery, RecordedRequest

__all__ = [
    "ENDPOINTS",
    "Delivery",
    "FaultAction",
    "FaultRule",
    "Faults",
    "RecordedRequest",
    "Simulator",
    "run_simulator_cli",
    "serve_forever",
]
