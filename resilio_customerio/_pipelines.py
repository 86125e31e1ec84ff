"""Loading the adapter's pipelines: packaged defaults, the user's configuration merged over them.

The defaults are ``pipelines.yaml`` in this package. A user configuration (a path, YAML text or
a mapping) is merged over them section by section: an entry of ``policies``, ``pipelines``,
``stores`` or ``defaults`` replaces the default entry of the same name; ``outbox`` and
``version`` replace the default's. The merged document is built by :func:`resilio.load_config`,
so it is checked as a whole and every problem is reported at once (with its key path).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any

from resilio.config import Registry, load_config
from resilio.config.registry import PipelineFactory
from resilio.config.source import read_source

__all__ = ["DEFAULTS", "default_config", "load"]

DEFAULTS = "pipelines.yaml"
"""The packaged defaults' file name."""

_MERGED = ("policies", "pipelines", "stores", "defaults")


def default_config() -> dict[str, Any]:
    """Return the packaged default configuration as data.

    Returns:
        The parsed ``pipelines.yaml``.
    """
    text = resources.files("resilio_customerio").joinpath(DEFAULTS).read_text("utf-8")
    doc = read_source(text)
    doc.problems.raise_if_any()
    data: dict[str, Any] = doc.data
    return data


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key in _MERGED and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def load(config: str | Mapping[str, Any] | None, make_pipeline: PipelineFactory) -> Registry:
    """Build the adapter's pipelines from the defaults and ``config``.

    Args:
        config: A path, YAML text or mapping merged over the defaults; ``None`` for defaults.
        make_pipeline: Builds one pipeline from its name and policies.

    Returns:
        The registry: ``pipelines`` by name, and the ``outbox`` if the config declared one.

    Raises:
        ConfigError: Listing every problem of the user's configuration or the merged result.
    """
    data = default_config()
    if config is not None:
        user = read_source(config)
        user.problems.raise_if_any()
        if user.data is not None:
            if not isinstance(user.data, Mapping):
                user.problems.add((), "expected a mapping of configuration sections")
                user.problems.raise_if_any()
            data = _merge(data, user.data)
    return load_config(data, pipeline_factory=make_pipeline)
