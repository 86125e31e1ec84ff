"""Tests of the idempotency policy: keys, replays, single flight, leases and stores."""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

import pytest

from resilio._context import Context
from resilio._pipeline import Pipeline
from resilio.errors import IdempotencyConflict
from resilio.events import CallRejected, IdempotentReplay
from resilio.policies.idempotency import (
    Idempotency,
    IdempotencyOptions,
    canonical_key,
    function_identity,
)
from resilio.stores import MemoryIdempotencyStore
from resilio.testing import EventRecorder, FakeClock


def make(clock: FakeClock, **options: Any) -> tuple[Idempotency, Pipeline, EventRecorder]:
    policy = Idempotency(**options)
    recorder = EventRecorder()
    pipeline = Pipeline([policy], name="send", clock=clock, listeners=[recorder], telemetry=False)
    return policy, pipeline, recorder


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> int:
        with self.lock:
            self.calls += 1
            return self.calls


class TestKeys:
    def test_context_key_replays_without_running(self, clock: FakeClock) -> None:
        """A second call with the same context key gets the stored result; fn runs once."""
        _, p, rec = make(clock)
        fn = Counter()
        assert p.execute(fn, context=Context(idempotency_key="k1")) == 1
        assert p.execute(fn, context=Context(idempotency_key="k1")) == 1
        assert p.execute(fn, context=Context(idempotency_key="k2")) == 2
        assert fn.calls == 2
        assert len(rec.of(IdempotentReplay)) == 1

    def test_canonical_hash_of_arguments(self, clock: FakeClock) -> None:
        """Without a key, equal arguments (any kwarg order) share a key; others do not."""
        _, p, _ = make(clock)
        fn = Counter()
        assert p.execute(fn, 1, {"a": [1, 2.5, None, True]}, x="y", z=3) == 1
        assert p.execute(fn, 1, {"a": [1, 2.5, None, True]}, z=3, x="y") == 1
        assert p.execute(fn, 2, {"a": [1, 2.5, None, True]}, x="y", z=3) == 2

    def test_canonical_key_includes_the_operation(self) -> None:
        """The same arguments under another operation name give another key."""
        assert canonical_key("a", (1,), {}) != canonical_key("b", (1,), {})
        assert canonical_key("a", (1,), {"k": 1}) == canonical_key("a", (1,), {"k": 1})

    @pytest.mark.parametrize(
        ("args", "kwargs", "where"),
        [
            ((object(),), {}, "argument 0 is a object"),
            ((1, {1: "x"}), {}, "argument 1 holds a dict with a int key"),
            ((), {"when": {1, 2}}, "argument 'when' is a set"),
            ((float("nan"),), {}, "argument 0 is a non-finite float"),
        ],
    )
    def test_unserialisable_argument_is_named(
        self, clock: FakeClock, args: tuple[Any, ...], kwargs: dict[str, Any], where: str
    ) -> None:
        """An argument with no canonical JSON form raises TypeError naming it; fn never runs."""
        _, p, _ = make(clock)
        fn = Counter()
        with pytest.raises(TypeError, match=where):
            p.execute(fn, *args, **kwargs)
        assert fn.calls == 0

    def test_key_function(self, clock: FakeClock) -> None:
        """A key= function derives the key from the call."""
        _, p, _ = make(clock, key=lambda args, kwargs, ctx: str(args[0]))
        fn = Counter()
        assert p.execute(fn, "a", object()) == 1
        assert p.execute(fn, "a", object()) == 1
        assert p.execute(fn, "b", object()) == 2

    def test_key_function_must_return_str(self, clock: FakeClock) -> None:
        """A key function returning a non-string is a TypeError."""
        _, p, _ = make(clock, key=lambda args, kwargs, ctx: 42)
        with pytest.raises(TypeError, match="not str"):
            p.execute(Counter())


def send_email(to: int) -> str:
    """A module-level function for default-key tests."""
    return f"email {to}"


def send_sms(to: int) -> str:
    """Another module-level function with the same signature."""
    return f"sms {to}"


async def send_email_async(to: int) -> str:
    """The async twin of :func:`send_email`."""
    return f"email {to}"


async def send_sms_async(to: int) -> str:
    """The async twin of :func:`send_sms`."""
    return f"sms {to}"


class _Mailer:
    def send(self, to: int) -> str:
        return f"mail {to}"


class TestDefaultKeyNamesTheFunction:
    def test_two_functions_same_arguments_both_run(self, clock: FakeClock) -> None:
        """Without a key or an operation, equal arguments to two functions give two keys."""
        _, p, rec = make(clock)
        assert p.execute(send_email, 42) == "email 42"
        assert p.execute(send_sms, 42) == "sms 42"
        assert p.execute(send_email, 42) == "email 42"
        assert len(rec.of(IdempotentReplay)) == 1

    async def test_two_async_functions_same_arguments_both_run(self, clock: FakeClock) -> None:
        """The same holds under execute_async."""
        _, p, rec = make(clock)
        assert await p.execute_async(send_email_async, 42) == "email 42"
        assert await p.execute_async(send_sms_async, 42) == "sms 42"
        assert await p.execute_async(send_sms_async, 42) == "sms 42"
        assert len(rec.of(IdempotentReplay)) == 1

    def test_decorated_functions_do_not_share_results(self, clock: FakeClock) -> None:
        """Two functions decorated with one pipeline keep their own results."""
        _, p, _ = make(clock)
        email, sms = p(send_email), p(send_sms)
        assert (email(7), sms(7), email(7)) == ("email 7", "sms 7", "email 7")

    def test_default_operation_given_explicitly_still_names_the_function(
        self, clock: FakeClock
    ) -> None:
        """A context whose operation is the pipeline's name keys by function too."""
        _, p, _ = make(clock)
        assert p.execute(send_email, 1, context=Context("send")) == "email 1"
        assert p.execute(send_sms, 1, context=Context("send")) == "sms 1"

    def test_named_operation_shares_the_key_across_functions(self, clock: FakeClock) -> None:
        """A context naming its own operation keys by operation and arguments only."""
        _, p, rec = make(clock)
        assert p.execute(send_email, 1, context=Context("notify")) == "email 1"
        assert p.execute(send_sms, 1, context=Context("notify")) == "email 1"
        assert len(rec.of(IdempotentReplay)) == 1

    def test_named_operation_key_is_unchanged(self, clock: FakeClock) -> None:
        """The key of a named operation is the hash of the operation and arguments alone."""
        policy, _, _ = make(clock)
        ctx = Context("notify")
        ctx.pipeline = "send"
        assert policy.key_for((1,), {}, ctx, send_email) == "idempotency:" + canonical_key(
            "notify", (1,), {}
        )

    def test_function_identity(self) -> None:
        """Functions, methods, partials and callable objects are named by module:qualname."""
        here = __name__
        assert function_identity(send_email) == f"{here}:send_email"
        assert function_identity(_Mailer().send) == f"{here}:_Mailer.send"
        assert function_identity(functools.partial(send_sms, 3)) == f"{here}:send_sms"
        assert function_identity(Counter()) == f"{here}:Counter"
        assert function_identity(len) == "builtins:len"


class TestLifetime:
    def test_result_expires_after_ttl(self, clock: FakeClock) -> None:
        """After ttl seconds the key runs again."""
        _, p, _ = make(clock, ttl=10)
        fn = Counter()
        assert p.execute(fn, context=Context(idempotency_key="k")) == 1
        clock.advance(9.9)
        assert p.execute(fn, context=Context(idempotency_key="k")) == 1
        clock.advance(0.1)
        assert p.execute(fn, context=Context(idempotency_key="k")) == 2

    def test_failure_frees_the_key(self, clock: FakeClock) -> None:
        """A failed call stores nothing: the next call with the key runs."""
        _, p, _ = make(clock)
        attempts = Counter()

        def flaky() -> str:
            if attempts() == 1:
                raise ConnectionError("down")
            return "ok"

        with pytest.raises(ConnectionError):
            p.execute(flaky, context=Context(idempotency_key="k"))
        assert p.execute(flaky, context=Context(idempotency_key="k")) == "ok"
        assert p.execute(flaky, context=Context(idempotency_key="k")) == "ok"
        assert attempts.calls == 2

    def test_dead_owner_lease_expires(self, clock: FakeClock) -> None:
        """A reservation whose owner died blocks the key only until its lease ends."""
        policy, p, _ = make(clock, lease=5, poll_interval=1)
        policy.store.reserve("idempotency:k", lease=5)  # an owner that never finishes
        fn = Counter()
        assert p.execute(fn, context=Context(idempotency_key="k")) == 1
        assert clock.sleeps == [1, 1, 1, 1, 1]

    def test_max_entries_drops_least_recently_used(self, clock: FakeClock) -> None:
        """The in-memory store keeps at most max_entries keys, dropping the least recent."""
        policy, p, _ = make(clock, max_entries=2)
        fn = Counter()
        for key in ("a", "b", "a", "c"):
            p.execute(fn, context=Context(idempotency_key=key))
        assert fn.calls == 3
        assert len(policy.store) == 2
        assert p.execute(fn, context=Context(idempotency_key="a")) == 1
        assert p.execute(fn, context=Context(idempotency_key="b")) == 4


class TestSingleFlight:
    def test_threads_wait_for_the_first_call(self, clock: FakeClock) -> None:
        """Concurrent duplicates in threads wait and all get the one result."""
        _, p, rec = make(clock)
        started = threading.Event()
        release = threading.Event()
        fn = Counter()

        def slow() -> int:
            started.set()
            release.wait()
            return fn()

        results: list[int] = []
        first = threading.Thread(
            target=lambda: results.append(p.execute(slow, context=Context(idempotency_key="k")))
        )
        first.start()
        started.wait()
        dups = [
            threading.Thread(
                target=lambda: results.append(p.execute(slow, context=Context(idempotency_key="k")))
            )
            for _ in range(5)
        ]
        for t in dups:
            t.start()
        release.set()
        for t in [first, *dups]:
            t.join()
        assert results == [1] * 6
        assert fn.calls == 1
        assert len(rec.of(IdempotentReplay)) == 5

    async def test_tasks_wait_for_the_first_call(self, clock: FakeClock) -> None:
        """Concurrent duplicates in tasks wait on a future and get the one result."""
        _, p, _ = make(clock)
        gate = asyncio.Event()
        fn = Counter()

        async def slow() -> int:
            await gate.wait()
            return fn()

        tasks = [
            asyncio.create_task(p.execute_async(slow, context=Context(idempotency_key="k")))
            for _ in range(10)
        ]
        await asyncio.sleep(0)
        gate.set()
        assert await asyncio.gather(*tasks) == [1] * 10
        assert fn.calls == 1

    async def test_failure_lets_exactly_one_duplicate_run_next(self, clock: FakeClock) -> None:
        """When the first call fails, one waiting duplicate runs and the rest get its result."""
        _, p, _ = make(clock)
        gate = asyncio.Event()
        runs = Counter()

        async def work() -> int:
            n = runs()
            if n == 1:
                await gate.wait()
                raise ConnectionError("down")
            return n

        first = asyncio.create_task(p.execute_async(work, context=Context(idempotency_key="k")))
        await asyncio.sleep(0)
        dups = [
            asyncio.create_task(p.execute_async(work, context=Context(idempotency_key="k")))
            for _ in range(4)
        ]
        await asyncio.sleep(0)
        gate.set()
        with pytest.raises(ConnectionError):
            await first
        assert await asyncio.gather(*dups) == [2] * 4
        assert runs.calls == 2

    async def test_wait_false_refuses_duplicates(self, clock: FakeClock) -> None:
        """With wait=False a duplicate in flight is refused with IdempotencyConflict."""
        _, p, rec = make(clock, wait=False)
        gate = asyncio.Event()

        async def slow() -> str:
            await gate.wait()
            return "ok"

        first = asyncio.create_task(p.execute_async(slow, context=Context(idempotency_key="k")))
        await asyncio.sleep(0)
        with pytest.raises(IdempotencyConflict):
            await p.execute_async(slow, context=Context(idempotency_key="k"))
        assert [e.reason for e in rec.of(CallRejected)] == ["idempotency_conflict"]
        gate.set()
        assert await first == "ok"

    async def test_cancelled_owner_frees_the_key(self, clock: FakeClock) -> None:
        """Cancelling the owner releases its reservation: the next call runs at once."""
        _, p, _ = make(clock)
        task = asyncio.create_task(
            p.execute_async(asyncio.sleep, 3600, context=Context(idempotency_key="k"))
        )
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        async def ok() -> str:
            return "ok"

        assert await p.execute_async(ok, context=Context(idempotency_key="k")) == "ok"
        assert clock.sleeps == []


class TestStores:
    def test_shared_store_across_policies(self, clock: FakeClock) -> None:
        """Two policies with one store and one name share records."""
        store = MemoryIdempotencyStore(clock=clock)
        _, a, _ = make(clock, store=store)
        _, b, _ = make(clock, store=store)
        fn = Counter()
        assert a.execute(fn, context=Context(idempotency_key="k")) == 1
        assert b.execute(fn, context=Context(idempotency_key="k")) == 1

    def test_unstorable_result_is_a_type_error_and_frees_the_key(self, clock: FakeClock) -> None:
        """A store refusing a result (not JSON) surfaces its TypeError and frees the key."""
        inner = MemoryIdempotencyStore(clock=clock)

        class JsonOnly:
            def reserve(self, key: str, *, lease: float) -> Any:
                return inner.reserve(key, lease=lease)

            def complete(self, key: str, *, token: str, result: Any, ttl: float) -> bool:
                raise TypeError("result is not JSON-serialisable")

            def release(self, key: str, *, token: str) -> bool:
                return inner.release(key, token=token)

        _, p, _ = make(clock, store=JsonOnly())
        with pytest.raises(TypeError, match="JSON"):
            p.execute(object, context=Context(idempotency_key="k"))
        assert len(inner) == 0

    def test_store_down_fails_the_call_without_running(self, clock: FakeClock) -> None:
        """If reserve fails, the call is not run (running could duplicate it)."""

        class Down:
            def reserve(self, key: str, *, lease: float) -> Any:
                raise OSError("down")

        _, p, _ = make(clock, store=Down())
        fn = Counter()
        with pytest.raises(OSError):
            p.execute(fn, context=Context(idempotency_key="k"))
        assert fn.calls == 0

    async def test_sync_only_store_works_on_the_loop(self, clock: FakeClock) -> None:
        """A store without async methods is called in a worker thread on the async path."""
        inner = MemoryIdempotencyStore(clock=clock)

        class SyncOnly:
            def reserve(self, key: str, *, lease: float) -> Any:
                return inner.reserve(key, lease=lease)

            def complete(self, key: str, *, token: str, result: Any, ttl: float) -> bool:
                return inner.complete(key, token=token, result=result, ttl=ttl)

            def release(self, key: str, *, token: str) -> bool:
                return inner.release(key, token=token)

        _, p, _ = make(clock, store=SyncOnly())

        async def one() -> int:
            return 1

        assert await p.execute_async(one, context=Context(idempotency_key="k")) == 1
        assert await p.execute_async(one, context=Context(idempotency_key="k")) == 1
        assert len(inner) == 1


class TestOptions:
    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"ttl": 0}, "ttl"),
            ({"lease": -1}, "lease"),
            ({"max_entries": 0}, "max_entries"),
            ({"key": "not callable"}, "key must be a function"),
            ({"store": object()}, "IdempotencyStore"),
        ],
    )
    def test_invalid_options(self, options: dict[str, Any], message: str) -> None:
        """Invalid options raise naming the option."""
        with pytest.raises((ValueError, TypeError), match=message):
            Idempotency(**options)

    def test_from_options(self, clock: FakeClock) -> None:
        """from_options builds a policy with its own records."""
        policy = Idempotency.from_options(IdempotencyOptions(ttl=5), name="idem")
        assert policy.name == "idem"
        assert policy.kind == "idempotency"
        p = Pipeline([policy], clock=clock, telemetry=False)
        fn = Counter()
        p.execute(fn, context=Context(idempotency_key="k"))
        p.execute(fn, context=Context(idempotency_key="k"))
        assert fn.calls == 1
