"""Tests for resilio.Retry: what is retried, waits, deadlines, budget, notes, events."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resilio
from resilio import backoff
from resilio.classify import Classification, ErrorKind
from resilio.events import RetryGaveUp, RetryScheduled
from resilio.policies._retry_logic import RetryBudget, RetryController
from resilio.testing import EventRecorder, FakeClock, set_testing


class Script:
    """A function that plays a list of outcomes: exceptions are raised, values returned."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.attempts_seen: list[int] = []

    def __call__(self, context: resilio.Context | None = None) -> Any:
        self.calls += 1
        if context is not None:
            self.attempts_seen.append(context.attempt)
        o = self.outcomes[min(self.calls, len(self.outcomes)) - 1]
        if isinstance(o, type) and issubclass(o, BaseException):
            raise o("failed")
        if isinstance(o, BaseException):
            raise o
        return o

    async def aio(self, context: resilio.Context | None = None) -> Any:
        await asyncio.sleep(0)
        return self(context)


Runner = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Run a script through a pipeline with execute() or execute_async()."""

    def runner(p: resilio.Pipeline, script: Script, context: resilio.Context | None = None) -> Any:
        ctx = context if context is not None else resilio.Context()
        if request.param == "sync":
            return p.execute(script, context=ctx)
        return asyncio.run(p.execute_async(script.aio, context=ctx))

    return runner


def pipe(
    clock: FakeClock, *policies: resilio.Policy, **kw: Any
) -> tuple[resilio.Pipeline, EventRecorder]:
    rec = EventRecorder()
    return resilio.Pipeline(
        list(policies), name="orders.create", clock=clock, listeners=[rec], **kw
    ), rec


def classify_as(kind: ErrorKind, retry_after: float | None = None) -> Any:
    def classifier(error: BaseException, context: Any) -> Classification | None:
        if isinstance(error, LookupError):
            return Classification(kind=kind, retry_after=retry_after)
        return None

    return classifier


class Throttled(LookupError):
    pass


class TestWhatIsRetried:
    def test_first_try_success_runs_once_without_events(
        self, clock: FakeClock, run: Runner
    ) -> None:
        """A first-try success calls once, sleeps never and emits nothing."""
        p, rec = pipe(clock, resilio.Retry(attempts=3))
        s = Script("ok")
        assert run(p, s) == "ok"
        assert s.calls == 1
        assert clock.sleeps == []
        assert rec.events == []

    def test_transient_retried_until_success(self, clock: FakeClock, run: Runner) -> None:
        """TRANSIENT failures are retried and the eventual result returned."""
        p, rec = pipe(clock, resilio.Retry(attempts=4, rng=1))
        s = Script(ConnectionError, ConnectionError, "ok")
        assert run(p, s) == "ok"
        assert s.calls == 3
        assert [e.attempt for e in rec.of(RetryScheduled)] == [1, 2]
        assert rec.of(RetryGaveUp) == []

    def test_attempts_count_the_first_call(self, clock: FakeClock, run: Runner) -> None:
        """``attempts=4`` means four calls in all, then the real error with a note."""
        p, rec = pipe(clock, resilio.Retry(attempts=4, backoff=backoff.constant(1)))
        s = Script(ConnectionError)
        with pytest.raises(ConnectionError, match="failed") as info:
            run(p, s)
        assert s.calls == 4
        assert clock.sleeps == [1.0, 1.0, 1.0]
        assert info.value.__notes__ == [
            "resilio: gave up after 4 attempts (pipeline 'orders.create', policy 'retry')"
        ]
        (gave_up,) = rec.of(RetryGaveUp)
        assert (gave_up.attempts, gave_up.reason, gave_up.error_type) == (
            4,
            "exhausted",
            "ConnectionError",
        )

    def test_permanent_never_retried(self, clock: FakeClock, run: Runner) -> None:
        """A PERMANENT failure is returned after one call, without a note."""
        p, rec = pipe(clock, resilio.Retry(attempts=5), classifier=classify_as(ErrorKind.PERMANENT))
        s = Script(KeyError)
        with pytest.raises(KeyError) as info:
            run(p, s)
        assert s.calls == 1
        assert not hasattr(info.value, "__notes__")
        assert [e.reason for e in rec.of(RetryGaveUp)] == ["permanent"]

    def test_throttled_retried(self, clock: FakeClock, run: Runner) -> None:
        """THROTTLED failures are retried."""
        p, _ = pipe(clock, resilio.Retry(attempts=3), classifier=classify_as(ErrorKind.THROTTLED))
        s = Script(Throttled, "ok")
        assert run(p, s) == "ok"
        assert s.calls == 2

    def test_ambiguous_not_retried_by_default(self, clock: FakeClock, run: Runner) -> None:
        """An AMBIGUOUS failure of work not known to be idempotent is not retried, with a note."""
        p, rec = pipe(clock, resilio.Retry(attempts=3), classifier=classify_as(ErrorKind.AMBIGUOUS))
        s = Script(KeyError)
        with pytest.raises(KeyError) as info:
            run(p, s)
        assert s.calls == 1
        assert "ambiguous" in info.value.__notes__[0]
        assert [e.reason for e in rec.of(RetryGaveUp)] == ["ambiguous"]

    def test_ambiguous_retried_when_policy_says_idempotent(
        self, clock: FakeClock, run: Runner
    ) -> None:
        """``retry_ambiguous=True`` retries AMBIGUOUS failures when the context does not say."""
        p, _ = pipe(
            clock,
            resilio.Retry(attempts=3, retry_ambiguous=True),
            classifier=classify_as(ErrorKind.AMBIGUOUS),
        )
        s = Script(KeyError, "ok")
        assert run(p, s) == "ok"
        assert s.calls == 2

    @pytest.mark.parametrize(
        ("policy_flag", "ctx_flag", "calls"), [(True, False, 1), (False, True, 2)]
    )
    def test_context_idempotent_wins(
        self, clock: FakeClock, run: Runner, policy_flag: bool, ctx_flag: bool, calls: int
    ) -> None:
        """``context.idempotent`` overrides ``retry_ambiguous`` when it is not None."""
        p, _ = pipe(
            clock,
            resilio.Retry(attempts=3, retry_ambiguous=policy_flag),
            classifier=classify_as(ErrorKind.AMBIGUOUS),
        )
        s = Script(KeyError, "ok")
        ctx = resilio.Context(idempotent=ctx_flag)
        if calls == 1:
            with pytest.raises(KeyError):
                run(p, s, ctx)
        else:
            assert run(p, s, ctx) == "ok"
        assert s.calls == calls


class TestContextAndEvents:
    def test_context_attempt_increments(self, clock: FakeClock, run: Runner) -> None:
        """``context.attempt`` is 1, 2, 3 on successive attempts."""
        p, _ = pipe(clock, resilio.Retry(attempts=3))
        s = Script(ConnectionError, ConnectionError, "ok")
        ctx = resilio.Context()
        sync_or_async = run(p, _Bound(s, ctx), ctx)
        assert sync_or_async == "ok"
        assert s.attempts_seen == [1, 2, 3]
        assert ctx.attempt == 3

    def test_scheduled_event_reports_the_real_sleep(self, clock: FakeClock, run: Runner) -> None:
        """RetryScheduled carries the delay really slept, the kind and the error type."""
        p, rec = pipe(clock, resilio.Retry(attempts=3, rng=3))
        s = Script(ConnectionError, TimeoutError, "ok")
        run(p, s)
        events = rec.of(RetryScheduled)
        assert [e.delay for e in events] == clock.sleeps
        assert [e.error_type for e in events] == ["ConnectionError", "TimeoutError"]
        assert {e.kind for e in events} == {"transient"}
        assert {e.operation for e in events} == {"orders.create"}

    def test_seeded_rng_makes_waits_reproducible(self, run: Runner) -> None:
        """Two policies with the same seed wait the same jittered delays."""
        sleeps = []
        for _ in range(2):
            clock = FakeClock()
            p, _ = pipe(clock, resilio.Retry(attempts=5, rng=42))
            with pytest.raises(ConnectionError):
                run(p, Script(ConnectionError))
            sleeps.append(clock.sleeps)
        assert sleeps[0] == sleeps[1]
        assert len(sleeps[0]) == 4

    def test_note_added_once_for_a_reused_exception(self, clock: FakeClock, run: Runner) -> None:
        """An exception object raised on every attempt gets the note once per give-up."""
        error = ConnectionError("same")
        p, _ = pipe(clock, resilio.Retry(attempts=2, backoff=0))
        with pytest.raises(ConnectionError):
            run(p, Script(error))
        with pytest.raises(ConnectionError):
            run(p, Script(error))
        assert len(error.__notes__) == 1


class _Bound:
    """A script bound to a context, so the function can read ``context.attempt``."""

    def __init__(self, script: Script, ctx: resilio.Context) -> None:
        self.script = script
        self.ctx = ctx

    def __call__(self) -> Any:
        return self.script(self.ctx)

    async def aio(self) -> Any:
        return self.script(self.ctx)

    @property
    def calls(self) -> int:
        return self.script.calls


class TestResults:
    def test_rejected_results_retried(self, clock: FakeClock, run: Runner) -> None:
        """A result the predicate rejects is retried."""
        p, rec = pipe(clock, resilio.Retry(attempts=3, retry_if_result=lambda r: r is None))
        s = Script(None, "ok")
        assert run(p, s) == "ok"
        assert s.calls == 2
        assert [e.kind for e in rec.of(RetryScheduled)] == ["result"]

    def test_last_result_returned_when_exhausted(self, clock: FakeClock, run: Runner) -> None:
        """When attempts run out on rejected results, the last result is returned."""
        p, rec = pipe(clock, resilio.Retry(attempts=3, retry_if_result=lambda r: r < 10))
        s = Script(1, 2, 3)
        assert run(p, s) == 3
        (gave_up,) = rec.of(RetryGaveUp)
        assert (gave_up.reason, gave_up.error_type) == ("result", "")

    def test_broken_predicate_fails_the_call(self, clock: FakeClock, run: Runner) -> None:
        """A predicate that raises fails the call with its own error."""

        def predicate(result: Any) -> bool:
            raise RuntimeError("bad predicate")

        p, _ = pipe(clock, resilio.Retry(attempts=3, retry_if_result=predicate))
        with pytest.raises(RuntimeError, match="bad predicate"):
            run(p, Script("ok"))


class TestRetryAfterAndDeadline:
    def test_retry_after_is_the_wait_without_jitter(self, clock: FakeClock, run: Runner) -> None:
        """With an un-jittered backoff, a Retry-After of 7 s is waited exactly."""
        p, rec = pipe(
            clock,
            resilio.Retry(attempts=2, backoff=backoff.exponential(jitter="none")),
            classifier=classify_as(ErrorKind.THROTTLED, retry_after=7),
        )
        assert run(p, Script(Throttled, "ok")) == "ok"
        assert clock.sleeps == [7]
        assert rec.of(RetryScheduled)[0].retry_after == 7

    def test_retry_after_too_long_gives_up_now(self, clock: FakeClock, run: Runner) -> None:
        """A Retry-After above ``max_delay`` gives up at once with the real error."""
        p, rec = pipe(
            clock,
            resilio.Retry(attempts=5, max_delay=30),
            classifier=classify_as(ErrorKind.THROTTLED, retry_after=31),
        )
        s = Script(Throttled)
        with pytest.raises(Throttled) as info:
            run(p, s)
        assert s.calls == 1
        assert clock.sleeps == []
        assert "Retry-After" in info.value.__notes__[0]
        assert [e.reason for e in rec.of(RetryGaveUp)] == ["retry_after_too_long"]

    def test_never_sleeps_past_the_deadline(self, clock: FakeClock, run: Runner) -> None:
        """Under a 1 s total timeout, 0.4 s waits stop before the one that would end past it."""
        p, rec = pipe(
            clock, resilio.Timeout(1), resilio.Retry(attempts=10, backoff=backoff.constant(0.4))
        )
        s = Script(ConnectionError)
        with pytest.raises(ConnectionError) as info:
            run(p, s)
        assert clock.sleeps == [0.4, 0.4]
        assert s.calls == 3
        assert "deadline" in info.value.__notes__[0]
        assert [e.reason for e in rec.of(RetryGaveUp)] == ["deadline"]

    def test_max_delay_caps_backoff(self, clock: FakeClock, run: Runner) -> None:
        """Backoff delays are capped at ``max_delay``."""
        p, _ = pipe(clock, resilio.Retry(attempts=3, backoff=backoff.constant(50), max_delay=2))
        with pytest.raises(ConnectionError):
            run(p, Script(ConnectionError))
        assert clock.sleeps == [2, 2]


class TestBudget:
    def test_spent_budget_returns_the_last_failure(self, clock: FakeClock, run: Runner) -> None:
        """When the shared budget is spent, the policy gives up with the real error."""
        budget = RetryBudget(ratio=0.0, min_retries_per_second=0.1, window=10)
        p, rec = pipe(clock, resilio.Retry(attempts=5, backoff=0, budget=budget))
        s = Script(ConnectionError)
        with pytest.raises(ConnectionError) as info:
            run(p, s)
        assert s.calls == 2  # one retry allowed in the window
        assert "budget" in info.value.__notes__[0]
        assert [e.reason for e in rec.of(RetryGaveUp)] == ["budget"]

    def test_budget_shared_between_pipelines(self, clock: FakeClock, run: Runner) -> None:
        """Two policies given the same budget draw from one allowance."""
        budget = RetryBudget(ratio=0.0, min_retries_per_second=0.2, window=10)
        p1, _ = pipe(clock, resilio.Retry(attempts=5, backoff=0, budget=budget))
        p2, _ = pipe(clock, resilio.Retry(attempts=5, backoff=0, budget=budget))
        s1, s2 = Script(ConnectionError), Script(ConnectionError)
        with pytest.raises(ConnectionError):
            run(p1, s1)
        with pytest.raises(ConnectionError):
            run(p2, s2)
        assert (s1.calls, s2.calls) == (3, 1)

    def test_deposits_allow_a_share_of_calls(self) -> None:
        """Each call deposits ``ratio`` of a retry; retries beyond that are refused."""
        budget = RetryBudget(ratio=0.5, min_retries_per_second=0, window=10)
        for _ in range(4):
            budget.record_call(100.0)
        assert [budget.try_spend(100.0) for _ in range(3)] == [True, True, False]
        assert budget.available(100.0) == 0

    def test_ratio_above_one_allows_several_retries_per_call(self) -> None:
        """ratio is retries per call, not a fraction: 2 funds two retries for each call."""
        budget = RetryBudget(ratio=2.0, min_retries_per_second=0, window=10)
        budget.record_call(100.0)
        budget.record_call(100.0)
        assert budget.available(100.0) == 4
        assert [budget.try_spend(100.0) for _ in range(5)] == [True, True, True, True, False]

    def test_tokens_expire_after_the_window(self) -> None:
        """Calls older than the window no longer fund retries."""
        budget = RetryBudget(ratio=1.0, min_retries_per_second=0, window=10)
        budget.record_call(0.0)
        assert budget.available(5.0) == 1
        assert budget.available(11.0) == 0
        assert not budget.try_spend(11.0)

    @pytest.mark.parametrize(
        "kwargs",
        [{"ratio": -1}, {"window": 0}, {"min_retries_per_second": float("inf")}, {"ratio": "x"}],
    )
    def test_validation(self, kwargs: dict[str, Any]) -> None:
        """Budget arguments must be finite non-negative numbers and the window positive."""
        with pytest.raises(ValueError, match="RetryBudget"):
            RetryBudget(**kwargs)

    def test_mapping_form(self) -> None:
        """A budget may be given in mapping form."""
        retry = resilio.Retry(budget={"ratio": 0.1, "window": 5})
        assert retry.options.budget is not None
        assert retry.options.budget.to_mapping() == {
            "ratio": 0.1,
            "min_retries_per_second": 1.0,
            "window": 5.0,
        }


class TestTestingMode:
    def test_testing_mode_never_raises_attempts(self, clock: FakeClock, run: Runner) -> None:
        """``set_testing(attempts=10)`` leaves a policy of 3 attempts at 3, sleeping nothing."""
        p, rec = pipe(clock, resilio.Retry(attempts=3))
        s = Script(ConnectionError)
        with set_testing(attempts=10), pytest.raises(ConnectionError):
            run(p, s)
        assert s.calls == 3
        assert clock.sleeps == []
        assert [e.delay for e in rec.of(RetryScheduled)] == [0.0, 0.0]

    def test_uncapped_testing_mode_forces_attempts(self, clock: FakeClock, run: Runner) -> None:
        """With ``cap=False`` every policy makes exactly the testing attempts."""
        p, _ = pipe(clock, resilio.Retry(attempts=3))
        s = Script(ConnectionError)
        with set_testing(attempts=5, cap=False), pytest.raises(ConnectionError):
            run(p, s)
        assert s.calls == 5

    def test_set_testing_as_function_and_restore(self) -> None:
        """``set_testing`` works as a call; ``set_testing(False)`` switches it off."""
        assert not resilio.testing.is_testing()
        set_testing(attempts=2)
        try:
            assert resilio.testing.is_testing()
            with set_testing(False):
                assert not resilio.testing.is_testing()
            assert resilio.testing.is_testing()
        finally:
            set_testing(False)
        assert not resilio.testing.is_testing()

    def test_rejects_bad_attempts(self) -> None:
        """Testing attempts must be a positive integer."""
        with pytest.raises(ValueError, match="attempts"):
            set_testing(attempts=0)


class TestOptions:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {"attempts": 0},
            {"attempts": True},
            {"attempts": 2.5},
            {"max_delay": -1},
            {"rng": "seed"},
        ],
    )
    def test_invalid_options(self, kwargs: dict[str, Any]) -> None:
        """Invalid options are refused at construction."""
        with pytest.raises((ValueError, TypeError)):
            resilio.Retry(**kwargs)

    def test_backoff_mapping_and_number(self) -> None:
        """A backoff may be given as a mapping or a number of seconds."""
        assert resilio.Retry(
            backoff={"kind": "linear", "initial": 1}
        ).options.backoff == backoff.linear(1)
        assert resilio.Retry(backoff=2).options.backoff == backoff.constant(2)

    def test_from_options(self) -> None:
        """``from_options`` builds an equivalent policy with a name."""
        original = resilio.Retry(attempts=7)
        copy = resilio.Retry.from_options(original.options, name="r2")
        assert (copy.options, copy.name, copy.kind) == (original.options, "r2", "retry")

    def test_rng_instance_is_used(self) -> None:
        """A Random instance given as ``rng`` is the jitter source."""
        rng = random.Random(1)
        assert resilio.Retry(rng=rng).controller.rng is rng


class TestController:
    def make(self, **kw: Any) -> RetryController:
        options: dict[str, Any] = {
            "attempts": 3,
            "backoff": backoff.constant(1),
            "max_delay": 10.0,
            "retry_ambiguous": False,
            "budget": None,
            "rng": random.Random(0),
        }
        options.update(kw)
        return RetryController(**options)

    def test_sleep_then_retry(self) -> None:
        """A transient failure with attempts left means: wait the backoff delay."""
        c = self.make()
        t = Classification(kind=ErrorKind.TRANSIENT)
        assert c.decide(1, t, None, 0.0, None, None) == (None, 1.0, 1.0)

    def test_exhausted(self) -> None:
        """The last attempt's failure is final."""
        c = self.make()
        assert (
            c.decide(3, Classification(kind=ErrorKind.TRANSIENT), None, 0.0, None, None)[0]
            == "exhausted"
        )

    def test_retry_after_equal_to_remaining_gives_up(self) -> None:
        """A floor that would end exactly at the deadline is too long."""
        c = self.make()
        t = Classification(kind=ErrorKind.THROTTLED, retry_after=5)
        assert c.decide(1, t, None, 10.0, 15.0, None)[0] == "retry_after_too_long"
        assert c.decide(1, t, None, 10.0, 15.1, None) == (None, 5, 1.0)

    def test_jittered_floor_stays_within_spread(self) -> None:
        """With a jittered backoff the floor gains at most 10 %."""
        c = self.make(backoff=backoff.exponential())
        t = Classification(kind=ErrorKind.THROTTLED, retry_after=8)
        delays = [c.decide(1, t, None, 0.0, None, None)[1] for _ in range(200)]
        assert all(8 <= d <= 8.8 for d in delays)
        assert max(delays) > 8.4


class TestFloorProperty:
    @settings(max_examples=300, deadline=None)
    @given(
        retry_after=st.floats(0, 1e5),
        max_delay=st.floats(0, 1e5),
        attempt=st.integers(1, 10**9),
        seed=st.integers(0, 2**32),
        jitter=st.sampled_from(["full", "equal", "none"]),
        left=st.none() | st.floats(0, 1e6),
    )
    def test_jitter_only_adds_to_the_floor(
        self,
        retry_after: float,
        max_delay: float,
        attempt: int,
        seed: int,
        jitter: Any,
        left: float | None,
    ) -> None:
        """An honoured Retry-After hint is waited at least in full, within the bounds."""
        c = RetryController(
            attempts=10**10,
            backoff=backoff.exponential(jitter=jitter),
            max_delay=max_delay,
            retry_ambiguous=False,
            budget=None,
            rng=random.Random(seed),
        )
        t = Classification(kind=ErrorKind.THROTTLED, retry_after=retry_after)
        deadline = None if left is None else 1000.0 + left
        if deadline is not None:
            left = deadline - 1000.0  # what the controller sees after rounding
        reason, delay, _ = c.decide(attempt, t, None, 1000.0, deadline, None)
        if reason is None:
            assert retry_after <= delay <= max_delay
            if left is not None:
                assert delay < left
        else:
            assert reason == "retry_after_too_long"
            assert retry_after > max_delay or (left is not None and retry_after >= left)


class _Outbox:
    """An Enqueuer that keeps what it is given and returns a receipt."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def enqueue(self, **item: Any) -> str:
        self.items.append(item)
        return "queued"


def _open_breaker(clock: FakeClock, breaker: resilio.CircuitBreaker) -> None:
    """Trip ``breaker`` through a pipeline of its own."""
    opener = resilio.Pipeline([breaker], name="opener", clock=clock, telemetry=False)
    with pytest.raises(ConnectionError):
        opener.execute(Script(ConnectionError))


class TestOpenCircuit:
    def test_open_circuit_is_queued_at_once(self, clock: FakeClock, run: Runner) -> None:
        """Under an outermost Fallback(enqueue=), an open breaker's refusal is queued at once."""
        breaker = resilio.CircuitBreaker(failure_threshold=1, break_duration=30)
        _open_breaker(clock, breaker)
        outbox = _Outbox()
        p, rec = pipe(
            clock,
            resilio.Fallback(enqueue=outbox),
            resilio.Retry(attempts=5, backoff=backoff.constant(1)),
            breaker,
        )
        s = Script("never runs")
        ctx = resilio.Context("email.send", payload={"to": 42})
        assert run(p, s, ctx) == "queued"
        assert s.calls == 0
        assert clock.sleeps == []
        assert [item["operation"] for item in outbox.items] == ["email.send"]
        (gave_up,) = rec.of(RetryGaveUp)
        assert (gave_up.attempts, gave_up.reason, gave_up.error_type) == (
            1,
            "circuit_open",
            "resilio.errors.CircuitOpen",
        )
        assert rec.of(RetryScheduled) == []

    def test_the_refusal_itself_propagates(self, clock: FakeClock, run: Runner) -> None:
        """Without a fallback the caller gets the CircuitOpen, uncut and without a note."""
        breaker = resilio.CircuitBreaker(failure_threshold=1, break_duration=30)
        _open_breaker(clock, breaker)
        p, _ = pipe(clock, resilio.Retry(attempts=5), breaker)
        with pytest.raises(resilio.CircuitOpen) as info:
            run(p, Script("never runs"))
        assert info.value.retry_after == 30
        assert isinstance(info.value.__cause__, ConnectionError)
        assert not hasattr(info.value, "__notes__")
        assert clock.sleeps == []

    def test_breaker_opening_mid_retry_ends_the_retrying(
        self, clock: FakeClock, run: Runner
    ) -> None:
        """When an attempt opens the breaker, the next attempt's refusal ends it, with a note."""
        breaker = resilio.CircuitBreaker(failure_threshold=1, break_duration=30)
        p, rec = pipe(clock, resilio.Retry(attempts=5, backoff=backoff.constant(1)), breaker)
        s = Script(ConnectionError, "ok")
        with pytest.raises(resilio.CircuitOpen) as info:
            run(p, s)
        assert s.calls == 1
        assert clock.sleeps == [1.0]
        assert info.value.__notes__ == [
            "resilio: gave up after 1 call: the circuit opened and refused attempt 2 "
            "(pipeline 'orders.create', policy 'retry')"
        ]
        assert [e.reason for e in rec.of(RetryGaveUp)] == ["circuit_open"]

    def test_wait_on_open_circuit_waits_out_the_break(self, clock: FakeClock, run: Runner) -> None:
        """``wait_on_open_circuit=True`` treats the refusal as THROTTLED: wait, then a trial."""
        breaker = resilio.CircuitBreaker(failure_threshold=1, break_duration=30)
        _open_breaker(clock, breaker)
        retry = resilio.Retry(
            attempts=2, backoff=backoff.exponential(jitter="none"), wait_on_open_circuit=True
        )
        p, rec = pipe(clock, retry, breaker)
        s = Script("ok")
        assert run(p, s) == "ok"
        assert s.calls == 1
        assert clock.sleeps == [30]
        (scheduled,) = rec.of(RetryScheduled)
        assert (scheduled.kind, scheduled.retry_after) == ("throttled", 30)

    def test_rate_limited_retry_after_still_waited(self, clock: FakeClock, run: Runner) -> None:
        """Only open circuits end the retrying: a RateLimited's retry_after is still waited."""
        p, _ = pipe(clock, resilio.Retry(attempts=2, backoff=backoff.exponential(jitter="none")))
        s = Script(resilio.RateLimited("slow down", retry_after=2), "ok")
        assert run(p, s) == "ok"
        assert s.calls == 2
        assert clock.sleeps == [2]

    def test_option_is_validated_and_defaults_off(self) -> None:
        """``wait_on_open_circuit`` is a frozen bool option, False by default."""
        assert resilio.Retry().options.wait_on_open_circuit is False
        assert resilio.Retry(wait_on_open_circuit=True).options.wait_on_open_circuit is True
        with pytest.raises(TypeError):
            resilio.Retry(wait_on_open_circuit="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retry_ambiguous": "yes"}, "'retry_ambiguous' must be <class 'bool'> (got 'yes'"),
        ({"retry_if_result": 3}, "'retry_if_result' must be callable (got 3"),
    ],
)
def test_option_type_errors_are_one_line(kwargs: dict[str, Any], message: str) -> None:
    """A wrong option type is a TypeError whose text is one message, no attrs internals."""
    with pytest.raises(TypeError) as info:
        resilio.Retry(**kwargs)
    assert str(info.value).startswith(message)
    assert "Attribute(" not in str(info.value)
