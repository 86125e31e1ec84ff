"""Payload hygiene: normalisation to JSON and Customer.io's size limits."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilio_customerio import payload
from resilio_customerio.errors import CustomerIOError, InvalidRequest, PayloadTooLarge
from resilio_customerio.payload import (
    MAX_EVENT_DATA_BYTES,
    check_attributes,
    check_event,
    check_id,
    check_size,
    normalise,
    size,
    to_timestamp,
)

OP = "customerio.track"


class Colour(enum.Enum):
    RED = "red"


class TestNormalise:
    def test_nested_datetimes_become_epoch_seconds(self) -> None:
        """Datetimes at any depth become integer epoch seconds."""
        when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        value = {"a": {"b": [when, {"c": when}]}, "d": (when,)}
        assert normalise(value, OP) == {
            "a": {"b": [1704164645, {"c": 1704164645}]},
            "d": [1704164645],
        }

    def test_aware_datetimes_are_converted(self) -> None:
        """A timezone-aware datetime is converted to UTC, not relabelled."""
        plus_two = dt.timezone(dt.timedelta(hours=2))
        local = dt.datetime(2024, 1, 2, 5, 4, 5, tzinfo=plus_two)
        assert normalise({"t": local}, OP) == {"t": 1704164645}

    def test_naive_datetimes_are_utc(self) -> None:
        """A naive datetime is taken as UTC, as the client does."""
        assert to_timestamp(dt.datetime(1970, 1, 2)) == 86400

    def test_dates_are_midnight_utc(self) -> None:
        """A date becomes epoch seconds of midnight UTC."""
        assert normalise(dt.date(1970, 1, 3), OP) == 2 * 86400

    def test_decimal_uuid_enum(self) -> None:
        """Decimal becomes int or float, UUID a string, an enum its value."""
        u = uuid.UUID("12345678-1234-5678-1234-567812345678")
        value = {"i": decimal.Decimal("3"), "f": decimal.Decimal("2.5"), "u": u, "e": Colour.RED}
        assert normalise(value, OP) == {"i": 3, "f": 2.5, "u": str(u), "e": "red"}

    @pytest.mark.parametrize(
        "bad",
        [
            float("nan"),
            float("inf"),
            float("-inf"),
            decimal.Decimal("NaN"),
            decimal.Decimal("Infinity"),
        ],
    )
    def test_non_finite_numbers_become_none(self, bad: object) -> None:
        """NaN and infinities become None (JSON null)."""
        assert normalise({"x": [bad]}, OP) == {"x": [None]}

    def test_sets_become_sorted_lists(self) -> None:
        """Sets become lists, sorted when their items allow."""
        assert normalise({"s": {3, 1, 2}}, OP) == {"s": [1, 2, 3]}
        mixed = normalise({1, "a"}, OP)
        assert sorted(mixed, key=str) == [1, "a"]

    def test_non_string_keys(self) -> None:
        """Integer keys become strings, as JSON does."""
        assert normalise({1: "a"}, OP) == {"1": "a"}

    def test_unrepresentable_values_name_the_place_not_the_value(self) -> None:
        """Bytes are refused with an error naming where they sit and their type."""
        with pytest.raises(InvalidRequest) as info:
            normalise({"data": {"blob": b"secret-bytes"}}, OP, "data")
        assert "bytes" in str(info.value)
        assert "data.data.blob" in str(info.value)
        assert "secret" not in str(info.value)

    def test_object_keys_refused(self) -> None:
        """A key that is not a string or number is refused."""
        with pytest.raises(InvalidRequest):
            normalise({(1, 2): "x"}, OP)

    @given(
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats()
            | st.text()
            | st.datetimes(timezones=st.none() | st.timezones())
            | st.dates()
            | st.decimals()
            | st.uuids(),
            lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
            max_leaves=20,
        )
    )
    def test_result_is_always_strict_json(self, value: object) -> None:
        """Whatever goes in, the result is strict JSON (no NaN, no unknown types)."""
        json.dumps(normalise(value, OP), allow_nan=False)


class TestIds:
    @pytest.mark.parametrize("good", [0, "0", 42, "a@example.com", "x" * 150])
    def test_valid_ids(self, good: object) -> None:
        """Falsy but real ids (0, "0") and 150-byte ids are valid."""
        check_id(good, OP)

    @pytest.mark.parametrize("blank", [None, ""])
    def test_blank_ids_are_refused(self, blank: object) -> None:
        """None and "" are refused before any request."""
        with pytest.raises(InvalidRequest, match="cannot be blank"):
            check_id(blank, OP, "customer_id")

    @pytest.mark.parametrize("wrong", [True, 1.5, ["a"]])
    def test_wrong_types_are_refused(self, wrong: object) -> None:
        """Booleans, floats and lists are not ids."""
        with pytest.raises(InvalidRequest):
            check_id(wrong, OP)

    def test_long_id_names_the_limit(self) -> None:
        """A 151-byte id is refused naming the 150-byte limit, not the id."""
        with pytest.raises(PayloadTooLarge) as info:
            check_id("é" * 76, OP)
        assert info.value.limit == "id <= 150 bytes"
        assert "é" not in str(info.value)


class TestLimits:
    def test_attribute_value_limit(self) -> None:
        """An attribute value over 1000 bytes is refused naming the limit and the attribute."""
        check_attributes({"bio": "x" * 1000}, OP)
        with pytest.raises(PayloadTooLarge) as info:
            check_attributes({"bio": "x" * 1001}, OP)
        assert "1000 bytes" in str(info.value)
        assert "'bio'" in str(info.value)

    def test_attribute_name_limit(self) -> None:
        """An attribute name over 150 bytes is refused without echoing the name."""
        with pytest.raises(PayloadTooLarge) as info:
            check_attributes({"n" * 151: 1}, OP)
        assert "n" * 151 not in str(info.value)

    def test_relationships_are_exempt(self) -> None:
        """cio_relationships may exceed the per-value limit."""
        check_attributes({"cio_relationships": [{"identifiers": {"id": "x" * 50}}] * 30}, OP)

    def test_event_name_limit(self) -> None:
        """Event names are at most 100 bytes (after trimming) and not blank."""
        check_event(" " + "n" * 100 + " ", {}, OP)
        with pytest.raises(PayloadTooLarge, match="event names <= 100 bytes"):
            check_event("n" * 101, {}, OP)
        with pytest.raises(InvalidRequest, match="blank"):
            check_event("  ", {}, OP)

    def test_event_data_limit(self) -> None:
        """Event data over 100,000 bytes is refused naming the limit."""
        data = {"blob": "x" * (MAX_EVENT_DATA_BYTES - 12)}
        assert size(data) == MAX_EVENT_DATA_BYTES
        check_event("e", data, OP)
        data["blob"] += "x"
        with pytest.raises(PayloadTooLarge, match="event data <= 100000 bytes"):
            check_event("e", data, OP)

    def test_check_size(self) -> None:
        """check_size returns the size and refuses bodies over the limit."""
        assert check_size({"a": 1}, 10, "things", OP) == 8
        with pytest.raises(PayloadTooLarge, match="things <= 7 bytes"):
            check_size({"a": 1}, 7, "things", OP)


CANARY_KEY = "secret.person@example.com"


@pytest.mark.parametrize(
    "call",
    [
        lambda: payload.check_attributes({CANARY_KEY: "x" * 1001}, "customerio.identify"),
        lambda: payload.normalise({CANARY_KEY: b"x"}, "customerio.identify", "attributes"),
        lambda: payload.normalise({"friends": {CANARY_KEY: b"x"}}, "customerio.track", "data"),
    ],
    ids=["oversize-value", "unserialisable-value", "nested-key"],
)
def test_a_key_that_is_personal_data_never_reaches_the_message(call: Any) -> None:
    """An attribute or data key that is an email is not named in the error: keys are data."""
    with pytest.raises(CustomerIOError) as info:
        call()
    text = f"{info.value} {info.value!r}"
    assert CANARY_KEY not in text
    assert "example.com" not in text


def test_an_identifier_like_key_is_still_named() -> None:
    """A key like `plan_2` is named, so the error still says where the problem is."""
    with pytest.raises(CustomerIOError, match=r"data\.plan_2 holds a bytes"):
        payload.normalise({"plan_2": b"x"}, "customerio.track", "data")


def test_more_attributes_than_a_person_may_have_is_refused() -> None:
    """301 attributes in one call are refused naming the limit (300 per person)."""
    attributes = {f"a{i}": i for i in range(301)}
    with pytest.raises(PayloadTooLarge, match="at most 300 attributes per person"):
        check_attributes(attributes, "customerio.identify")
    check_attributes(dict(list(attributes.items())[:300]), "customerio.identify")
