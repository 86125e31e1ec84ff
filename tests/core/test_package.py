"""The top-level package: what ``import resilio`` gives."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("expression", "shown"),
    [
        ("resilio.outbox.Outbox", "resilio.outbox._outbox.Outbox"),
        ("resilio.stores.__name__", "resilio.stores"),
        ("resilio.config.load_config.__name__", "load_config"),
        ("resilio.telemetry.__name__", "resilio.telemetry"),
        ("resilio.plugins.__name__", "resilio.plugins"),
    ],
)
def test_subpackages_need_no_import_of_their_own(expression: str, shown: str) -> None:
    """In a fresh interpreter, ``import resilio`` alone gives ``resilio.outbox`` and the rest."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import resilio; print({expression})"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert shown in proc.stdout
