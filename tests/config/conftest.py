"""Fixtures for configuration and plugin tests: a clean plugin system and dummy policy types."""

from __future__ import annotations

import enum
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from attrs import field, frozen, validators

import resilio
from resilio.plugins import manager
from resilio.policies._base import Env, Layer, Policy


class Color(enum.Enum):
    """An enum option for the dummy policy."""

    RED = "red"
    BLUE = "blue"


@frozen(kw_only=True)
class DummyOptions:
    """Options of the dummy policy.

    Attributes:
        count: A positive integer.
        wait: A duration in seconds.
        enabled: A flag.
        mode: One of two literals.
        label: An optional string.
        tags: A tuple of strings.
        color: An enum.
    """

    count: int = field(default=1, validator=validators.ge(1))
    wait: float = 1.0
    enabled: bool = True
    mode: Literal["fast", "slow"] = "fast"
    label: str | None = None
    tags: tuple[str, ...] = ()
    color: Color = Color.RED


class Dummy(Policy):
    """A pass-through policy following the policy convention."""

    kind: ClassVar[str] = "dummy"
    options_class: ClassVar[type] = DummyOptions

    def __init__(self, *, name: str | None = None, **options: Any) -> None:
        self.options = DummyOptions(**options)
        self.name = name or self.kind

    @classmethod
    def from_options(cls, options: DummyOptions, *, name: str | None = None) -> Dummy:
        """Build from options."""
        self = cls.__new__(cls)
        self.options = options
        self.name = name or cls.kind
        return self

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        """Pass through."""
        return Layer(inner, env, self)


@frozen(kw_only=True)
class CounterOptions:
    """Options of the counter policy.

    Attributes:
        limit: Required integer.
    """

    limit: int


class Counter(Policy):
    """A stateful pass-through policy whose state survives reloads if unchanged."""

    kind: ClassVar[str] = "counter"
    options_class: ClassVar[type] = CounterOptions

    def __init__(self, *, limit: int, name: str | None = None) -> None:
        self.options = CounterOptions(limit=limit)
        self.name = name or self.kind
        self.calls = 0

    @classmethod
    def from_options(cls, options: CounterOptions, *, name: str | None = None) -> Counter:
        """Build from options."""
        return cls(limit=options.limit, name=name)

    def make_layer(self, inner: Layer, env: Env) -> Layer:
        """Count calls."""
        policy = self

        class _Count(Layer):
            def run(self, fn: Any, args: Any, kwargs: Any, ctx: Any) -> Any:
                policy.calls += 1
                return self.inner.run(fn, args, kwargs, ctx)

            async def run_async(self, fn: Any, args: Any, kwargs: Any, ctx: Any) -> Any:
                policy.calls += 1
                return await self.inner.run_async(fn, args, kwargs, ctx)

        return _Count(inner, env, self)


class DummyPlugin:
    """Registers the dummy policy types."""

    @resilio.hookimpl
    def resilio_register_policies(self, registry: Any) -> None:
        """Register Dummy and Counter."""
        registry.add(Dummy)
        registry.add(Counter)


@pytest.fixture(autouse=True)
def clean_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with a freshly discovered plugin system and no blocked plugins."""
    monkeypatch.delenv(manager.DISABLE_ENV, raising=False)
    manager.reset()
    yield
    manager.reset()


@pytest.fixture
def dummy_plugin() -> DummyPlugin:
    """Register the dummy policy types for one test."""
    plugin = DummyPlugin()
    manager.register(plugin, name="dummy-plugin")
    return plugin


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a dedented YAML file into tmp_path and return its path."""

    def _write(text: str, name: str = "resilio.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


def make_distribution(
    site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]
) -> None:
    """Create an installed distribution in ``site``: modules plus a dist-info with entry points."""
    for rel, source in modules.items():
        target = site / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n", encoding="utf-8"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[resilio]\n{lines}", encoding="utf-8")
