"""Static typing of the public API, checked by ``mypy --strict`` (see ``[tool.mypy]``).

Nothing here runs under pytest: mypy fails the build if a public signature stops giving users
the types below.
"""

from __future__ import annotations

import asyncio
from typing import assert_type

import resilio

pipeline = resilio.Pipeline([resilio.Retry(attempts=3)], name="typing")


@pipeline
def total(order: int, tax: float = 0.2) -> float:
    return order * (1 + tax)


@pipeline
async def fetch(order: int) -> str:
    return str(order)


async def _use() -> None:
    assert_type(total(3), float)
    assert_type(await fetch(3), str)
    task = asyncio.create_task(fetch(3))  # a decorated async def returns a coroutine
    assert_type(await task, str)
    assert_type(pipeline.execute(total, 3), float)
    assert_type(await pipeline.execute_async(fetch, 3), str)


def _run() -> None:
    assert_type(asyncio.run(fetch(1)), str)
