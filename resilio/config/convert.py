"""Turning configuration values into option values, guided by the options' type annotations.

Every mistake is recorded as a problem at its key path; conversion goes on so that all problems
of a file are reported at once. Values whose type cannot be understood are passed through for
the options class's own validators to judge.
"""

from __future__ import annotations

import enum
import importlib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import attrs

from resilio.classify import ErrorKind
from resilio.config.durations import parse_duration
from resilio.config.env import EnvText, core_scalar
from resilio.config.fields import (
    NO_DEFAULT,
    OptionField,
    concrete_kinds,
    has_options,
    is_duration_field,
    option_fields,
)
from resilio.config.problems import KeyPath, Problems
from resilio.plugins.catalog import close_matches

__all__ = ["Converter", "InvalidValueError", "describe", "found"]


class InvalidValueError(Exception):
    """A value did not convert; the message says what was expected and what was found.

    Attributes:
        path: Where the wrong value is, when deeper than the option (a list item).
        specific: Whether the error is about a part of the value (an item of a list) rather
            than its overall shape, so it is the one to report when alternatives all fail.
    """

    def __init__(self, message: str, path: KeyPath | None = None, *, specific: bool = False):
        super().__init__(message)
        self.path = path
        self.specific = specific


def found(value: Any) -> str:
    """Describe a configuration value for a message, without echoing long strings."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"a string of {len(value)} characters"
    return repr(value)


def describe(tp: Any) -> str:
    """Describe a type annotation in words (``"an integer"``, ``"a duration"``)."""
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if tp is type(None):
        return "null"
    if tp is timedelta:
        return "a duration"
    if tp is ErrorKind:
        return "an error kind (" + ", ".join(k.value for k in ErrorKind) + ")"
    origin = typing.get_origin(tp)
    if origin is type:
        target = typing.get_args(tp)[0] if typing.get_args(tp) else object
        if isinstance(target, type) and issubclass(target, BaseException):
            return "an exception type path like 'builtins:ConnectionError'"
        name = getattr(target, "__name__", "class")
        return f"an import path 'package.module:Name' of a {name} subclass"
    if _is_abc(origin, "Callable"):
        return "an import path 'package.module:name' of a callable"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if origin in (list, tuple, set, frozenset) or _is_abc(origin, "Sequence", "Iterable"):
        return "a list"
    if origin in (dict,) or _is_abc(origin, "Mapping"):
        return "a mapping"
    if isinstance(tp, type):
        return f"a {tp.__name__}"
    return str(tp)


def _is_abc(origin: Any, *names: str) -> bool:
    return getattr(origin, "__module__", "") == "collections.abc" and origin.__name__ in names


def _import(text: str) -> Any:
    module_name, _, attr = text.partition(":")
    if not attr:
        module_name, _, attr = text.rpartition(".")
    if not module_name or not attr:
        raise InvalidValueError(f"expected an import path 'module:name', found {found(text)}")
    try:
        value: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidValueError(f"cannot import {text!r}: {exc}") from None
    return value


class Converter:
    """Converts values for one configuration, recording problems.

    Args:
        problems: Where problems go.
        resolve_reference: Turns a field's string value into a referenced object (a store);
            returns ``NotImplemented`` when the field is not a reference.
    """

    def __init__(
        self,
        problems: Problems,
        resolve_reference: Callable[[str, Any, KeyPath], Any] | None = None,
    ) -> None:
        self.problems = problems
        self.resolve_reference = resolve_reference

    def options(
        self, cls: type, data: Mapping[str, Any], path: KeyPath, paths: Mapping[str, KeyPath]
    ) -> dict[str, Any] | None:
        """Convert a mapping into keyword arguments for the attrs class ``cls``.

        Args:
            cls: The options class.
            data: The mapping from the configuration.
            path: Where the mapping is.
            paths: For keys merged from elsewhere (``defaults``), where each really is.

        Returns:
            The keyword arguments, or ``None`` if any value was invalid (problems recorded).
        """
        return self.fields(option_fields(cls), data, path, paths)

    def fields(
        self,
        options: Sequence[OptionField],
        data: Mapping[str, Any],
        path: KeyPath,
        paths: Mapping[str, KeyPath],
    ) -> dict[str, Any] | None:
        """Convert a mapping into keyword arguments for the described ``options``.

        Like :meth:`options`, for options described field by field (a store kind's).
        """
        fields = {f.name: f for f in options}
        out: dict[str, Any] = {}
        ok = True
        for key, value in data.items():
            key_path = paths.get(key, (*path, key))
            field = fields.get(key)
            if field is None:
                hint = close_matches(key, fields) or (
                    "; expected one of " + ", ".join(fields) if fields else "; it takes none"
                )
                self.problems.add(key_path, f"unknown option {key!r}{hint}", key=True)
                ok = False
                continue
            try:
                out[key] = self.value(value, field.type, key_path, key)
            except _ReportedError:
                ok = False
            except InvalidValueError as exc:
                self.problems.add(exc.path or key_path, str(exc))
                ok = False
        for field in fields.values():
            if field.required and field.name not in data:
                self.problems.add(path, f"missing required option {field.name!r}")
                ok = False
        return out if ok else None

    def value(self, value: Any, tp: Any, path: KeyPath, name: str) -> Any:
        """Convert one value to the annotated type ``tp``.

        Raises:
            InvalidValueError: If the value cannot be of that type.
        """
        if isinstance(value, str) and self.resolve_reference is not None:
            ref = self.resolve_reference(name, value, path)
            if ref is not NotImplemented:
                return ref
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if value.__class__ is EnvText:
            # A quoted "${VAR}": text where a string is expected, else a YAML 1.2 core scalar.
            if tp is str or (origin in (typing.Union, types.UnionType) and str in args):
                value = str(value)
            else:
                value = core_scalar(value)
        if tp is Any or tp is object:
            return value
        if origin in (typing.Union, types.UnionType):
            return self._union(value, args, path, name)
        if origin is typing.Literal:
            if value in args and not (isinstance(value, bool) and True not in args):
                return value
            raise InvalidValueError(f"expected {describe(tp)}, found {found(value)}")
        if origin is typing.ClassVar or origin is typing.Annotated:
            return self.value(value, args[0], path, name)
        if tp is type(None):
            if value is None:
                return None
            raise InvalidValueError(f"expected null, found {found(value)}")
        if tp is bool:
            if isinstance(value, bool):
                return value
            raise InvalidValueError(f"expected true or false, found {found(value)}")
        if tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise InvalidValueError(f"expected an integer, found {found(value)}")
        if tp is float:
            return self._float(value, name)
        if tp is timedelta:
            return timedelta(seconds=self._duration(value))
        if tp is str:
            if isinstance(value, str):
                return value
            raise InvalidValueError(f"expected a string, found {found(value)}")
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._enum(value, tp)
        if origin is not None:
            return self._generic(value, origin, args, path, name)
        if isinstance(tp, type):
            return self._object(value, tp, path)
        return value

    def _float(self, value: Any, name: str) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if is_duration_field(name, float):
            return self._duration(value)
        raise InvalidValueError(f"expected a number, found {found(value)}")

    def _duration(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, str | int | float | timedelta):
            raise InvalidValueError(
                "expected a duration like 200ms, 10s, 5m, 1h or a number of seconds, "
                f"found {found(value)}"
            )
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise InvalidValueError(str(exc)) from None

    def _enum(self, value: Any, tp: type[enum.Enum]) -> enum.Enum:
        for member in tp:
            if (
                value == member.value
                or value == member.name
                or (isinstance(value, str) and value.upper() == member.name)
            ):
                return member
        hint = close_matches(value, [m.value for m in tp]) if isinstance(value, str) else ""
        raise InvalidValueError(f"expected {describe(tp)}, found {found(value)}{hint}")

    def _union(self, value: Any, args: tuple[Any, ...], path: KeyPath, name: str) -> Any:
        if value is None:
            if type(None) in args:
                return None
            raise InvalidValueError(f"expected {describe(typing.Union[args])}, found null")  # noqa: UP007
        errors: list[InvalidValueError] = []
        # Alternatives the value already is an instance of come first.
        ordered = sorted(
            (a for a in args if a is not type(None)),
            key=lambda a: 0 if isinstance(a, type) and isinstance(value, a) else 1,
        )
        for arg in ordered:
            try:
                return self.value(value, arg, path, name)
            except _ReportedError:
                raise
            except InvalidValueError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        specific = [e for e in errors if e.specific]
        if len(specific) == 1:
            raise specific[0]  # the alternative the value's shape matched, failing on a part
        if isinstance(value, str) and ":" in value:
            for arg, error in zip(ordered, errors, strict=True):
                if typing.get_origin(arg) is type or _is_abc(typing.get_origin(arg), "Callable"):
                    raise error  # an import path: why it did not import is what matters
        enums = [a for a in ordered if isinstance(a, type) and issubclass(a, enum.Enum)]
        hint = ""
        if isinstance(value, str):
            hint = close_matches(
                value, [m.value for a in enums for m in a if m.value == str(m.value)]
            )
        # Named choices (error kinds) first: they are what a short word most likely meant.
        wanted = [describe(a) for a in enums] + [describe(a) for a in ordered if a not in enums]
        if type(None) in args:
            wanted.append("null")
        raise InvalidValueError(f"expected {' or '.join(wanted)}, found {found(value)}{hint}")

    def _generic(
        self, value: Any, origin: Any, args: tuple[Any, ...], path: KeyPath, name: str
    ) -> Any:
        if origin is type:
            cls = _import(value) if isinstance(value, str) else value
            target = args[0] if args and isinstance(args[0], type) else object
            if isinstance(cls, type) and issubclass(cls, target):
                return cls
            raise InvalidValueError(
                f"expected a subclass of {target.__name__}, found {found(value)}"
            )
        if _is_abc(origin, "Callable"):
            fn = _import(value) if isinstance(value, str) else value
            if callable(fn):
                return fn
            raise InvalidValueError(f"expected an import path to a callable, found {found(value)}")
        if origin is dict or _is_abc(origin, "Mapping", "MutableMapping"):
            if not isinstance(value, dict):
                raise InvalidValueError(f"expected a mapping, found {found(value)}")
            key_t, val_t = args if len(args) == 2 else (Any, Any)
            return {
                self.value(k, key_t, (*path, k), name): self.value(v, val_t, (*path, k), name)
                for k, v in value.items()
            }
        if origin in (list, tuple, set, frozenset) or _is_abc(
            origin, "Sequence", "Iterable", "Collection", "Set", "MutableSequence"
        ):
            listed = isinstance(value, list)
            if not listed:
                if origin is tuple and isinstance(value, str) and args and args[-1] is ...:
                    value = [value]  # a single item for a tuple of items
                else:
                    raise InvalidValueError(f"expected a list, found {found(value)}")
            if origin is tuple and args and args[-1] is not ...:
                if len(value) != len(args):
                    raise InvalidValueError(
                        f"expected a list of {len(args)} items, found {len(value)}"
                    )
                return tuple(
                    self.value(v, a, (*path, i), name)
                    for i, (v, a) in enumerate(zip(value, args, strict=True))
                )
            item_t = args[0] if args else Any
            items = [self._item(v, item_t, path, i, name, listed) for i, v in enumerate(value)]
            if origin is list:
                return items
            if origin in (set, frozenset) or _is_abc(origin, "Set"):
                return frozenset(items)
            return tuple(items)
        return value

    def _item(self, value: Any, tp: Any, path: KeyPath, index: int, name: str, listed: bool) -> Any:
        item_path = (*path, index) if listed else path
        try:
            return self.value(value, tp, item_path, name)
        except _ReportedError:
            raise
        except InvalidValueError as exc:
            if exc.specific:
                raise
            where = exc.path or (item_path if listed else None)
            raise InvalidValueError(str(exc), where, specific=True) from None

    def _object(self, value: Any, tp: type, path: KeyPath) -> Any:
        if isinstance(value, tp):
            return value
        kinds = concrete_kinds(tp)
        if isinstance(value, dict) and (kinds or has_options(tp)):
            return self._mapping_object(value, tp, kinds, path)
        if isinstance(value, str) and kinds:
            try:
                return parse_duration(value)  # a scalar form, e.g. a constant backoff's delay
            except ValueError:
                pass
        if isinstance(value, str) and (":" in value) and not kinds:
            obj = _import(value)
            if isinstance(obj, tp):
                return obj
            raise InvalidValueError(f"{value!r} is not a {tp.__name__}")
        return value  # a scalar form the options class may accept; it validates it

    def _mapping_object(
        self, value: dict[str, Any], tp: type, kinds: dict[str, type], path: KeyPath
    ) -> Any:
        data = dict(value)
        cls: type | None = tp if has_options(tp) and not kinds else None
        if kinds:
            kind = data.pop("kind", None)
            if kind is None and attrs.has(tp) and isinstance(tp.__dict__.get("kind"), str):
                cls = tp
            elif not isinstance(kind, str) or kind not in kinds:
                hint = close_matches(kind, kinds) if isinstance(kind, str) else ""
                raise InvalidValueError(
                    f"expected 'kind' to be one of {', '.join(sorted(kinds))}, "
                    f"found {found(kind)}{hint}"
                )
            else:
                cls = kinds[kind]
        assert cls is not None
        kwargs = self.options(cls, data, path, {})
        if kwargs is None:
            raise _ReportedError("reported")
        try:
            return cls(**kwargs)
        except (ValueError, TypeError) as exc:
            raise InvalidValueError(str(exc)) from None


class _ReportedError(InvalidValueError):
    """The problems were already recorded at more precise paths."""


def defaults_of(cls: type) -> dict[str, Any]:
    """Return the defaults of an attrs class's options (required ones left out)."""
    return {f.name: f.default for f in option_fields(cls) if f.default is not NO_DEFAULT}
