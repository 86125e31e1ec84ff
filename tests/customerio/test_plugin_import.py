"""The adapter's plugin: cheap to import, lazy operations, a fast answer for other errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from customerio import CustomerIOException

import resilio_customerio.plugin as plugin
from resilio import Context, Operation
from resilio.classify import ErrorKind
from resilio.plugins.catalog import OperationRegistry
from resilio_customerio.operations import SPECS, operations, set_replay_client

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "requests",
    "urllib3",
    "customerio",
    "resilio_customerio.classify",
    "resilio_customerio.errors",
    "resilio_customerio.operations",
    "resilio_customerio.client",
)


def _fresh(code: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys\n" + code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        check=True,
        timeout=60,
    )
    return proc.stdout.strip().splitlines()


def _registered() -> dict[str, Operation]:
    registry = OperationRegistry()
    plugin.resilio_register_operations(registry)
    return dict(registry.items())


def test_importing_the_plugin_imports_no_client_code() -> None:
    """Importing the plugin module imports neither requests, customerio nor the adapter."""
    (loaded,) = _fresh(
        "import resilio_customerio.plugin\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    assert loaded == "[]"


def test_a_pipeline_failure_outside_customerio_imports_no_client_code() -> None:
    """Building the plugin system and classifying a foreign failure import no client code."""
    (loaded,) = _fresh(
        "import resilio\n"
        "from resilio.plugins import _runtime\n"
        "p = resilio.Pipeline([], name='p', telemetry=False)\n"
        "assert 'resilio_customerio.plugin' in sys.modules\n"
        "def fail():\n"
        "    raise ConnectionError('down')\n"
        "try:\n"
        "    p.execute(fail)\n"
        "except ConnectionError:\n"
        "    pass\n"
        "assert _runtime.classify_with_plugins(ValueError(), resilio.Context('other')) is None\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    assert loaded == "[]"


def test_operation_table_matches_the_adapter() -> None:
    """The plugin's operations equal the adapter's: names, idempotence, descriptions, pipelines."""
    mine = {
        name: (op.idempotent, op.description, op.pipeline) for name, op in _registered().items()
    }
    theirs = {op.name: (op.idempotent, op.description, op.pipeline) for op in operations()}
    assert mine == theirs
    assert list(mine) == list(SPECS)


def test_lazy_handler_replays_through_the_adapter() -> None:
    """A registered handler delegates to the adapter's replay handler (no client: its error)."""
    set_replay_client(None)
    handler = _registered()["customerio.identify"].handler
    assert handler is not None
    assert handler.__name__ == "replay_identify"
    with pytest.raises(RuntimeError, match="no ResilientCustomerIO"):
        handler({"id": "9"})


def test_lazy_classifier_classifies_client_errors() -> None:
    """A registered operation's classifier is the adapter's table."""
    classifier = _registered()["customerio.track"].classifier
    assert classifier is not None
    error = CustomerIOException("503: https://x/api/v1/customers/1 {} ")
    result = classifier(error, Context("customerio.track"))
    assert result is not None
    assert result.kind is ErrorKind.TRANSIENT


def test_classify_hook_claims_client_exceptions_anywhere() -> None:
    """A customerio exception is classified even outside customerio operations."""
    error = CustomerIOException("429: https://x/api/v1/customers/1 {} ")
    result = plugin.resilio_classify(error=error, context=Context("other.op"))
    assert result is not None
    assert result.kind is ErrorKind.THROTTLED


def test_classify_hook_leaves_foreign_errors_alone() -> None:
    """requests and builtin errors outside customerio operations are left to other classifiers."""
    assert plugin.resilio_classify(error=requests.ReadTimeout(), context=Context("x")) is None
    assert plugin.resilio_classify(error=ConnectionError(), context=Context("x")) is None
    inside = plugin.resilio_classify(error=requests.ReadTimeout(), context=Context("customerio.x"))
    assert inside is not None
    assert inside.kind is ErrorKind.AMBIGUOUS
