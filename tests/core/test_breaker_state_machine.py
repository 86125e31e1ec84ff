"""Property tests of the breaker's I/O-free state machine: no sequence breaks its invariants."""

from __future__ import annotations

import math
from collections import deque

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from resilio.policies._breaker_state import BreakerMachine, BreakerRules, CircuitState, TimeWindow


class BreakerModel(RuleBasedStateMachine):
    """Drives a BreakerMachine with random calls, trials and time steps against a shadow model."""

    def __init__(self) -> None:
        super().__init__()
        self.m: BreakerMachine
        self.now = 0.0
        self.next_id = 1
        self.in_flight: list[int] = []
        self.opened_at: float | None = None
        self.recent: deque[tuple[bool, bool]] = deque()
        self.openings = 0  # consecutive openings without a close, as the model counts them
        self.trial_successes = 0

    @initialize(
        threshold=st.one_of(st.none(), st.integers(1, 5)),
        rate=st.one_of(st.none(), st.sampled_from([0.25, 0.5, 1.0])),
        slow_rate=st.one_of(st.none(), st.sampled_from([0.5, 1.0])),
        minimum=st.integers(1, 6),
        size=st.integers(1, 8),
        max_calls=st.integers(1, 3),
        successes=st.integers(1, 3),
        multiplier=st.sampled_from([1.0, 2.0]),
    )
    def setup(
        self,
        threshold: int | None,
        rate: float | None,
        slow_rate: float | None,
        minimum: int,
        size: int,
        max_calls: int,
        successes: int,
        multiplier: float,
    ) -> None:
        if threshold is None and rate is None and slow_rate is None:
            threshold = 3
        self.cfg = BreakerRules(
            failure_threshold=threshold,
            failure_rate=rate,
            slow_call_rate=slow_rate,
            minimum_calls=minimum,
            window_size=size if (rate or slow_rate) else None,
            break_duration=10.0,
            break_duration_multiplier=multiplier,
            max_break_duration=40.0,
            half_open_max_calls=max_calls,
            success_threshold=successes,
        )
        self.m = BreakerMachine(self.cfg)
        self.size = size
        self.consecutive = 0

    # -- closed-state calls ----------------------------------------------------------------

    def _would_trip(self, failed: bool) -> bool:
        rules = self.cfg
        threshold = rules.failure_threshold
        if failed and threshold is not None and self.consecutive >= threshold:
            return True
        if not rules.windowed:
            return False
        calls = len(self.recent)
        if calls < rules.minimum_calls:
            return False
        failures = sum(f for f, _ in self.recent)
        slow = sum(s for _, s in self.recent)
        if rules.failure_rate is not None and failures >= rules.failure_rate * calls:
            return True
        return rules.slow_call_rate is not None and slow >= rules.slow_call_rate * calls

    @precondition(lambda self: self.m.state is CircuitState.CLOSED)
    @rule(failed=st.booleans(), slow=st.booleans(), fast=st.booleans())
    def closed_call(self, failed: bool, slow: bool, fast: bool) -> None:
        """A call admitted while closed reports; the circuit opens only if a rule trips."""
        self.consecutive = self.consecutive + 1 if failed else 0
        if self.cfg.windowed:
            self.recent.append((failed, slow))
            if len(self.recent) > self.size:
                self.recent.popleft()
        expected = self._would_trip(failed)
        if fast and not failed and not slow:  # the success fast path must agree with record()
            transition = self.m.record_success(None, lambda: self.now)
        else:
            transition = self.m.record(self.now, failed, slow)
        assert (transition is not None) == expected
        if transition is not None:
            assert self.m.state is CircuitState.OPEN
            self._opened()

    def _opened(self) -> None:
        """The circuit just opened: its break is break_duration escalated, capped at the max."""
        self.openings += 1
        expected = min(10.0 * self.cfg.break_duration_multiplier ** (self.openings - 1), 40.0)
        assert self.m.open_until - self.now == expected
        self.opened_at = self.now
        self.in_flight.clear()
        self.recent.clear()
        self.consecutive = 0

    @rule(seconds=st.sampled_from([0.5, 3.0, 10.0, 25.0]))
    def advance(self, seconds: float) -> None:
        """Time passes."""
        self.now += seconds

    # -- open and half-open ----------------------------------------------------------------

    @precondition(lambda self: self.m.state is not CircuitState.CLOSED)
    @rule()
    def acquire(self) -> None:
        """Ask for a trial: never before the break ends, never beyond max calls."""
        before = self.m.state
        open_until = self.m.open_until
        all_lost = bool(self.m.trials) and all(t <= self.now for t in self.m.trials.values())
        tid = self.next_id
        self.next_id += 1
        admitted, _ = self.m.acquire(self.now, tid)
        if before is CircuitState.ISOLATED:
            assert not admitted
            return
        if before is CircuitState.OPEN and self.now < open_until:
            assert not admitted
            assert self.m.state is CircuitState.OPEN
            return
        if before is CircuitState.OPEN:
            assert self.m.state is CircuitState.HALF_OPEN
            self.in_flight.clear()
            self.trial_successes = 0
        if all_lost:
            assert admitted, "trials that never reported must free their slots after a break"
        if admitted:
            self.in_flight.append(tid)

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data(), outcome=st.sampled_from([True, False, None]), lose=st.booleans())
    def trial_reports(self, data: st.DataObject, outcome: bool | None, lose: bool) -> None:
        """A trial reports success, counted failure or neither, or is lost for good."""
        tid = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        if lose:
            return
        was_half_open = self.m.state is CircuitState.HALF_OPEN
        known = tid in self.m.trials
        transition = self.m.trial_done(self.now, tid, outcome)
        if not (was_half_open and known):
            assert transition is None
            return
        if outcome is False:
            assert transition is not None
            assert self.m.state is CircuitState.OPEN
            self._opened()
            return
        if outcome is True:
            self.trial_successes += 1
        closes = self.trial_successes >= self.cfg.success_threshold
        assert (transition is not None) == closes, "closes exactly at success_threshold"
        if closes:
            assert self.m.state is CircuitState.CLOSED
            self._closed()
        else:
            assert self.m.state is CircuitState.HALF_OPEN

    def _closed(self) -> None:
        self.in_flight.clear()
        self.recent.clear()
        self.consecutive = 0
        self.openings = 0

    @rule()
    def isolate_then_maybe_reset(self) -> None:
        """Manual isolation rejects everything until a reset closes the circuit."""
        self.m.isolate()
        assert not self.m.acquire(self.now + 10_000, -1)[0]
        self.m.close("reset")
        self._closed()

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def state_is_known(self) -> None:
        """The state is always one of the four."""
        assert self.m.state in set(CircuitState)

    @invariant()
    def trials_bounded(self) -> None:
        """Half-open never holds more trial slots than half_open_max_calls."""
        assert len(self.m.trials) <= self.cfg.half_open_max_calls
        if self.m.state is not CircuitState.HALF_OPEN:
            assert not self.m.trials

    @invariant()
    def break_is_bounded(self) -> None:
        """An open circuit's break never exceeds max_break_duration."""
        if self.m.state is CircuitState.OPEN and self.opened_at is not None:
            assert self.m.open_until - self.opened_at <= 40.0

    @invariant()
    def window_counts_are_consistent(self) -> None:
        """Window counters stay within 0 <= failures, slow <= calls <= size."""
        window = self.m.window
        if window is not None:
            assert 0 <= window.failures <= window.calls <= self.size
            assert 0 <= window.slow <= window.calls


BreakerModel.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBreakerStateMachine = BreakerModel.TestCase


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.floats(0, 30), st.booleans(), st.booleans()), min_size=1, max_size=60
    )
)
def test_time_window_matches_brute_force(events: list[tuple[float, bool, bool]]) -> None:
    """The bucketed time window's sums equal a recount of the calls in the live buckets."""
    window = TimeWindow(10.0, buckets=10)
    now = 0.0
    seen: list[tuple[float, bool, bool]] = []
    for step, failed, slow in events:
        now += step
        window.add(now, failed, slow)
        seen.append((now, failed, slow))
        current = math.floor(now / 1.0)
        live = [e for e in seen if math.floor(e[0] / 1.0) > current - 10]
        assert window.calls == len(live)
        assert window.failures == sum(f for _, f, _ in live)
        assert window.slow == sum(s for _, _, s in live)
