"""Several drainer processes on one outbox share the work and never run one item concurrently."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.outbox._worker import Sink, open_outbox, spawn_worker

ITEMS = 60
DRAINERS = 3
RUN = 0.02  # seconds each handler run takes (the drainers' lease is 10 s)


def _overlaps(runs: list[tuple[str, int, float, float]]) -> list[tuple[str, int, int]]:
    """Return (key, pid, pid) for every two runs of one key whose intervals overlap."""
    by_key: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for key, pid, start, end in runs:
        by_key[key].append((start, end, pid))
    found = []
    for key, spans in by_key.items():
        spans.sort()
        latest_end, latest_pid = spans[0][1], spans[0][2]
        for start, end, pid in spans[1:]:
            if start < latest_end:
                found.append((key, latest_pid, pid))
            if end > latest_end:
                latest_end, latest_pid = end, pid
    return found


def _run(backend: str, target: str, sink_target: str) -> None:
    outbox = open_outbox(backend, target)
    sink = Sink(backend, sink_target)
    drainers = [spawn_worker("work", backend, target, sink_target) for _ in range(DRAINERS)]
    deadline = time.monotonic() + 30
    try:
        for p in drainers:  # all of them started before there is work to share
            assert p.stdout is not None
            assert p.stdout.readline().strip() == b"ready"
        outbox.enqueue_many(
            {"operation": "deliver", "payload": {"sleep": RUN}, "idempotency_key": f"item-{i}"}
            for i in range(ITEMS)
        )
        while outbox.stats().done < ITEMS and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for p in drainers:
            p.kill()
            p.wait()
    stats = outbox.stats()
    outbox.close()
    runs = sink.runs()
    assert stats.done == ITEMS, "every item delivered within the time bound"
    assert {key for key, *_ in runs} == {f"item-{i}" for i in range(ITEMS)}
    assert all(end - start >= RUN for _, _, start, end in runs)
    assert len({pid for _, pid, *_ in runs}) == DRAINERS, "every drainer took a share"
    per_key: dict[str, int] = defaultdict(int)
    for key, *_ in runs:
        per_key[key] += 1
    assert sum(n > 1 for n in per_key.values()) >= 5, "failed items ran again (reschedules)"
    assert _overlaps(runs) == [], "two runs of one item overlapped"


def test_overlap_check_sees_overlapping_runs() -> None:
    """The checker reports two runs of one key that overlap, and only those."""
    runs = [
        ("a", 1, 0.0, 1.0),
        ("a", 2, 1.0, 2.0),  # starts as the first ends: no overlap
        ("b", 1, 0.0, 5.0),
        ("b", 2, 1.0, 1.5),  # inside the first
        ("b", 3, 2.0, 3.0),  # still inside the first
        ("c", 3, 0.5, 0.9),
    ]
    assert _overlaps(runs) == [("b", 1, 2), ("b", 1, 3)]


@pytest.mark.slow
def test_sqlite_drainers_never_run_an_item_concurrently(tmp_path: Path) -> None:
    """Three drainer processes on one SQLite file: every run of an item ends before the next."""
    _run("sqlite", str(tmp_path / "outbox.db"), str(tmp_path / "sink.db"))


@pytest.mark.slow
@pytest.mark.redis
def test_redis_drainers_never_run_an_item_concurrently(redis_url: str) -> None:
    """Three drainer processes on one Redis outbox: every run of an item ends before the next."""
    _run("redis", redis_url, redis_url)
