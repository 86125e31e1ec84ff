"""A tiny operations registry for outbox tests (duck-typed like the real one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from resilio._pipeline import Pipeline


@attrs.define
class FakeOperation:
    handler: Callable[[Any], Any]
    idempotent: bool | None = True
    pipeline: str | None = "replay"


class FakeRegistry:
    """Operations by name and pipelines by name."""

    def __init__(self, clock: Any = None, classifier: Any = None) -> None:
        self.operations: dict[str, FakeOperation] = {}
        self.pipelines: dict[str, Pipeline] = {
            "replay": Pipeline(
                [], name="replay", clock=clock, classifier=classifier, telemetry=False
            )
        }

    def add(self, name: str, handler: Callable[[Any], Any], **kw: Any) -> FakeOperation:
        op = FakeOperation(handler, **kw)
        self.operations[name] = op
        return op

    def operation(self, name: str) -> FakeOperation:
        return self.operations[name]

    def pipeline(self, name: str) -> Pipeline:
        return self.pipelines[name]
