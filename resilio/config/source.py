"""Reading configuration: YAML with line and column per key, or a dict, with ``${VAR}`` expanded.

YAML is composed into a node tree by a :class:`yaml.SafeLoader` subclass, then walked into plain
data while recording where each key and value is. Duplicate keys, non-string keys, unsupported
tags and recursive aliases are reported as problems, never as tracebacks.

Booleans follow YAML 1.2: only ``true`` and ``false`` (``True``, ``TRUE``, ``False``, ``FALSE``)
are booleans, so keys and values such as ``on``, ``off``, ``yes``, ``no``, ``y`` and ``n`` are
strings (YAML 1.1, PyYAML's default, reads them as booleans).

``${...}`` references are hidden from the YAML scanner before parsing by replacing each of their
characters with one private-use character (so lines and columns do not move), which lets an
unquoted reference stand anywhere a plain scalar can, flow collections included
(``{attempts: ${ATTEMPTS:-3}}``). Every scalar is decoded back before it is substituted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from resilio.config.env import EnvText, has_reference, is_single_reference, substitute
from resilio.config.problems import KeyPath, Location, Problems

__all__ = ["Document", "looks_like_yaml", "read_source"]


_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_BOOL_TAG = "tag:yaml.org,2002:bool"

# A complete reference on one line; each of its characters is shifted into plane 15's
# private-use area (U+F0000 + code point), which PyYAML accepts in plain scalars.
_REFERENCE = re.compile(r"\$\{[^}\n]*\}")
_SHIFT = 0xF0000
_MAPPING_KEY = re.compile(r":(?:[ \t]|$)")
_HIDDEN = re.compile("[\U000f0000-\U000fffff]")


class _Loader(yaml.SafeLoader):
    """A safe loader with YAML 1.2 booleans; scalars are constructed one at a time by :func:`_walk`.

    The implicit resolver table is a copy, so PyYAML's own loaders keep YAML 1.1 booleans.
    """

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's own class attribute
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _hide(text: str) -> str:
    """Replace the characters of every ``${...}`` with private-use ones (same length)."""
    if _HIDDEN.search(text):
        return text  # the text already uses those characters: leave it alone

    def shift(match: re.Match[str]) -> str:
        whole = match.group(0)
        if any(ord(ch) > 0xFFFF for ch in whole):
            return whole
        return "".join(chr(_SHIFT + ord(ch)) for ch in whole)

    return _REFERENCE.sub(shift, text)


def _unhide(text: str) -> str:
    if not _HIDDEN.search(text):
        return text
    return _HIDDEN.sub(lambda m: chr(ord(m.group(0)) - _SHIFT), text)


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

    A string is YAML text when :func:`looks_like_yaml` says so; any other string, and any
    path-like, is a file name.

    Args:
        source: A path, YAML text, or a mapping.
        environ: The environment for ``${VAR}`` references (default: ``os.environ``).

    Returns:
        The document; its ``problems`` may already hold syntax or environment problems.

    Raises:
        TypeError: If ``source`` is none of these (bytes included: decode them first).
    """
    if not isinstance(source, str | os.PathLike | Mapping):
        hint = ": decode it to str first" if isinstance(source, bytes | bytearray) else ""
        raise TypeError(
            "a configuration is a file path (str or pathlib.Path), YAML text or a mapping, "
            f"got {type(source).__qualname__}{hint}"
        )
    env = os.environ if environ is None else environ
    if isinstance(source, Mapping):
        problems = Problems("<dict>")
        return Document(_plain(source, (), problems, env, {}), problems, None)
    path: Path | None = None
    if isinstance(source, os.PathLike) or not looks_like_yaml(source):
        path = Path(source)
        problems = Problems(str(path))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            hint = ""
            if isinstance(exc, FileNotFoundError) and isinstance(source, str):
                hint = (
                    " (the string was read as a file name; YAML text needs a newline or a "
                    "'key: value' mapping, like 'pipelines: {p: [retry: 3]}')"
                )
            problems.add((), f"cannot read the file: {reason}{hint}")
            return Document(None, problems, path)
    else:
        text = str(source)
        problems = Problems("<string>")
    try:
        node = yaml.compose(_hide(text), Loader=_Loader)
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


def looks_like_yaml(text: str) -> bool:
    """Whether a string given as a configuration source is YAML text rather than a file name.

    It is YAML text if it contains a newline, or a colon followed by a space or ending the
    string (``pipelines: {...}``, ``version:``), or starts with ``{`` or ``#``. File names
    practically never do.

    Args:
        text: The string.

    Returns:
        ``True`` for YAML text.
    """
    stripped = text.strip()
    return "\n" in text or bool(_MAPPING_KEY.search(stripped)) or stripped.startswith(("{", "#"))


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
    if isinstance(node, yaml.ScalarNode):
        raw = _unhide(node.value)
        if raw is not node.value:
            tag = node.tag
            if node.style is None and node.tag == "tag:yaml.org,2002:str":
                tag = loader.resolve(yaml.ScalarNode, raw, (True, False))  # type: ignore[no-untyped-call]
            node = yaml.ScalarNode(tag, raw, node.start_mark, node.end_mark, style=node.style)
    if isinstance(node, yaml.ScalarNode) and has_reference(node.value):
        text, errors = substitute(node.value, env)
        for error in errors:
            problems.add(path, error, location=where)
        if errors:
            problems.mark_reported(path)
        if node.tag == "tag:yaml.org,2002:str" and node.style is not None:
            # quoted: a string, converted to the option's type when it is one whole reference
            return EnvText(text) if is_single_reference(node.value) else text
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
        if errors:
            problems.mark_reported(path)
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
