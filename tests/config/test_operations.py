"""Tests of operations: validation, lookup with suggestions, and running them by name."""

from __future__ import annotations

import asyncio
import threading
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


LOOP_RAN = threading.Event()


def wait_for_loop(payload: Any) -> str:
    """A sync handler that returns only once the event loop ran something meanwhile."""
    RUNS.append((payload, threading.current_thread() is threading.main_thread()))
    return "loop ran" if LOOP_RAN.wait(timeout=5) else "loop blocked"


class Ops:
    """Registers two operations."""

    @resilio.hookimpl
    def resilio_register_operations(self, registry: Any) -> None:
        """Register the operations."""
        registry.add(Operation(name="shop.order", idempotent=False, handler=record, pipeline="w"))
        registry.add(Operation(name="shop.ping", idempotent=True, handler=record_async))
        registry.add(Operation(name="shop.wait", idempotent=True, handler=wait_for_loop))


@pytest.fixture(autouse=True)
def _ops() -> None:
    """Register the test operations and forget earlier runs."""
    RUNS.clear()
    LOOP_RAN.clear()
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


async def test_execute_async_runs_a_sync_handler_through_the_pipeline(clock: FakeClock) -> None:
    """execute_async runs a plain handler through the pipeline and returns its result."""
    registry = load_config(
        {"pipelines": {"w": [{"retry": {"attempts": 2}}]}}, clock=clock, telemetry=False
    )
    ctx = Context()
    assert await registry.execute_async("shop.order", {"id": 2}, context=ctx) == "done"
    assert RUNS == [{"id": 2}]
    assert (ctx.operation, ctx.idempotent, ctx.pipeline) == ("shop.order", False, "w")


async def test_execute_async_runs_a_sync_handler_off_the_event_loop() -> None:
    """A plain handler runs in a worker thread: the loop goes on while it runs."""
    registry = load_config({"pipelines": {"shop.wait": []}}, telemetry=False)
    call = asyncio.ensure_future(registry.execute_async("shop.wait", {"n": 3}))
    await asyncio.sleep(0)  # let the call start; then the loop runs this task again
    LOOP_RAN.set()
    assert await call == "loop ran"
    assert RUNS == [({"n": 3}, False)]


def test_missing_pipeline_for_operation() -> None:
    """Running an operation whose pipeline is not configured names the pipeline."""
    registry = load_config({"pipelines": {}}, telemetry=False)
    with pytest.raises(NotRegisteredError, match="unknown pipeline 'w'"):
        registry.execute("shop.order", {})
