"""Configuration: pipelines declared in YAML or a dict, their JSON Schema, and hot reload.

See ``docs/configuration.md`` for the reference of every section and policy type.
"""

from __future__ import annotations

from resilio.config.durations import parse_duration
from resilio.config.registry import Registry, Source, load_config
from resilio.config.schema import json_schema
from resilio.plugins.catalog import NotRegisteredError

__all__ = [
    "NotRegisteredError",
    "Registry",
    "Source",
    "json_schema",
    "load_config",
    "parse_duration",
]
