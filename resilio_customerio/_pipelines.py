"""Loading the adapter's pipelines: packaged defaults, the user's configuration merged over them.

The defaults are ``pipelines.yaml`` in this package. A user configuration (a path, YAML text or
a mapping) is merged over them section by section: an entry of ``policies``, ``pipelines``,
``stores`` or ``defaults`` replaces the default entry of the same name; ``outbox`` and
``version`` replace the default's. The merged document is checked as a whole and every problem
is reported at once, with the file, line and column it comes from: the user's file for what it
gave, the packaged ``pipelines.yaml`` for defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any

from resilio.config.loader import State, build
from resilio.config.problems import KeyPath, Location, Problems
from resilio.config.registry import PipelineFactory
from resilio.config.source import Document, read_source
from resilio.plugins.manager import catalog

__all__ = ["DEFAULTS", "default_config", "load"]

DEFAULTS = "pipelines.yaml"
"""The packaged defaults' file name."""

_MERGED = ("policies", "pipelines", "stores", "defaults")


def _read_defaults() -> Document:
    text = resources.files("resilio_customerio").joinpath(DEFAULTS).read_text("utf-8")
    doc = read_source(text)
    doc.problems.raise_if_any()
    doc.problems.source = f"resilio_customerio/{DEFAULTS}"
    return doc


def default_config() -> dict[str, Any]:
    """Return the packaged default configuration as data.

    Returns:
        The parsed ``pipelines.yaml``.
    """
    data: dict[str, Any] = _read_defaults().data
    return data


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key in _MERGED and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _from_defaults(user: Mapping[str, Any], path: KeyPath) -> bool:
    """Whether the value at ``path`` of the merged document came from the defaults."""
    if not path:
        return False
    head = path[0]
    if not isinstance(head, str) or head not in user:
        return True
    section = user[head]
    if head in _MERGED and isinstance(section, Mapping) and len(path) > 1:
        return path[1] not in section
    return False


class _MergedProblems(Problems):
    """The user's problems, where a problem in a default entry is located in ``pipelines.yaml``.

    Args:
        user: The user's document (its problems carry its file name and marks).
        defaults: The packaged defaults' document.
    """

    def __init__(self, user: Document, defaults: Document) -> None:
        super().__init__(user.problems.source)
        self._user = user.problems
        self._user_data: Mapping[str, Any] = user.data
        self._defaults = defaults.problems
        self.extend(self._user)

    def mark(self, path: KeyPath, location: Location) -> None:
        self._user.mark(path, location)

    def mark_key(self, path: KeyPath, location: Location) -> None:
        self._user.mark_key(path, location)

    def mark_reported(self, path: KeyPath) -> None:
        self._user.mark_reported(path)

    def is_reported(self, path: KeyPath) -> bool:
        return self._user.is_reported(path)

    def key_location(self, path: KeyPath) -> Location | None:
        return self._target(path).key_location(path)

    def location(self, path: KeyPath, *, key: bool = False) -> Location | None:
        return self._target(path).location(path, key=key)

    def add(
        self, path: KeyPath, message: str, *, key: bool = False, location: Location | None = None
    ) -> None:
        target = self._target(path)
        target.add(path, message, key=key, location=location)
        self.extend(target)  # the new line, with its position

    def _target(self, path: KeyPath) -> Problems:
        return self._defaults if _from_defaults(self._user_data, path) else self._user


def _merged(config: str | Mapping[str, Any]) -> Document:
    defaults = _read_defaults()
    user = read_source(config)
    user.problems.raise_if_any()
    if user.data is None:
        return defaults
    if not isinstance(user.data, Mapping):
        user.problems.add((), "expected a mapping of configuration sections")
        user.problems.raise_if_any()
    data = _merge(defaults.data, user.data)
    return Document(data, _MergedProblems(user, defaults), user.path)


def load(config: str | Mapping[str, Any] | None, make_pipeline: PipelineFactory) -> State:
    """Build the adapter's pipelines from the defaults and ``config``.

    Args:
        config: A path, YAML text or mapping merged over the defaults; ``None`` for defaults.
        make_pipeline: Builds one pipeline from its name and policies.

    Returns:
        The built state: ``pipelines`` by name, and the ``outbox`` if the config declared one.

    Raises:
        ConfigError: Listing every problem of the user's configuration or the merged result,
            each with the file (the user's, or the packaged defaults), line and column.
    """
    doc = _read_defaults() if config is None else _merged(config)
    return build(doc, catalog(), State(), make_pipeline)
