"""Thread-mode timeouts: each Timeout object owns a bounded, lazily made pool of worker threads.

Thread mode waits in real time, so calls that must time out use a short timeout and calls that
must not use a long one; hung calls wait on events the tests always release.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import resilio
from resilio import ConfigError, load_config
from resilio.events import TimedOut
from resilio.testing import EventRecorder

SHORT = 0.05
WAITING = "timed out waiting for a free worker thread"


def workers_of(name: str) -> list[threading.Thread]:
    """The live worker threads of the timeout policy called ``name``."""
    return [t for t in threading.enumerate() if t.name.startswith(f"resilio-timeout-{name}-")]


def soon() -> resilio.Context:
    """A context whose deadline is SHORT from now (tighter than the policy's own timeout)."""
    ctx = resilio.Context()
    ctx.deadline = time.monotonic() + SHORT
    return ctx


def pipe(*policies: resilio.Policy, name: str = "p") -> tuple[resilio.Pipeline, EventRecorder]:
    rec = EventRecorder()
    return resilio.Pipeline(list(policies), name=name, listeners=[rec], telemetry=False), rec


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of the test, so every hung call returns."""
    event = threading.Event()
    yield event
    event.set()


def hanging(release: threading.Event, calls: list[str], label: str) -> Callable[[], None]:
    def hang() -> None:
        calls.append(label)
        release.wait(10)

    return hang


class TestOwnPool:
    def test_hung_calls_of_one_timeout_do_not_starve_another(
        self, release: threading.Event
    ) -> None:
        """A timeout whose only worker hangs leaves another timeout's pipeline unaffected."""
        a, _ = pipe(resilio.Timeout(SHORT, mode="thread", max_workers=1, name="iso-a"), name="a")
        b, _ = pipe(resilio.Timeout(5, mode="thread", max_workers=1, name="iso-b"), name="b")
        calls: list[str] = []
        with pytest.raises(resilio.TimeoutExceeded, match="timed out \\(timeout"):
            a.execute(hanging(release, calls, "a1"))
        with pytest.raises(resilio.TimeoutExceeded, match=WAITING):
            a.execute(calls.append, "a2")
        worker = b.execute(threading.current_thread)
        assert worker.name == "resilio-timeout-iso-b-1"
        assert calls == ["a1"]

    def test_pool_is_made_on_the_first_thread_mode_sync_call(self) -> None:
        """Building, async calls and cooperative calls start no thread; a sync call starts one."""
        thread = resilio.Timeout(5, mode="thread", name="lazy-t")
        coop = resilio.Timeout(5, name="lazy-c")
        p, _ = pipe(thread, coop)

        async def work() -> str:
            return "ok"

        assert asyncio.run(p.execute_async(work)) == "ok"
        assert workers_of("lazy-t") == []
        assert p.execute(lambda: "ok") == "ok"
        assert [t.name for t in workers_of("lazy-t")] == ["resilio-timeout-lazy-t-1"]
        only_coop, _ = pipe(resilio.Timeout(5, name="lazy-c2"))
        assert only_coop.execute(threading.current_thread) is threading.current_thread()
        assert workers_of("lazy-c2") == []

    def test_idle_worker_is_reused(self) -> None:
        """Sequential calls run on the same worker thread; no second thread is started."""
        p, _ = pipe(resilio.Timeout(5, mode="thread", max_workers=4, name="reuse"))
        names = {p.execute(threading.current_thread).name for _ in range(5)}
        assert names == {"resilio-timeout-reuse-1"}
        assert len(workers_of("reuse")) == 1

    def test_max_workers_bounds_the_threads(self, release: threading.Event) -> None:
        """With max_workers=2 and two hung calls, a third call gets no third thread."""
        p, rec = pipe(resilio.Timeout(SHORT, mode="thread", max_workers=2, name="bound"))
        calls: list[str] = []
        for label in ("h1", "h2"):
            with pytest.raises(resilio.TimeoutExceeded, match="timed out \\(timeout"):
                p.execute(hanging(release, calls, label))
        with pytest.raises(resilio.TimeoutExceeded, match=WAITING + " \\(max_workers 2\\)"):
            p.execute(calls.append, "h3")
        assert len(workers_of("bound")) == 2
        assert len(rec.of(TimedOut)) == 3
        assert calls == ["h1", "h2"]


class TestFullPool:
    def test_call_that_times_out_in_the_queue_never_runs(self, release: threading.Event) -> None:
        """A queued call whose deadline passes fails at once and is dropped by the freed worker."""
        p, rec = pipe(resilio.Timeout(5, mode="thread", max_workers=1, name="full"))
        calls: list[str] = []
        with pytest.raises(resilio.TimeoutExceeded, match="timed out \\(timeout"):
            p.execute(hanging(release, calls, "hung"), context=soon())
        with pytest.raises(resilio.TimeoutExceeded, match=WAITING) as info:
            p.execute(calls.append, "queued", context=soon())
        assert (info.value.pipeline, info.value.policy) == ("p", "full")
        assert len(rec.of(TimedOut)) == 2
        release.set()
        # One worker, FIFO: it finishes the hung call, drops the expired one, then runs this.
        assert p.execute(calls.append, "after") is None
        assert calls == ["hung", "after"]

    def test_queued_call_runs_when_a_worker_frees_in_time(self, release: threading.Event) -> None:
        """A call queued behind a busy worker runs once the worker is free, within its deadline."""
        policy = resilio.Timeout(5, mode="thread", max_workers=1, name="wait")
        p, _ = pipe(policy)
        busy = threading.Event()
        first: list[Any] = []

        def occupy() -> str:
            busy.set()
            release.wait(10)
            return "first"

        def release_once_queued() -> None:
            jobs = policy._worker_pool()._workers.jobs
            deadline = time.monotonic() + 5
            while jobs.qsize() == 0 and time.monotonic() < deadline:
                time.sleep(0)  # yield only: the main thread is about to queue its call
            release.set()

        runner = threading.Thread(target=lambda: first.append(p.execute(occupy)))
        runner.start()
        assert busy.wait(5)
        releaser = threading.Thread(target=release_once_queued)
        releaser.start()
        assert p.execute(lambda: "queued") == "queued"
        runner.join(5)
        releaser.join(5)
        assert first == ["first"]
        assert len(workers_of("wait")) == 1

    def test_one_timeout_object_in_two_pipelines_shares_its_pool(
        self, release: threading.Event
    ) -> None:
        """The pool belongs to the policy object: pipelines sharing it share its workers."""
        shared = resilio.Timeout(SHORT, mode="thread", max_workers=1, name="shared")
        x, _ = pipe(shared, name="x")
        y, _ = pipe(shared, name="y")
        calls: list[str] = []
        with pytest.raises(resilio.TimeoutExceeded):
            x.execute(hanging(release, calls, "x"))
        with pytest.raises(resilio.TimeoutExceeded, match=WAITING):
            y.execute(calls.append, "y")
        assert calls == ["x"]


class TestLifetime:
    def test_workers_stop_when_the_policy_is_collected(self) -> None:
        """Once its Timeout object is gone, the pool's idle threads exit."""
        p, _ = pipe(resilio.Timeout(5, mode="thread", max_workers=3, name="gone"))
        assert p.execute(lambda: "ok") == "ok"
        threads = workers_of("gone")
        assert len(threads) == 1
        del p
        gc.collect()
        threads[0].join(5)
        assert not threads[0].is_alive()

    def test_hung_worker_stops_after_its_call_returns(self, release: threading.Event) -> None:
        """A worker hung when its policy is collected exits once its call returns."""
        p, _ = pipe(resilio.Timeout(SHORT, mode="thread", name="gone-hung"))
        with pytest.raises(resilio.TimeoutExceeded):
            p.execute(release.wait, 10)
        [thread] = workers_of("gone-hung")
        del p
        gc.collect()
        assert thread.is_alive()  # its call still holds the pipeline, and so the policy
        release.set()
        deadline = time.monotonic() + 5
        while thread.is_alive() and time.monotonic() < deadline:
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

    def test_declared_in_yaml(self) -> None:
        """A YAML timeout takes max_workers, and its pipeline's calls use that bound."""
        registry = load_config(
            "pipelines:\n"
            "  p:\n"
            "    - timeout: {seconds: 2s, mode: thread, max_workers: 3, name: yaml-t}\n"
            "  q:\n"
            "    - timeout: 1s\n",
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
