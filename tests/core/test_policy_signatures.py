"""How the built-in policies are constructed in code."""

from __future__ import annotations

from typing import Any

import pytest

import resilio


@pytest.mark.parametrize(
    ("policy", "option", "value"),
    [
        (lambda: resilio.Retry(5), "attempts", 5),
        (lambda: resilio.CircuitBreaker(7), "failure_threshold", 7),
        (lambda: resilio.RateLimiter(20), "rate", 20.0),
        (lambda: resilio.Bulkhead(2), "max_concurrent", 2),
        (lambda: resilio.Idempotency(60), "ttl", 60.0),
        (lambda: resilio.Timeout(3), "seconds", 3.0),
    ],
)
def test_the_scalar_form_option_may_be_positional(policy: Any, option: str, value: Any) -> None:
    """Each policy takes its YAML scalar form's option positionally too (Bulkhead(2))."""
    assert getattr(policy().options, option) == value
