"""Thread-mode timeouts: each Timeout object owns a bounded, lazily made pool of worker threads.

Time is a fake clock's: a thread-mode caller on a clock other than the system clock checks the
clock between short real waits, so a deadline passes only when the test moves the clock. Hung
calls block on events the tests control (and always release); every real wait is bounded by
``BOUND`` seconds, so a bug fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import resilio
from resilio import ConfigError, load_config
from resilio.events import TimedOut
from resilio.testing import EventRecorder, FakeClock

BOUND = 10.0
"""The longest real wait of any test step (a generous bound, reached only by a bug)."""

WAITING = "timed out waiting for a free worker thread"
TIMED_OUT = "timed out \\(timeout"

CALLER_WAITING_READS = 3
"""Clock reads by a thread-mode caller once it waits: its ``now``, its wait's end, a check."""


class WatchedClock(FakeClock):
    """A fake clock that counts each thread's reads of ``monotonic()``.

    A thread-mode caller reads the clock once when its call starts, once when its wait starts
    (the wait's end is fixed from that read) and then between short real waits. So once the
    caller has made :data:`CALLER_WAITING_READS` reads in a call, it is waiting, and time moved
    from then on is time its wait sees.
    """

    def __init__(self) -> None:
        super().__init__(start=1000.0)
        self._reads: collections.Counter[int] = collections.Counter()
        self._read = threading.Condition()

    def monotonic(self) -> float:
        now = super().monotonic()
        with self._read:  # counted once read: time moved after the count is not in ``now``
            self._reads[threading.get_ident()] += 1
            self._read.notify_all()
        return now

    def reads(self, thread: int) -> int:
        """How often ``thread`` has read the monotonic time."""
        with self._read:
            return self._reads[thread]

    def wait_for_reads(self, thread: int, count: int, stop: threading.Event) -> bool:
        """Wait (at most BOUND s) until ``thread`` has read the time ``count`` times in all."""
        with self._read:
            self._read.wait_for(lambda: self._reads[thread] >= count or stop.is_set(), BOUND)
            return self._reads[thread] >= count and not stop.is_set()

    def stop_waits(self) -> None:
        """Wake every :meth:`wait_for_reads` (their ``stop`` event has been set)."""
        with self._read:
            self._read.notify_all()


@pytest.fixture
def clock() -> WatchedClock:
    """A fresh watched fake clock starting at t=1000."""
    return WatchedClock()


@contextmanager
def once_waiting(
    clock: WatchedClock, action: Callable[[threading.Event], bool], caller: int | None = None
) -> Iterator[None]:
    """Run ``action(stop)`` in another thread once ``caller`` waits in a call made in the block.

    ``caller`` defaults to this thread. ``stop`` is set when the block ends. After a block that
    raised nothing, the action must have run and returned True (it did all it meant to).
    """
    thread = threading.get_ident() if caller is None else caller
    start = clock.reads(thread)
    stop = threading.Event()
    finished = threading.Event()

    def drive() -> None:
        if clock.wait_for_reads(thread, start + CALLER_WAITING_READS, stop) and action(stop):
            finished.set()

    driver = threading.Thread(target=drive, name="test-driver", daemon=True)
    driver.start()
    try:
        yield
    finally:
        stop.set()
        clock.stop_waits()
        driver.join(BOUND)
    assert not driver.is_alive()
    assert finished.is_set(), "the call never waited, or ended before the test moved time"


def advancing(clock: WatchedClock, seconds: float) -> Iterator[None]:
    """Move ``clock`` on by ``seconds`` while this thread waits in a call made in the block.

    Half first; once the caller has read the clock three times more (the second of those reads
    started after the advance, the third shows the caller kept waiting), the other half. A call
    that gives up before the clock reaches its deadline never gets the second half, and the
    block fails. The block makes that call and reads the clock nowhere else (reads are counted).
    """
    caller = threading.get_ident()

    def advance(stop: threading.Event) -> bool:
        clock.advance(seconds / 2)
        if not clock.wait_for_reads(caller, clock.reads(caller) + 3, stop):
            return False
        clock.advance(seconds / 2)
        return True

    return once_waiting(clock, advance)


def workers_of(name: str) -> list[threading.Thread]:
    """The live worker threads of the timeout policy called ``name``."""
    return [t for t in threading.enumerate() if t.name.startswith(f"resilio-timeout-{name}-")]


def within(clock: FakeClock, seconds: float) -> resilio.Context:
    """A context whose deadline is ``seconds`` of the clock from now (tighter than the policy's)."""
    ctx = resilio.Context()
    ctx.deadline = clock.monotonic() + seconds
    return ctx


def pipe(
    clock: FakeClock, *policies: resilio.Policy, name: str = "p"
) -> tuple[resilio.Pipeline, EventRecorder]:
    rec = EventRecorder()
    pipeline = resilio.Pipeline(
        list(policies), name=name, clock=clock, listeners=[rec], telemetry=False
    )
    return pipeline, rec


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of the test, so every hung call returns."""
    event = threading.Event()
    yield event
    event.set()


def hanging(release: threading.Event, calls: list[str], label: str) -> Callable[[], None]:
    def hang() -> None:
        calls.append(label)
        release.wait(BOUND)

    return hang


class TestOwnPool:
    def test_hung_calls_of_one_timeout_do_not_starve_another(
        self, clock: WatchedClock, release: threading.Event
    ) -> None:
        """A timeout whose only worker hangs leaves another timeout's pipeline unaffected."""
        a_policy = resilio.Timeout(1, mode="thread", max_workers=1, name="iso-a")
        a, _ = pipe(clock, a_policy, name="a")
        b, _ = pipe(clock, resilio.Timeout(5, mode="thread", max_workers=1, name="iso-b"), name="b")
        calls: list[str] = []
        with advancing(clock, 1), pytest.raises(resilio.TimeoutExceeded, match=TIMED_OUT):
            a.execute(hanging(release, calls, "a1"))
        assert clock.monotonic() == 1001.0  # it gave up exactly at its deadline
        with advancing(clock, 1), pytest.raises(resilio.TimeoutExceeded, match=WAITING):
            a.execute(calls.append, "a2")
        worker = b.execute(threading.current_thread)
        assert worker.name == "resilio-timeout-iso-b-1"
        assert calls == ["a1"]

    def test_pool_is_made_on_the_first_thread_mode_sync_call(self, clock: WatchedClock) -> None:
        """Building, async calls and cooperative calls start no thread; a sync call starts one."""
        thread = resilio.Timeout(5, mode="thread", name="lazy-t")
        coop = resilio.Timeout(5, name="lazy-c")
        p, _ = pipe(clock, thread, coop)

        async def work() -> str:
            return "ok"

        assert asyncio.run(p.execute_async(work)) == "ok"
        assert workers_of("lazy-t") == []
        assert p.execute(lambda: "ok") == "ok"
        assert [t.name for t in workers_of("lazy-t")] == ["resilio-timeout-lazy-t-1"]
        only_coop, _ = pipe(clock, resilio.Timeout(5, name="lazy-c2"))
        assert only_coop.execute(threading.current_thread) is threading.current_thread()
        assert workers_of("lazy-c2") == []

    def test_idle_worker_is_reused(self, clock: WatchedClock) -> None:
        """Sequential calls run on the same worker thread; no second thread is started."""
        p, _ = pipe(clock, resilio.Timeout(5, mode="thread", max_workers=4, name="reuse"))
        names = {p.execute(threading.current_thread).name for _ in range(5)}
        assert names == {"resilio-timeout-reuse-1"}
        assert len(workers_of("reuse")) == 1

    def test_max_workers_bounds_the_threads(
        self, clock: WatchedClock, release: threading.Event
    ) -> None:
        """With max_workers=2 and two hung calls, a third call gets no third thread."""
        p, rec = pipe(clock, resilio.Timeout(1, mode="thread", max_workers=2, name="bound"))
        calls: list[str] = []
        for label in ("h1", "h2"):
            with advancing(clock, 1), pytest.raises(resilio.TimeoutExceeded, match=TIMED_OUT):
                p.execute(hanging(release, calls, label))
        assert len(workers_of("bound")) == 2
        with (
            advancing(clock, 1),
            pytest.raises(resilio.TimeoutExceeded, match=WAITING + " \\(max_workers 2\\)"),
        ):
            p.execute(calls.append, "h3")
        assert len(workers_of("bound")) == 2
        assert len(rec.of(TimedOut)) == 3
        assert calls == ["h1", "h2"]


class TestFullPool:
    def test_call_that_times_out_in_the_queue_never_runs(
        self, clock: WatchedClock, release: threading.Event
    ) -> None:
        """A queued call whose deadline passes fails at once and is dropped by the freed worker."""
        p, rec = pipe(clock, resilio.Timeout(5, mode="thread", max_workers=1, name="full"))
        calls: list[str] = []
        ctx = within(clock, 1)  # read the clock outside the blocks: advancing() counts reads
        with advancing(clock, 1), pytest.raises(resilio.TimeoutExceeded, match=TIMED_OUT):
            p.execute(hanging(release, calls, "hung"), context=ctx)
        ctx = within(clock, 1)
        with advancing(clock, 1), pytest.raises(resilio.TimeoutExceeded, match=WAITING) as info:
            p.execute(calls.append, "queued", context=ctx)
        assert clock.monotonic() == 1002.0  # each gave up exactly at its context's deadline
        assert (info.value.pipeline, info.value.policy) == ("p", "full")
        assert len(rec.of(TimedOut)) == 2
        release.set()
        # One worker, FIFO: it finishes the hung call, drops the expired one, then runs this.
        assert p.execute(calls.append, "after") is None
        assert calls == ["hung", "after"]

    def test_queued_call_runs_when_a_worker_frees_in_time(
        self, clock: WatchedClock, release: threading.Event
    ) -> None:
        """A call queued behind a busy worker runs once the worker is free, within its deadline:
        time moving short of that deadline does not drop it."""
        p, _ = pipe(clock, resilio.Timeout(5, mode="thread", max_workers=1, name="wait"))
        busy = threading.Event()
        first: list[Any] = []
        main = threading.get_ident()

        def occupy() -> str:
            busy.set()
            release.wait(BOUND)
            return "first"

        def near_deadline_then_free(stop: threading.Event) -> bool:
            # The main thread's call is queued (the one worker is busy) and waiting: move time
            # to 1 s short of its deadline, let it read the clock three times more (so it saw
            # that time and kept waiting), then free the worker.
            clock.advance(4)
            if not clock.wait_for_reads(main, clock.reads(main) + 3, stop):
                return False
            release.set()
            return True

        runner = threading.Thread(target=lambda: first.append(p.execute(occupy)))
        runner.start()
        assert busy.wait(BOUND)
        with once_waiting(clock, near_deadline_then_free):
            assert p.execute(lambda: "queued") == "queued"
        runner.join(BOUND)
        assert not runner.is_alive()
        assert first == ["first"]
        assert clock.monotonic() == 1004.0
        assert len(workers_of("wait")) == 1

    def test_one_timeout_object_in_two_pipelines_shares_its_pool(
        self, clock: WatchedClock, release: threading.Event
    ) -> None:
        """The pool belongs to the policy object: pipelines sharing it share its workers."""
        shared = resilio.Timeout(1, mode="thread", max_workers=1, name="shared")
        x, _ = pipe(clock, shared, name="x")
        y, _ = pipe(clock, shared, name="y")
        calls: list[str] = []
        with advancing(clock, 1), pytest.raises(resilio.TimeoutExceeded, match=TIMED_OUT):
            x.execute(hanging(release, calls, "x"))
        with advancing(clock, 1), pytest.raises(resilio.TimeoutExceeded, match=WAITING):
            y.execute(calls.append, "y")
        assert calls == ["x"]


class TestLifetime:
    def test_workers_stop_when_the_policy_is_collected(self, clock: WatchedClock) -> None:
        """Once its Timeout object is gone, the pool's idle threads exit."""
        p, _ = pipe(clock, resilio.Timeout(5, mode="thread", max_workers=3, name="gone"))
        assert p.execute(lambda: "ok") == "ok"
        threads = workers_of("gone")
        assert len(threads) == 1
        del p
        gc.collect()
        threads[0].join(BOUND)
        assert not threads[0].is_alive()

    def test_hung_worker_stops_after_its_call_returns(
        self, clock: WatchedClock, release: threading.Event
    ) -> None:
        """A worker hung when its policy is collected exits once its call returns."""
        p, _ = pipe(clock, resilio.Timeout(1, mode="thread", name="gone-hung"))
        with advancing(clock, 1), pytest.raises(resilio.TimeoutExceeded, match=TIMED_OUT):
            p.execute(release.wait, BOUND)
        [thread] = workers_of("gone-hung")
        del p
        gc.collect()
        assert thread.is_alive()  # its call still holds the pipeline, and so the policy
        release.set()
        # The worker drops the call's references only after it returns, at a moment nothing
        # signals; poll (bounded in real time) for the thread to exit.
        bound = time.monotonic() + BOUND
        while thread.is_alive() and time.monotonic() < bound:
            gc.collect()  # the pipeline is freed (a cycle) once the call has returned
            thread.join(0.01)
        assert not thread.is_alive()


class TestMaxWorkersOption:
    @pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
    def test_invalid_max_workers(self, bad: Any) -> None:
        """max_workers is None or an integer >= 1."""
        with pytest.raises(ValueError, match="max_workers"):
            resilio.Timeout(1, mode="thread", max_workers=bad)

    def test_default_and_from_options(self) -> None:
        """The default is None (min(32, cpus + 4)); from_options keeps max_workers."""
        assert resilio.Timeout(1).options.max_workers is None
        t = resilio.Timeout(1, mode="thread", max_workers=3)
        again = resilio.Timeout.from_options(t.options)
        assert again.options == t.options
        assert again.options.max_workers == 3

    def test_options_are_frozen(self) -> None:
        """The options cannot be changed after the policy is built."""
        t = resilio.Timeout(1, mode="thread", max_workers=3)
        with pytest.raises(AttributeError):
            t.options.max_workers = 4  # type: ignore[misc]

    def test_declared_in_yaml(self, clock: WatchedClock) -> None:
        """A YAML timeout takes max_workers, and its pipeline's calls use that bound."""
        registry = load_config(
            "pipelines:\n"
            "  p:\n"
            "    - timeout: {seconds: 2s, mode: thread, max_workers: 3, name: yaml-t}\n"
            "  q:\n"
            "    - timeout: 1s\n",
            clock=clock,
            telemetry=False,
        )
        policy = registry.pipeline("p").policies[0]
        assert (policy.options.seconds, policy.options.mode) == (2.0, "thread")
        assert policy.options.max_workers == 3
        assert registry.pipeline("q").policies[0].options.max_workers is None
        worker = registry.pipeline("p").execute(threading.current_thread)
        assert worker.name == "resilio-timeout-yaml-t-1"

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("0", "max_workers must be None or an integer >= 1, got 0"),
            ("lots", "max_workers: expected an integer, found 'lots'"),
        ],
    )
    def test_bad_yaml_value_is_a_config_error(self, value: str, message: str) -> None:
        """A bad max_workers in YAML is reported with its location."""
        with pytest.raises(ConfigError) as info:
            load_config(
                f"pipelines:\n  p:\n    - timeout: {{seconds: 1, max_workers: {value}}}\n",
                telemetry=False,
            )
        [problem] = info.value.problems
        assert problem.startswith("<string>:3:")
        assert "pipelines.p[0].timeout.max_workers" in problem
        assert message in problem


def test_clock_moved_between_submit_and_wait_still_times_out() -> None:
    """The deadline counts from the call's start: a clock moved by the worker right after the
    submit (before the caller began waiting) is not given back to the call."""
    advanced = threading.Event()
    release = threading.Event()

    class SlowToWait(FakeClock):
        """The caller's second clock read (the start of its wait) waits for the worker."""

        def __init__(self) -> None:
            super().__init__(start=1000.0)
            self.reads = 0
            self.caller = threading.get_ident()

        def monotonic(self) -> float:
            if threading.get_ident() == self.caller:
                self.reads += 1
                if self.reads == 2:
                    advanced.wait(10)
            return super().monotonic()

    clock = SlowToWait()
    p = resilio.Pipeline([resilio.Timeout(2, mode="thread")], clock=clock, telemetry=False)

    def hang() -> str:
        clock.advance(3)
        advanced.set()
        release.wait(10)
        return "late"

    try:
        with pytest.raises(resilio.TimeoutExceeded):
            p.execute(hang)
    finally:
        release.set()
