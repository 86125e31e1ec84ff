"""Events are frozen values: a listener cannot change what other listeners see."""

from __future__ import annotations

import inspect
from typing import Any

import attrs
import pytest

from resilio import events

EVENT_CLASSES = sorted(
    (
        cls
        for _, cls in inspect.getmembers(events, inspect.isclass)
        if issubclass(cls, events.Event) and cls.__module__ == events.__name__
    ),
    key=lambda cls: cls.__name__,
)

# A sample value per field annotation (annotations are strings: postponed evaluation).
SAMPLES: dict[str, Any] = {
    "str": "x",
    "str | None": "x",
    "int": 2,
    "float": 1.5,
    "float | None": 1.5,
    "bool": True,
}


def _instance(cls: type[events.Event]) -> events.Event:
    values = {}
    for field in attrs.fields(cls):
        if field.type not in SAMPLES:
            pytest.fail(f"{cls.__name__}.{field.name}: no sample value for {field.type!r}")
        values[field.name] = SAMPLES[field.type]
    return cls(**values)


def test_every_event_class_is_found() -> None:
    """The discovery sees every event class resilio.events exports (the base and 12 kinds)."""
    exported = {getattr(events, name) for name in events.__all__}
    expected = {c for c in exported if inspect.isclass(c) and issubclass(c, events.Event)}
    assert set(EVENT_CLASSES) == expected
    assert len(EVENT_CLASSES) == 13


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.__name__)
def test_event_is_frozen(cls: type[events.Event]) -> None:
    """Assigning or deleting any field, or adding an attribute, raises; the value is unchanged."""
    event = _instance(cls)
    for field in attrs.fields(cls):
        before = getattr(event, field.name)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(event, field.name, before)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            delattr(event, field.name)
        assert getattr(event, field.name) == before
    with pytest.raises((attrs.exceptions.FrozenInstanceError, AttributeError)):
        event.extra = 1  # type: ignore[attr-defined]
    assert not hasattr(event, "extra")
