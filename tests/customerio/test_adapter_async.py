"""AsyncResilientCustomerIO: coroutines over a bounded thread pool, same guarantees."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import resilio
from resilio.outbox import Outbox, Queued
from resilio.testing import FakeClock
from resilio_customerio import AsyncResilientCustomerIO, OutcomeUnknown, ServiceUnavailable
from resilio_customerio.testing import Simulator
from resilio_customerio.ulid import is_ulid

from ._adapter import adapter_kwargs, last, make_async

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@contextlib.contextmanager
def no_gc_pause() -> Iterator[None]:
    """Keep the garbage collector out of a lag measurement.

    Late in the suite a full collection takes about 0.1 s and holds the GIL; falling inside the
    window, it shows as loop lag that has nothing to do with the adapter.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def ticker(lags: list[float]) -> None:
    """Record how late each 10 ms sleep on the loop wakes up, until cancelled."""
    while True:
        start = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - start - 0.01)


@pytest.fixture
async def acio(
    cio_simulator: Simulator, clock: FakeClock
) -> AsyncIterator[AsyncResilientCustomerIO]:
    adapter = make_async(cio_simulator, clock, max_workers=4)
    async with adapter:
        yield adapter


class TestAsyncOperations:
    async def test_identify_and_track(
        self, acio: AsyncResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """identify and track work as coroutines and send what the sync adapter sends."""
        await acio.identify(0, plan="pro")
        await acio.track(0, "purchase", {"n": 1})
        assert cio_simulator.customer("0") == {"plan": "pro"}
        assert is_ulid(last(cio_simulator).body["id"])

    async def test_every_operation_exists(self, acio: AsyncResilientCustomerIO) -> None:
        """Every sync method has a coroutine twin."""
        from resilio_customerio.operations import SPECS

        for spec in SPECS.values():
            assert asyncio.iscoroutinefunction(getattr(acio, spec.method))

    async def test_send(self, acio: AsyncResilientCustomerIO, cio_simulator: Simulator) -> None:
        """A transactional send returns the API's answer."""
        answer = await acio.send_sms({"transactional_message_id": 1, "identifiers": {"id": "1"}})
        assert answer["delivery_id"] == cio_simulator.deliveries()[0].delivery_id

    async def test_retries_keep_the_event_id(
        self, acio: AsyncResilientCustomerIO, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """Async retries wait on resilio's clock and resend the same event id."""
        cio_simulator.faults.add("track", status=503, first=2)
        await acio.track("42", "purchase")
        assert len({r.body["id"] for r in cio_simulator.requests}) == 1
        assert len(cio_simulator.requests) == 3
        assert len(clock.sleeps) == 2

    async def test_persistent_failure(
        self, acio: AsyncResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """A persistent 500 raises ServiceUnavailable after exactly 5 requests."""
        cio_simulator.faults.add("identify", status=500)
        with pytest.raises(ServiceUnavailable):
            await acio.identify("42", a=1)
        assert len(cio_simulator.requests) == 5

    async def test_context_variables_reach_the_worker(
        self, acio: AsyncResilientCustomerIO, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The caller's context variables are visible in the thread that makes the attempt."""
        seen: list[str] = []
        original = acio.sync.attempt

        def spy(name: str, payload: dict[str, Any]) -> Any:
            seen.append(REQUEST_ID.get())
            return original(name, payload)

        monkeypatch.setattr(acio.sync, "attempt", spy)
        REQUEST_ID.set("req-7")
        await acio.identify("42", a=1)
        assert seen == ["req-7"]

    async def test_event_loop_is_not_blocked(
        self, acio: AsyncResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """A slow answer (0.3 s) never stalls a 10 ms ticker on the same loop."""
        cio_simulator.faults.add("identify", latency=0.3)
        lags: list[float] = []
        with no_gc_pause():
            task = asyncio.create_task(ticker(lags))
            await acio.identify("42", a=1)
            task.cancel()
        assert len(lags) >= 10
        assert max(lags) < 0.1

    async def test_non_idempotent_timeout_is_not_repeated(
        self, cio_simulator: Simulator, clock: FakeClock
    ) -> None:
        """A send whose answer comes after the client timeout is never sent again."""
        cio_simulator.faults.add("send_email", timeout_after_commit=1.0, first=1)
        async with make_async(cio_simulator, clock, timeout=0.3) as acio:
            with pytest.raises(OutcomeUnknown):
                await acio.send_email({"transactional_message_id": 1, "identifiers": {"id": "1"}})
        assert len(cio_simulator.deliveries()) == 1
        assert len(cio_simulator.requests) == 1

    async def test_outbox_and_async_drainer(
        self, cio_simulator: Simulator, clock: FakeClock, tmp_path: Path
    ) -> None:
        """With an outbox, an outage queues the call; the async drainer replays it."""
        outbox = Outbox.sqlite(tmp_path / "outbox.sqlite3", clock=clock)
        cio_simulator.faults.outage = (0.0, 1e9)
        async with make_async(cio_simulator, clock, outbox=outbox) as acio:
            receipt = await acio.track("42", "late")
            assert isinstance(receipt, Queued)
            cio_simulator.faults.outage = None
            clock.advance(3600)
            report = await resilio.Drainer(outbox, acio, clock=clock).drain_once_async()
        assert report.delivered == 1
        assert [e["id"] for e in cio_simulator.events("42")] == [receipt.idempotency_key]


class TestAsyncFactory:
    async def test_auto_region_built_on_the_loop_warns(
        self, make_simulator: Any, clock: FakeClock
    ) -> None:
        """Building with region="auto" on a running loop blocks it: a RuntimeWarning says so."""
        sim = make_simulator(region="eu")
        with pytest.warns(RuntimeWarning, match=r"use 'await AsyncResilientCustomerIO.create"):
            acio = AsyncResilientCustomerIO(**adapter_kwargs(sim, clock, region="auto"))
        acio.close()

    async def test_create_does_not_warn(self, make_simulator: Any, clock: FakeClock) -> None:
        """create() asks from a worker thread: no warning."""
        sim = make_simulator(region="eu")
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            acio = await AsyncResilientCustomerIO.create(
                **adapter_kwargs(sim, clock, region="auto")
            )
        acio.close()

    async def test_create_resolves_auto_off_the_loop(
        self, make_simulator: Any, clock: FakeClock
    ) -> None:
        """create() with region="auto" resolves the region while a 10 ms ticker keeps running."""
        from customerio import Regions

        sim = make_simulator(region="eu")
        sim.faults.add("region", latency=0.3)
        lags: list[float] = []
        with no_gc_pause():
            task = asyncio.create_task(ticker(lags))
            acio = await AsyncResilientCustomerIO.create(
                **adapter_kwargs(sim, clock, region="auto"), max_workers=2
            )
            task.cancel()
        async with acio:
            assert acio.sync.region == Regions.EU
            assert acio.max_workers == 2
            await acio.identify("1", a=1)
        assert [r.endpoint for r in sim.requests] == ["region", "identify"]
        assert len(lags) >= 10
        assert max(lags) < 0.1
