"""v2 batching: splitting under the limits, 207 per-item results and the buffered mode."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from resilio.classify import ErrorKind
from resilio.testing import FakeClock
from resilio_customerio import BatchResult, InvalidRequest, PayloadTooLarge, ResilientCustomerIO
from resilio_customerio.batching import BatchBuffer, parse_errors, size_of, split
from resilio_customerio.payload import MAX_BATCH_BYTES
from resilio_customerio.testing import Simulator
from resilio_customerio.ulid import is_ulid

from ._adapter import make


def op(n: int, pad: int = 0) -> dict[str, Any]:
    return {
        "type": "person",
        "action": "identify",
        "identifiers": {"id": str(n)},
        "attributes": {"pad": "x" * pad},
    }


@pytest.fixture
def cio(cio_simulator: Simulator, clock: FakeClock) -> Iterator[ResilientCustomerIO]:
    with make(cio_simulator, clock) as adapter:
        yield adapter


class TestSplit:
    def test_groups_stay_under_the_request_limit(self) -> None:
        """Operations are grouped in order, each request body under 500 KB."""
        ops = [op(i, pad=30_000) for i in range(40)]
        groups = split(ops)
        assert [i for g in groups for i in g] == list(range(40))
        assert len(groups) > 1
        for group in groups:
            assert size_of([ops[i] for i in group]) <= MAX_BATCH_BYTES

    def test_exact_fit(self) -> None:
        """A group is cut exactly where the next operation would cross the limit."""
        ops = [op(i, pad=100) for i in range(10)]
        limit = size_of(ops[:3])
        groups = split(ops, max_bytes=limit)
        assert groups[0] == [0, 1, 2]

    def test_oversized_operation_is_refused(self) -> None:
        """One operation over 32 KB is refused naming the limit."""
        with pytest.raises(PayloadTooLarge, match="v2 operations <= 32768 bytes"):
            split([op(1), op(2, pad=33_000)])


class TestParseErrors:
    def test_reads_batch_indexes(self) -> None:
        """A 207 body maps indexes to reason and field."""
        body = {"errors": [{"batch_index": 2, "reason": "invalid", "field": "action"}]}
        assert parse_errors(body) == {2: ("invalid", "action")}

    @pytest.mark.parametrize("body", [None, {}, {"errors": "x"}, {"errors": [{"x": 1}, 3]}])
    def test_tolerates_junk(self, body: Any) -> None:
        """Malformed bodies name no errors."""
        assert parse_errors(body) == {}


class TestAdapterBatch:
    def test_partial_failure(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """A 207 becomes per-item results: which succeeded, which failed and why."""
        result = cio.batch(
            [op(1), {"type": "person", "action": "bogus", "identifiers": {"id": "2"}}, op(3)]
        )
        assert isinstance(result, BatchResult)
        assert not result.ok
        assert result.succeeded == [0, 2]
        assert [(f.index, f.field) for f in result.failed] == [(1, "action")]
        assert [f.kind for f in result.failed] == [ErrorKind.PERMANENT]
        assert [i.kind for i in result.items if i.ok] == [None, None]
        assert cio_simulator.customer("3") is not None

    def test_whole_request_failure_carries_the_errors_kind(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """A batch request refused as a whole (400) marks each operation with its error's kind."""
        cio_simulator.faults.add("batch", status=400)
        result = cio.batch([op(1), op(2)])
        assert [(i.ok, i.kind) for i in result.items] == [(False, ErrorKind.PERMANENT)] * 2
        assert all(isinstance(i.error, InvalidRequest) for i in result.items)

    def test_large_batches_are_split(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """600 KB of operations go out in two requests, each accepted."""
        result = cio.batch([op(i, pad=900) for i in range(600)])
        assert result.ok
        assert result.requests == len(cio_simulator.requests) == 2

    def test_event_ops_get_ids(self, cio: ResilientCustomerIO, cio_simulator: Simulator) -> None:
        """Event operations without an id get a ULID; given ids are kept."""
        cio.batch(
            [
                {"type": "person", "action": "event", "identifiers": {"id": "1"}, "name": "a"},
                {
                    "type": "person",
                    "action": "event",
                    "identifiers": {"id": "1"},
                    "name": "b",
                    "id": "01HZX3M5B3QJ0E3XN3V6YV2V4C",
                },
            ]
        )
        sent = cio_simulator.requests[-1].body["batch"]
        assert is_ulid(sent[0]["id"])
        assert sent[1]["id"] == "01HZX3M5B3QJ0E3XN3V6YV2V4C"

    def test_whole_request_failure_marks_every_item(
        self, cio: ResilientCustomerIO, cio_simulator: Simulator
    ) -> None:
        """A 401 for the request fails each of its operations with the reason."""
        cio_simulator.faults.add("batch", status=401)
        result = cio.batch([op(1), op(2)])
        assert [f.index for f in result.failed] == [0, 1]
        assert all(f.error is not None for f in result.failed)

    def test_empty_batch_is_refused(self, cio: ResilientCustomerIO) -> None:
        """An empty list is refused before sending."""
        from resilio_customerio import InvalidRequest

        with pytest.raises(InvalidRequest, match="empty"):
            cio.batch([])


class TestBuffer:
    def test_count_bound_flushes(self) -> None:
        """Reaching max_operations sends a batch without waiting for the delay."""
        sent: list[list[dict[str, Any]]] = []
        done = threading.Event()

        def send(ops: list[dict[str, Any]]) -> None:
            sent.append(ops)
            done.set()

        buffer = BatchBuffer(send, max_operations=3, max_delay=3600)
        for i in range(3):
            buffer.add(op(i))
        assert done.wait(5)
        buffer.close()
        assert [len(b) for b in sent] == [3]

    def test_time_bound_flushes(self) -> None:
        """A lone operation is sent after max_delay."""
        done = threading.Event()
        buffer = BatchBuffer(lambda ops: done.set(), max_operations=100, max_delay=0.05)
        buffer.add(op(1))
        assert done.wait(5)
        buffer.close()

    def test_close_flushes(self) -> None:
        """close() sends what is left and stops the thread."""
        sent: list[int] = []
        buffer = BatchBuffer(lambda ops: sent.append(len(ops)), max_operations=100, max_delay=3600)
        buffer.add(op(1))
        buffer.add(op(2))
        buffer.close()
        assert sent == [2]
        with pytest.raises(RuntimeError):
            buffer.add(op(3))

    def test_byte_bound_splits(self) -> None:
        """Operations that would overflow max_bytes start a new batch."""
        sent: list[int] = []
        buffer = BatchBuffer(lambda ops: sent.append(len(ops)), max_bytes=2_000, max_delay=3600)
        for i in range(4):
            buffer.add(op(i, pad=700))
        buffer.close()
        assert sent == [2, 2]

    def test_errors_reach_on_result(self) -> None:
        """A failing send is reported to on_result and the buffer keeps working."""
        results: list[Any] = []

        def send(ops: list[dict[str, Any]]) -> None:
            raise RuntimeError("down")

        buffer = BatchBuffer(send, max_delay=3600, on_result=results.append)
        buffer.add(op(1))
        buffer.flush()
        buffer.add(op(2))
        buffer.close()
        assert [type(r) for r in results] == [RuntimeError, RuntimeError]

    @pytest.mark.parametrize(
        "options", [{"max_operations": 0}, {"max_bytes": 600_000}, {"max_delay": 0}]
    )
    def test_bounds_are_validated(self, options: dict[str, Any]) -> None:
        """Bounds must be positive and within the API's limit."""
        with pytest.raises(ValueError):
            BatchBuffer(lambda ops: None, **options)

    def test_buffered_adapter(self, cio_simulator: Simulator, clock: FakeClock) -> None:
        """In buffered mode identify and track become one v2 batch, sent on flush()."""
        with make(cio_simulator, clock, buffer={"max_delay": 3600}) as cio:
            assert cio.identify("42", plan="pro") is None
            cio.track("42", "purchase", {"n": 1})
            assert cio_simulator.requests == []
            cio.flush()
            assert len(cio_simulator.requests) == 1
            batch = cio_simulator.requests[0].body["batch"]
            assert [o["action"] for o in batch] == ["identify", "event"]
            assert is_ulid(batch[1]["id"])
            cio.identify("43", plan="free")
        assert len(cio_simulator.requests) == 2  # close() flushed the rest
        assert cio_simulator.customer("43") == {"plan": "free"}


class TestPerFieldLimits:
    @pytest.mark.parametrize(
        ("operation", "limit"),
        [
            (
                {
                    "type": "person",
                    "action": "identify",
                    "identifiers": {"id": "42"},
                    "attributes": {"bio": "x" * 1001},
                },
                "attribute values <= 1000 bytes ('bio')",
            ),
            (
                {
                    "type": "person",
                    "action": "event",
                    "identifiers": {"id": "42"},
                    "name": "e" * 101,
                    "attributes": {},
                },
                "event names <= 100 bytes",
            ),
        ],
        ids=["attribute-value", "event-name"],
    )
    def test_a_field_over_its_limit_refuses_the_batch_before_sending(
        self,
        cio: ResilientCustomerIO,
        cio_simulator: Simulator,
        operation: dict[str, Any],
        limit: str,
    ) -> None:
        """batch() checks the v1 per-field limits too: nothing is sent, the error names it."""
        before = len(cio_simulator.requests)
        with pytest.raises(PayloadTooLarge, match=re.escape(limit)):
            cio.batch(
                [{"type": "person", "action": "identify", "identifiers": {"id": "1"}}, operation]
            )
        assert len(cio_simulator.requests) == before
