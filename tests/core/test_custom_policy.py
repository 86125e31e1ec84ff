"""Policies of one's own: the public parts, the layer rule, how their refusals are classified."""

from __future__ import annotations

from typing import Any

import pytest

import resilio
from resilio.classify import ErrorKind, default_classifier
from resilio.policies import Env, Failure, Layer, Policy
from resilio.testing import FakeClock


def test_a_layer_overriding_only_run_is_refused_at_definition() -> None:
    """A layer with run() but no run_async() would be skipped by async pipelines: TypeError."""
    with pytest.raises(TypeError, match=r"OnlySync overrides run\(\) but not run_async\(\)"):

        class OnlySync(Layer):
            def run(self, fn: Any, args: Any, kwargs: Any, ctx: Any) -> Any:
                return self.inner.run(fn, args, kwargs, ctx)


def test_a_layer_overriding_only_run_async_is_refused_too() -> None:
    """And the other way round."""
    with pytest.raises(TypeError, match=r"OnlyAsync overrides run_async\(\) but not run\(\)"):

        class OnlyAsync(Layer):
            async def run_async(self, fn: Any, args: Any, kwargs: Any, ctx: Any) -> Any:
                return await self.inner.run_async(fn, args, kwargs, ctx)


def test_a_subclass_inherits_both_paths() -> None:
    """A subclass of a complete layer that changes neither path is fine."""

    class Both(Layer):
        def run(self, fn: Any, args: Any, kwargs: Any, ctx: Any) -> Any:
            return self.inner.run(fn, args, kwargs, ctx)

        async def run_async(self, fn: Any, args: Any, kwargs: Any, ctx: Any) -> Any:
            return await self.inner.run_async(fn, args, kwargs, ctx)

    class Tagged(Both):
        __slots__ = ()

    assert Tagged.run is Both.run


@pytest.mark.parametrize(
    ("error", "kind", "retry_after"),
    [
        (resilio.Rejected("quota used", retry_after=60.0), ErrorKind.THROTTLED, 60.0),
        (resilio.Rejected("no"), ErrorKind.THROTTLED, None),
        (resilio.CircuitOpen("open", retry_after=5.0), ErrorKind.THROTTLED, 5.0),
        (resilio.TimeoutExceeded("slow"), ErrorKind.TRANSIENT, None),
    ],
)
def test_refusals_are_throttled_and_timeouts_transient(
    error: Exception, kind: ErrorKind, retry_after: float | None
) -> None:
    """A refusal by any policy says nothing about the service; a timeout does."""
    c = default_classifier(error)
    assert (c.kind, c.retry_after) == (kind, retry_after)


class Refuser(Policy):
    """Refuses every call with a plain Rejected."""

    kind = "refuser"

    def __init__(self) -> None:
        self.name = "refuser"
        self.options = None

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        return _RefuseLayer(inner, env, self)


class _RefuseLayer(Layer):
    __slots__ = ()

    def run(self, fn: Any, args: Any, kwargs: Any, ctx: Any) -> Any:
        return Failure(resilio.Rejected("refused", policy="refuser"))

    async def run_async(self, fn: Any, args: Any, kwargs: Any, ctx: Any) -> Any:
        return Failure(resilio.Rejected("refused", policy="refuser"))


def test_a_custom_refusal_never_counts_against_a_breaker(clock: FakeClock) -> None:
    """Five refusals under a breaker of threshold 1 leave it closed."""
    breaker = resilio.CircuitBreaker(failure_threshold=1)
    p = resilio.Pipeline([breaker, Refuser()], clock=clock)
    for _ in range(5):
        with pytest.raises(resilio.Rejected, match="refused"):
            p.execute(lambda: "never")
    assert breaker.snapshot().state is resilio.CircuitState.CLOSED
