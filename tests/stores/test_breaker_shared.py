"""The shared breaker's bookkeeping: what each batch sends to the store, and what it costs."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from resilio._pipeline import Pipeline
from resilio.policies.circuit_breaker import CircuitBreaker, CircuitState
from resilio.stores import MemoryBreakerStore
from resilio.testing import FakeClock


def ok() -> str:
    return "ok"


def down() -> str:
    raise ConnectionError("down")


class Recording:
    """A memory breaker store that keeps every record() batch it is given."""

    def __init__(self, clock: FakeClock) -> None:
        self.inner = MemoryBreakerStore(clock)
        self.batches: list[dict[str, Any]] = []

    def load(self, name: str) -> Any:
        return self.inner.load(name)

    def record(self, name: str, **batch: Any) -> Any:
        self.batches.append(batch)
        return self.inner.record(name, **batch)

    def transition(self, name: str, **kw: Any) -> Any:
        return self.inner.transition(name, **kw)


class CountingLock:
    """A lock that counts its acquisitions."""

    def __init__(self) -> None:
        self.inner = threading.Lock()
        self.acquired = 0

    def __enter__(self) -> None:
        self.inner.acquire()
        self.acquired += 1

    def __exit__(self, *exc: object) -> None:
        self.inner.release()


def shared(clock: FakeClock, store: Any, **options: Any) -> tuple[CircuitBreaker, Pipeline]:
    options.setdefault("failure_threshold", 100)
    breaker = CircuitBreaker(name="svc", store=store, sync_interval=1, **options)
    return breaker, Pipeline([breaker], name="p", clock=clock, telemetry=False)


def fail(pipe: Pipeline) -> None:
    with pytest.raises(ConnectionError):
        pipe.execute(down)


def test_batch_counts_successes_and_trailing_failures(clock: FakeClock) -> None:
    """A batch carries every success and only the failures after the last success as trailing."""
    store = Recording(clock)
    _, pipe = shared(clock, store)
    for _ in range(3):  # the first admission syncs an empty batch
        pipe.execute(ok)
    store.batches.clear()
    fail(pipe)  # a failure is sent at once, with the batch so far
    assert store.batches[-1]["successes"] == 3
    assert store.batches[-1]["failures"] == 1
    assert store.batches[-1]["trailing_failures"] == 1
    pipe.execute(ok)
    pipe.execute(ok)
    fail(pipe)
    assert (store.batches[-1]["successes"], store.batches[-1]["trailing_failures"]) == (2, 1)
    assert store.inner.load("svc").consecutive_failures == 1


def test_failures_without_successes_add_up(clock: FakeClock) -> None:
    """Failures in batches with no success add to the store's consecutive count."""
    store = Recording(clock)
    _, pipe = shared(clock, store)
    for _ in range(4):
        fail(pipe)
    assert [b["failures"] for b in store.batches] == [0, 1, 1, 1, 1]  # first: the initial sync
    assert sum(b["successes"] for b in store.batches) == 0
    assert store.inner.load("svc").consecutive_failures == 4


def test_closed_success_takes_no_lock_and_no_store_call(clock: FakeClock) -> None:
    """Between syncs a closed success neither takes the breaker's lock nor calls the store."""
    store = Recording(clock)
    breaker, pipe = shared(clock, store)
    pipe.execute(ok)
    lock = CountingLock()
    breaker._lock = lock  # type: ignore[assignment]
    store.batches.clear()
    for _ in range(99):
        assert pipe.execute(ok) == "ok"
    assert lock.acquired == 0
    assert store.batches == []
    clock.advance(1)
    pipe.execute(ok)  # its admission sends the batch before its own success
    assert [b["successes"] for b in store.batches] == [100]


def test_concurrent_successes_are_counted_exactly(clock: FakeClock) -> None:
    """Successes from many threads, interleaved with syncs, all reach the store exactly once."""
    store = Recording(clock)
    _, pipe = shared(clock, store, window=1000, failure_threshold=None, failure_rate=0.99)
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for i in range(2000):
            pipe.execute(ok)
            if i % 500 == 0:
                clock.advance(1)  # force syncs while other threads count

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    clock.advance(1)
    pipe.execute(ok)  # its admission sends what is left
    assert sum(b["successes"] for b in store.batches) == 8 * 2000
    assert store.inner.load("svc").window_calls == 8 * 2000


def test_degraded_breaker_counts_successes_locally(clock: FakeClock) -> None:
    """With the store down, successes reset the local failure run (local rules apply)."""

    class Broken:
        def load(self, name: str, **kw: Any) -> Any:
            raise OSError("down")

        record = transition = load

    breaker, pipe = shared(clock, Broken(), failure_threshold=2)
    fail(pipe)
    pipe.execute(ok)
    fail(pipe)
    assert breaker.snapshot().state is CircuitState.CLOSED
    assert breaker.snapshot().degraded
    fail(pipe)
    assert breaker.snapshot().state is CircuitState.OPEN
