"""The retry faults of FAULTS.md, each as a scenario: cancellation, per-call state, testing
mode, disabled retries and Retry-After as a floor."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import resilio
from resilio import backoff
from resilio.classify import PERMANENT, Classification, ErrorKind
from resilio.events import RetryGaveUp, RetryScheduled
from resilio.testing import EventRecorder, FakeClock, set_testing


def all_but_value_error(error: BaseException, context: Any) -> Classification | None:
    """Retry on everything except ValueError."""
    return PERMANENT if isinstance(error, ValueError) else None


class Throttled(Exception):
    """A 429 answer carrying Retry-After."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("429")
        self.retry_after = retry_after


def throttle_classifier(error: BaseException, context: Any) -> Classification | None:
    if isinstance(error, Throttled):
        return Classification(kind=ErrorKind.THROTTLED, retry_after=error.retry_after)
    return None


Runner = Callable[[resilio.Pipeline, Callable[[], Any]], Any]


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Run a plain function through execute() or (wrapped in a coroutine) execute_async()."""

    def runner(p: resilio.Pipeline, fn: Callable[[], Any]) -> Any:
        if request.param == "sync":
            return p.execute(fn)

        async def afn() -> Any:
            return fn()

        return asyncio.run(p.execute_async(afn))

    return runner


class TestCancellationIsNotAFailure:
    async def test_outer_timeout_cancels_after_one_attempt(self, clock: FakeClock) -> None:
        """Under an outer asyncio.timeout the call is cancelled: one attempt, no backoff sleep."""
        rec = EventRecorder()
        p = resilio.Pipeline(
            [resilio.Retry(attempts=10, backoff=backoff.constant(60), max_delay=600)],
            clock=clock,
            classifier=all_but_value_error,
            listeners=[rec],
        )
        calls: list[int] = []

        async def slow() -> None:
            calls.append(1)
            await asyncio.Event().wait()  # stands for a 3 s call

        started = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            async with asyncio.timeout(0.05):
                await p.execute_async(slow)
        assert time.monotonic() - started < 1.0
        assert not isinstance(info.value, resilio.TimeoutExceeded)
        assert calls == [1]
        assert clock.sleeps == []
        assert rec.events == []

    async def test_task_cancel_is_not_retried(self, clock: FakeClock) -> None:
        """Cancelling the task ends the call with CancelledError after one attempt."""
        p = resilio.Pipeline(
            [resilio.Retry(attempts=10, backoff=backoff.constant(60), max_delay=600)],
            clock=clock,
            classifier=all_but_value_error,
        )
        started = asyncio.Event()
        calls: list[int] = []

        async def slow() -> None:
            calls.append(1)
            started.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(p.execute_async(slow))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert calls == [1]
        assert clock.sleeps == []

    @pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, GeneratorExit])
    def test_interrupts_are_not_retried(
        self, clock: FakeClock, run: Runner, interrupt: type[BaseException]
    ) -> None:
        """KeyboardInterrupt, SystemExit and GeneratorExit end the call at once."""
        p = resilio.Pipeline(
            [resilio.Retry(attempts=10, backoff=backoff.constant(60), max_delay=600)],
            clock=clock,
            classifier=all_but_value_error,
        )
        calls: list[int] = []

        def fn() -> None:
            calls.append(1)
            raise interrupt

        with pytest.raises(interrupt):
            run(p, fn)
        assert calls == [1]
        assert clock.sleeps == []


class TestPerCallState:
    def test_two_threads_keep_their_own_attempts(self, clock: FakeClock) -> None:
        """Two threads through one pipeline: one call takes 1 attempt, the other 3."""
        rec = EventRecorder()
        p = resilio.Pipeline(
            [resilio.Retry(attempts=5, backoff=0)], clock=clock, listeners=[rec], name="shared"
        )
        barrier = threading.Barrier(2)
        contexts = {"ok-first": resilio.Context("ok-first"), "third": resilio.Context("third")}
        results: dict[str, Any] = {}

        def make(name: str, fail_times: int) -> Callable[[], str]:
            failures = [fail_times]

            def fn() -> str:
                if failures[0] > 0:
                    failures[0] -= 1
                    raise ConnectionError(name)
                return name

            return fn

        def worker(name: str, fail_times: int) -> None:
            barrier.wait(5)
            results[name] = p.execute(make(name, fail_times), context=contexts[name])

        threads = [
            threading.Thread(target=worker, args=("ok-first", 0)),
            threading.Thread(target=worker, args=("third", 2)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results == {"ok-first": "ok-first", "third": "third"}
        assert contexts["ok-first"].attempt == 1
        assert contexts["third"].attempt == 3
        by_op: dict[str | None, list[int]] = {}
        for event in rec.of(RetryScheduled):
            by_op.setdefault(event.operation, []).append(event.attempt)
        assert by_op == {"third": [1, 2]}

    async def test_two_tasks_keep_their_own_attempts(self, clock: FakeClock) -> None:
        """Two concurrent tasks through one pipeline keep separate attempt counts."""
        p = resilio.Pipeline([resilio.Retry(attempts=5, backoff=0)], clock=clock)

        def make(fail_times: int) -> Callable[[], Any]:
            failures = [fail_times]

            async def fn() -> int:
                await asyncio.sleep(0)
                if failures[0] > 0:
                    failures[0] -= 1
                    raise ConnectionError("x")
                return fail_times

            return fn

        a, b = resilio.Context("a"), resilio.Context("b")
        results = await asyncio.gather(
            p.execute_async(make(0), context=a), p.execute_async(make(2), context=b)
        )
        assert list(results) == [0, 2]
        assert (a.attempt, b.attempt) == (1, 3)


class TestTestingMode:
    def test_testing_mode_never_raises_attempts_nor_sleeps(self, run: Runner) -> None:
        """With testing attempts capped at 10, attempts=3 stays 3 with zero real sleeping."""
        p = resilio.Pipeline([resilio.Retry(attempts=3, backoff=backoff.constant(5))])
        calls: list[int] = []

        def fn() -> None:
            calls.append(1)
            raise ConnectionError("down")

        started = time.monotonic()
        with set_testing(attempts=10), pytest.raises(ConnectionError):
            run(p, fn)
        assert time.monotonic() - started < 1.0
        assert len(calls) == 3


class TestDisabledRetries:
    def test_success_runs_once(self, clock: FakeClock, run: Runner) -> None:
        """With retrying switched off, a successful call runs exactly once."""
        p = resilio.Pipeline([resilio.Retry(attempts=5)], clock=clock)
        calls: list[int] = []

        def fn() -> str:
            calls.append(1)
            return "ok"

        with set_testing(attempts=1):
            assert run(p, fn) == "ok"
        assert calls == [1]

    def test_failure_runs_once_with_its_own_error(self, clock: FakeClock, run: Runner) -> None:
        """With retrying switched off, a failing call runs once and raises its own error."""
        p = resilio.Pipeline([resilio.Retry(attempts=5)], clock=clock)
        calls: list[int] = []

        def fn() -> None:
            calls.append(1)
            raise ConnectionError("the real one")

        with set_testing(attempts=1), pytest.raises(ConnectionError, match="the real one") as info:
            run(p, fn)
        assert calls == [1]
        assert clock.sleeps == []
        assert not hasattr(info.value, "__notes__")  # nothing was retried: no "gave up" note


class TestRetryAfterIsAFloor:
    @pytest.mark.parametrize("seed", range(20))
    def test_next_attempt_no_sooner_than_retry_after(
        self, clock: FakeClock, run: Runner, seed: int
    ) -> None:
        """A 10 s Retry-After with jitter on: the next attempt starts at least 10 s later."""
        p = resilio.Pipeline(
            [resilio.Retry(attempts=2, backoff=backoff.exponential(jitter="full"), rng=seed)],
            clock=clock,
            classifier=throttle_classifier,
        )
        starts: list[float] = []

        def fn() -> str:
            starts.append(clock.monotonic())
            if len(starts) == 1:
                raise Throttled(10)
            return "ok"

        assert run(p, fn) == "ok"
        assert starts[1] - starts[0] >= 10
        assert clock.sleeps[0] >= 10

    def test_floor_above_max_delay_gives_up_now(self, clock: FakeClock, run: Runner) -> None:
        """A floor above max_delay ends the call at once with the real error."""
        rec = EventRecorder()
        p = resilio.Pipeline(
            [resilio.Retry(attempts=5, max_delay=5)],
            clock=clock,
            classifier=throttle_classifier,
            listeners=[rec],
        )
        calls: list[int] = []

        def fn() -> None:
            calls.append(1)
            raise Throttled(10)

        with pytest.raises(Throttled):
            run(p, fn)
        assert calls == [1]
        assert clock.sleeps == []
        assert [e.reason for e in rec.of(RetryGaveUp)] == ["retry_after_too_long"]

    def test_floor_beyond_the_deadline_gives_up_now(self, clock: FakeClock, run: Runner) -> None:
        """A floor longer than the time left before the deadline ends the call at once."""
        p = resilio.Pipeline(
            [resilio.Timeout(8), resilio.Retry(attempts=5, max_delay=60)],
            clock=clock,
            classifier=throttle_classifier,
        )
        calls: list[int] = []

        def fn() -> None:
            calls.append(1)
            raise Throttled(10)

        with pytest.raises(Throttled) as info:
            run(p, fn)
        assert calls == [1]
        assert clock.sleeps == []
        assert "Retry-After" in info.value.__notes__[0]
