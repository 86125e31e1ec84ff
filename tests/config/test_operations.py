"""Tests of operations: validation, lookup with suggestions, and running them by name."""

from __future__ import annotations

from typing import Any

import pytest

import resilio
from resilio import Context, Operation
from resilio.config import NotRegisteredError, load_config
from resilio.plugins import manager
from resilio.testing import FakeClock

RUNS: list[Any] = []


def record(payload: Any) -> str:
    """A handler that records its payload."""
    RUNS.append(payload)
    return "done"


async def record_async(payload: Any) -> str:
    """An async handler."""
    RUNS.append(payload)
    return "async-done"


class Ops:
    """Registers two operations."""

    @resilio.hookimpl
    def resilio_register_operations(self, registry: Any) -> None:
        """Register the operations."""
        registry.add(Operation(name="shop.order", idempotent=False, handler=record, pipeline="w"))
        registry.add(Operation(name="shop.ping", idempotent=True, handler=record_async))


@pytest.fixture(autouse=True)
def _ops() -> None:
    """Register the test operations and forget earlier runs."""
    RUNS.clear()
    manager.register(Ops(), name="ops")


def test_operation_validation() -> None:
    """Operation names and fields are validated at construction."""
    with pytest.raises(ValueError, match="operation name"):
        Operation(name="bad name", idempotent=True)
    with pytest.raises(TypeError):
        Operation(name="x.y", idempotent="yes")  # type: ignore[arg-type]
    assert Operation(name="x.y", idempotent=True).pipeline_name == "x.y"


def test_name_and_idempotent_may_be_positional() -> None:
    """Operation("acme.ping", True) is the same operation as the keyword form."""
    operation = Operation("acme.ping", True)
    assert (operation.name, operation.idempotent) == ("acme.ping", True)
    assert operation == Operation(name="acme.ping", idempotent=True)


def test_options_after_idempotent_are_keyword_only() -> None:
    """A third positional argument is refused: classifier and the rest are keyword-only."""
    with pytest.raises(TypeError):
        Operation("acme.ping", True, lambda error, context: None)  # type: ignore[call-arg]


def test_unknown_operation_suggests_close_names() -> None:
    """An unknown operation name lists close matches."""
    registry = load_config({"pipelines": {}}, telemetry=False)
    with pytest.raises(
        NotRegisteredError, match=r"unknown operation 'shop.ordr' \(did you mean 'shop.order'\?\)"
    ):
        registry.operation("shop.ordr")


def test_execute_runs_handler_through_pipeline(clock: FakeClock) -> None:
    """execute() runs the handler on the payload through the operation's pipeline."""
    registry = load_config(
        {"pipelines": {"w": [{"retry": {"attempts": 2}}]}}, clock=clock, telemetry=False
    )
    ctx = Context()
    assert registry.execute("shop.order", {"id": 1}, context=ctx) == "done"
    assert RUNS == [{"id": 1}]
    assert (ctx.operation, ctx.idempotent, ctx.payload, ctx.pipeline) == (
        "shop.order",
        False,
        {"id": 1},
        "w",
    )


def test_execute_keeps_callers_idempotence() -> None:
    """A context's own idempotent value is not overwritten by the operation's."""
    registry = load_config({"pipelines": {"w": []}}, telemetry=False)
    ctx = Context(idempotent=True)
    registry.execute("shop.order", {}, context=ctx)
    assert ctx.idempotent is True


async def test_execute_async() -> None:
    """execute_async awaits an async handler through the pipeline named after the operation."""
    registry = load_config({"pipelines": {"shop.ping": [{"timeout": "1s"}]}}, telemetry=False)
    assert await registry.execute_async("shop.ping", {"n": 1}) == "async-done"
    with pytest.raises(TypeError, match="async handler"):
        registry.execute("shop.ping", {})


def test_missing_pipeline_for_operation() -> None:
    """Running an operation whose pipeline is not configured names the pipeline."""
    registry = load_config({"pipelines": {}}, telemetry=False)
    with pytest.raises(NotRegisteredError, match="unknown pipeline 'w'"):
        registry.execute("shop.order", {})
