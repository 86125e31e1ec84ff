"""Loading the adapter's pipelines: packaged defaults, the user's configuration merged over them.

The defaults are ``pipelines.yaml`` in this package. A user configuration (a path, YAML text or
a mapping) is merged over them section by section: an entry of ``policies``, ``pipelines``,
``stores`` or ``defaults`` replaces the default entry of the same name; ``outbox`` and
``version`` replace the default's. The merged document is built by resilio's configuration
loader, so it is checked as a whole and every problem is reported at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

from resilio._pipeline import Pipeline
from resilio.config.loader import State, build
from resilio.config.problems import Problems
from resilio.config.source import Document, read_source
from resilio.plugins.builtin import BUILTIN_POLICIES
from resilio.plugins.manager import catalog
from resilio.policies._base import Policy

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


def _without_missing_types(data: dict[str, Any], known: Any) -> dict[str, Any]:
    # A build of resilio may ship without some built-in policy types; drop the default
    # entries that use them rather than refusing every pipeline.
    missing = {kind for kind in BUILTIN_POLICIES if kind not in known}
    if not missing:
        return data

    def keep(entry: Any) -> bool:
        return not (isinstance(entry, Mapping) and len(entry) == 1 and next(iter(entry)) in missing)

    out = dict(data)
    out["policies"] = {k: v for k, v in data.get("policies", {}).items() if keep(v)}
    out["pipelines"] = {
        name: [e for e in entries if keep(e)] if isinstance(entries, list) else entries
        for name, entries in data.get("pipelines", {}).items()
    }
    return out


def load(
    config: str | Mapping[str, Any] | None,
    make_pipeline: Callable[[str, list[Policy]], Pipeline],
) -> State:
    """Build the adapter's pipelines from the defaults and ``config``.

    Args:
        config: A path, YAML text or mapping merged over the defaults; ``None`` for defaults.
        make_pipeline: Builds one pipeline from its name and policies.

    Returns:
        The built state: ``pipelines`` by name, and the ``outbox`` if the config declared one.

    Raises:
        ConfigError: Listing every problem of the user's configuration or the merged result.
    """
    data = default_config()
    source = "<customerio defaults>"
    if config is not None:
        user = read_source(config)
        user.problems.raise_if_any()
        if user.data is not None:
            if not isinstance(user.data, Mapping):
                user.problems.add((), "expected a mapping of configuration sections")
                user.problems.raise_if_any()
            data = _merge(data, user.data)
        source = user.problems.source
    types = catalog().policy_types
    data = _without_missing_types(data, types)
    return build(Document(data, Problems(source), None), catalog(), State(), make_pipeline)
