"""Reading configuration: YAML with line and column per key, or a dict, with ``${VAR}`` expanded.

YAML is composed into a node tree by a :class:`yaml.SafeLoader` subclass, then walked into plain
data while recording where each key and value is. Duplicate keys, non-string keys, unsupported
tags and recursive aliases are reported as problems, never as tracebacks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from resilio.config.env import has_reference, substitute
from resilio.config.problems import KeyPath, Location, Problems

__all__ = ["Document", "read_source"]


_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _Loader(yaml.SafeLoader):
    """A safe loader; scalars are constructed one at a time by :func:`_walk`."""


class Document:
    """Configuration data and where each part of it came from.

    Attributes:
        data: The plain data (dicts, lists, scalars).
        problems: Problems found so far, bound to the document's file name and marks.
        path: The file it was read from, if any.
    """

    def __init__(self, data: Any, problems: Problems, path: Path | None) -> None:
        self.data = data
        self.problems = problems
        self.path = path


def read_source(
    source: str | os.PathLike[str] | Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> Document:
    """Read a configuration from a path, YAML text or a mapping.

    A string containing a newline, or starting with ``{`` or ``version:``, is YAML text;
    any other string or path-like is a file name.

    Args:
        source: A path, YAML text, or a mapping.
        environ: The environment for ``${VAR}`` references (default: ``os.environ``).

    Returns:
        The document; its ``problems`` may already hold syntax or environment problems.
    """
    env = os.environ if environ is None else environ
    if isinstance(source, Mapping):
        problems = Problems("<dict>")
        return Document(_plain(source, (), problems, env, {}), problems, None)
    path: Path | None = None
    if isinstance(source, os.PathLike) or not _looks_like_yaml(source):
        path = Path(source)
        problems = Problems(str(path))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.add((), f"cannot read the file: {getattr(exc, 'strerror', None) or exc}")
            return Document(None, problems, path)
    else:
        text = str(source)
        problems = Problems("<string>")
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = Location(mark.line + 1, mark.column + 1) if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        problems.add((), f"invalid YAML: {problem}", location=where)
        return Document(None, problems, path)
    if node is None:
        return Document({}, problems, path)
    loader = _Loader("")
    data = _walk(node, (), problems, env, loader, set())
    return Document(data, problems, path)


def _looks_like_yaml(text: str) -> bool:
    stripped = text.lstrip()
    return "\n" in text or stripped.startswith(("{", "version:", "#"))


def _walk(
    node: yaml.Node,
    path: KeyPath,
    problems: Problems,
    env: Mapping[str, str],
    loader: _Loader,
    active: set[int],
) -> Any:
    problems.mark(path, Location(node.start_mark.line + 1, node.start_mark.column + 1))
    if id(node) in active:
        problems.add(path, "a YAML alias refers to itself (recursive structure)")
        return None
    if not isinstance(node, yaml.ScalarNode) and node.tag not in _COLLECTION_TAGS:
        problems.add(path, f"unsupported YAML tag {node.tag!r}")
        return None
    if isinstance(node, yaml.MappingNode):
        active.add(id(node))
        try:
            return _walk_mapping(node, path, problems, env, loader, active)
        finally:
            active.discard(id(node))
    if isinstance(node, yaml.SequenceNode):
        active.add(id(node))
        try:
            return [
                _walk(item, (*path, i), problems, env, loader, active)
                for i, item in enumerate(node.value)
            ]
        finally:
            active.discard(id(node))
    return _scalar(node, path, problems, env, loader)


def _walk_mapping(
    node: yaml.MappingNode,
    path: KeyPath,
    problems: Problems,
    env: Mapping[str, str],
    loader: _Loader,
    active: set[int],
) -> dict[str, Any]:
    try:
        loader.flatten_mapping(node)
    except yaml.YAMLError as exc:
        problems.add(path, f"invalid YAML merge: {getattr(exc, 'problem', None) or exc}")
        return {}
    result: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key_where = Location(key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        key: Any = (
            _scalar(key_node, path, problems, env, loader)
            if isinstance(key_node, yaml.ScalarNode)
            else None
        )
        if not isinstance(key, str):
            shown = "a collection" if not isinstance(key_node, yaml.ScalarNode) else repr(key)
            problems.add(path, f"keys must be strings, found {shown}", location=key_where)
            continue
        child = (*path, key)
        if key in result:
            first = problems.key_location(child)
            was = f" (first at line {first.line})" if first is not None else ""
            problems.add(child, f"duplicate key {key!r}{was}", location=key_where)
            continue
        problems.mark_key(child, key_where)
        result[key] = _walk(value_node, child, problems, env, loader, active)
    return result


def _scalar(
    node: yaml.Node, path: KeyPath, problems: Problems, env: Mapping[str, str], loader: _Loader
) -> Any:
    where = Location(node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.ScalarNode) and has_reference(node.value) and "$" in node.value:
        text, errors = substitute(node.value, env)
        for error in errors:
            problems.add(path, error, location=where)
        if node.tag == "tag:yaml.org,2002:str" and node.style is not None:
            return text  # quoted: stays a string
        tag = loader.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
        node = yaml.ScalarNode(tag, text, node.start_mark, node.end_mark)
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        problems.add(
            path, f"unsupported YAML value: {getattr(exc, 'problem', None) or exc}", location=where
        )
        return None
    except (ValueError, TypeError, OverflowError) as exc:
        problems.add(path, f"invalid YAML value: {exc}", location=where)
        return None


def _plain(
    value: Any,
    path: KeyPath,
    problems: Problems,
    env: Mapping[str, str],
    active: dict[int, None],
) -> Any:
    if isinstance(value, Mapping | list | tuple):
        if id(value) in active:
            problems.add(path, "the data refers to itself (recursive structure)")
            return None
        active[id(value)] = None
        try:
            if isinstance(value, Mapping):
                out: dict[str, Any] = {}
                for key, item in value.items():
                    if not isinstance(key, str):
                        problems.add(path, f"keys must be strings, found {key!r}")
                        continue
                    out[key] = _plain(item, (*path, key), problems, env, active)
                return out
            return [_plain(item, (*path, i), problems, env, active) for i, item in enumerate(value)]
        finally:
            del active[id(value)]
    if isinstance(value, str) and "$" in value:
        text, errors = substitute(value, env)
        for error in errors:
            problems.add(path, error)
        if text != value and "${" in value:
            loader = _Loader("")
            tag = loader.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
            node = yaml.ScalarNode(tag, text)
            try:
                return loader.construct_object(node, deep=True)
            except (yaml.YAMLError, ValueError, TypeError, OverflowError):
                return text
        return text
    return value
