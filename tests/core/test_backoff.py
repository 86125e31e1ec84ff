"""Tests for resilio.backoff: delays, caps, jitter, mapping form."""

from __future__ import annotations

import math
import random
import re
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilio import backoff
from resilio.backoff import Constant, DecorrelatedJitter, Exponential, Linear


class TestShapes:
    def test_constant_is_constant(self) -> None:
        """A constant backoff returns its delay for every attempt."""
        b = backoff.constant(1.5)
        assert [b.delay(n, None) for n in (1, 2, 50)] == [1.5, 1.5, 1.5]
        assert b.cap == 1.5

    def test_linear_grows_by_step_and_caps(self) -> None:
        """A linear backoff adds ``step`` per retry and stops at ``max``."""
        b = backoff.linear(1.0, step=0.5, max=2.2)
        assert [b.delay(n, None) for n in (1, 2, 3, 4)] == [1.0, 1.5, 2.0, 2.2]

    def test_linear_step_defaults_to_initial(self) -> None:
        """Without ``step``, a linear backoff grows by its initial delay."""
        assert backoff.linear(2.0).delay(3, None) == 6.0

    def test_exponential_without_jitter_doubles_and_caps(self) -> None:
        """An un-jittered exponential backoff doubles from ``initial`` up to ``max``."""
        b = backoff.exponential(initial=0.2, max=1.0, jitter="none")
        assert [b.delay(n, None) for n in (1, 2, 3, 4)] == [0.2, 0.4, 0.8, 1.0]

    def test_exponential_full_jitter_draws_below_base(self) -> None:
        """Full jitter draws uniformly from ``[0, base]``."""
        b = backoff.exponential(initial=1.0, max=100, jitter="full")
        rng = random.Random(7)
        draws = [b.delay(3, rng) for _ in range(200)]
        assert all(0 <= d <= 4.0 for d in draws)
        assert min(draws) < 1.0
        assert max(draws) > 3.0

    def test_exponential_equal_jitter_keeps_half(self) -> None:
        """Equal jitter draws from ``[base/2, base]``."""
        b = backoff.exponential(initial=1.0, max=100, jitter="equal")
        rng = random.Random(7)
        draws = [b.delay(3, rng) for _ in range(200)]
        assert all(2.0 <= d <= 4.0 for d in draws)

    def test_seeded_rng_is_deterministic(self) -> None:
        """The same seed gives the same jittered delays."""
        b = backoff.exponential()
        one = [b.delay(n, random.Random(3)) for n in range(1, 6)]
        two = [b.delay(n, random.Random(3)) for n in range(1, 6)]
        assert one == two

    def test_decorrelated_jitter_stays_between_initial_and_multiple_of_previous(self) -> None:
        """Decorrelated jitter draws in ``[initial, previous * multiplier]`` under the cap."""
        b = backoff.decorrelated_jitter(initial=0.5, max=100, multiplier=3)
        rng = random.Random(1)
        previous: float | None = None
        for n in range(1, 30):
            d = b.delay(n, rng, previous)
            high = 1.5 if previous is None else previous * 3
            assert 0.5 <= d <= min(100, high)
            previous = d

    def test_huge_attempts_do_not_overflow(self) -> None:
        """Attempt 10**6 (and larger) gives the cap instead of an OverflowError."""
        assert backoff.exponential(jitter="none", max=10).delay(10**6, None) == 10.0
        assert backoff.exponential(jitter="none", max=10).delay(10**400, None) == 10.0
        assert backoff.linear(1.0, max=30).delay(10**400, None) == 30.0

    def test_jittered_flag(self) -> None:
        """Only jittering strategies report ``jittered``."""
        assert not backoff.constant().jittered
        assert not backoff.linear().jittered
        assert not backoff.exponential(jitter="none").jittered
        assert backoff.exponential().jittered
        assert backoff.decorrelated_jitter().jittered


class TestValidation:
    @pytest.mark.parametrize("bad", [-1, math.inf, math.nan, "1", True])
    def test_rejects_bad_seconds(self, bad: object) -> None:
        """Delays must be finite numbers >= 0."""
        with pytest.raises((ValueError, TypeError)):
            Exponential(initial=bad)  # type: ignore[arg-type]

    def test_rejects_unknown_jitter(self) -> None:
        """Jitter must be one of full, equal, none."""
        with pytest.raises(ValueError, match="jitter"):
            backoff.exponential(jitter="half")  # type: ignore[arg-type]

    def test_rejects_shrinking_multiplier(self) -> None:
        """A multiplier below 1 is refused."""
        with pytest.raises(ValueError, match="multiplier"):
            backoff.exponential(multiplier=0.5)

    def test_is_frozen(self) -> None:
        """Backoffs are immutable value objects."""
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            backoff.constant().seconds = 2  # type: ignore[misc]
        assert backoff.exponential(0.2, 10) == backoff.exponential(0.2, 10)


class TestMapping:
    @pytest.mark.parametrize(
        "b",
        [
            Constant(seconds=2.0),
            Linear(initial=1.0, step=2.0, max=9.0),
            Exponential(initial=0.2, max=10.0, jitter="equal"),
            DecorrelatedJitter(initial=0.1, max=5.0),
        ],
    )
    def test_round_trip(self, b: backoff.Backoff) -> None:
        """``from_mapping(b.to_mapping())`` rebuilds an equal backoff."""
        assert backoff.from_mapping(b.to_mapping()) == b

    def test_yaml_shape(self) -> None:
        """The documented YAML mapping builds an exponential backoff."""
        b = backoff.from_mapping(
            {"kind": "exponential", "initial": 0.2, "max": 10, "jitter": "full"}
        )
        assert b == Exponential(initial=0.2, max=10.0, jitter="full")

    def test_number_is_constant(self) -> None:
        """A bare number means a constant backoff."""
        assert backoff.from_mapping(3) == Constant(seconds=3.0)

    def test_unknown_kind(self) -> None:
        """An unknown kind names the known ones."""
        with pytest.raises(ValueError, match="unknown backoff kind 'fibonacci'"):
            backoff.from_mapping({"kind": "fibonacci"})

    def test_unknown_option(self) -> None:
        """An unknown option is a ValueError naming the backoff kind."""
        with pytest.raises(ValueError, match="invalid options for backoff 'constant'"):
            backoff.from_mapping({"kind": "constant", "secs": 1})


seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
attempts = st.integers(min_value=0, max_value=10**9)


def _any_backoff() -> st.SearchStrategy[backoff.Backoff]:
    mult = st.floats(min_value=1.0, max_value=1e3)
    bounds = st.tuples(seconds, seconds).map(sorted)  # (initial, max) with initial <= max
    jitters = st.sampled_from(["full", "equal", "none"])
    return st.one_of(
        st.builds(Constant, seconds=seconds),
        st.builds(lambda b, step: Linear(initial=b[0], step=step, max=b[1]), bounds, seconds),
        st.builds(
            lambda b, m, j: Exponential(initial=b[0], max=b[1], multiplier=m, jitter=j),
            bounds,
            mult,
            jitters,
        ),
        st.builds(
            lambda b, m: DecorrelatedJitter(initial=b[0], max=b[1], multiplier=m), bounds, mult
        ),
    )


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(
        b=_any_backoff(),
        attempt=attempts,
        seed=st.integers(0, 2**32),
        previous=st.none() | st.floats(0, 1e300),
    )
    def test_delay_is_finite_non_negative_and_capped(
        self, b: backoff.Backoff, attempt: int, seed: int, previous: float | None
    ) -> None:
        """Any attempt and parameters give a finite delay in ``[0, cap]``."""
        d = b.delay(attempt, random.Random(seed), previous)
        assert math.isfinite(d)
        assert 0 <= d <= b.cap


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: backoff.exponential(initial=10, max=1), "exponential backoff initial (10s)"),
        (lambda: backoff.linear(initial=5, max=2), "linear backoff initial (5s)"),
        (
            lambda: backoff.decorrelated_jitter(initial=3, max=1),
            "decorrelated_jitter backoff initial (3s)",
        ),
    ],
)
def test_initial_above_max_is_refused(make: Any, message: str) -> None:
    """A first delay longer than the cap is a mistake, named with both values."""
    with pytest.raises(ValueError, match=re.escape(message) + r" must not exceed max"):
        make()


def test_unknown_jitter_is_one_line() -> None:
    """A jitter typo reads as one line naming the choices, with no attrs internals."""
    with pytest.raises(ValueError) as info:
        backoff.exponential(jitter="fulll")  # type: ignore[arg-type]
    assert str(info.value) == "jitter must be 'full', 'equal' or 'none', got 'fulll'"
