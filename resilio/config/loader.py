"""Building pipelines from a configuration document.

The document is checked as a whole: every problem is collected with its location, then one
:class:`resilio.ConfigError` lists them all. Nothing is built until the whole document is valid,
except that stores and policies are constructed to validate their options (a previous build's
objects are reused when their configuration did not change, which is what hot reload needs).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from attrs import define, field

from resilio._pipeline import Pipeline
from resilio.config.convert import Converter, InvalidValueError, found
from resilio.config.fields import OptionField, option_fields
from resilio.config.problems import KeyPath, Problems
from resilio.config.source import Document
from resilio.plugins.catalog import Catalog, close_matches
from resilio.policies._base import Policy

__all__ = ["SECTIONS", "PolicySlot", "State", "StoreSlot", "build"]

SECTIONS = ("version", "defaults", "stores", "outbox", "policies", "pipelines")
"""The top-level keys of a configuration."""

_RESERVED = ("name", "ref")
_OUTBOX_KINDS = ("sqlite", "redis")
_OUTBOX_STORE_OPTIONS = ("name", "synchronous")


@define
class StoreSlot:
    """A built store and the configuration it was built from."""

    kind: str
    config: dict[str, Any]
    backend: Any
    per_policy: dict[str, Any] = field(factory=dict)

    def for_policy(self, kind: str) -> Any:
        """Return the store to give a policy of ``kind``."""
        make = getattr(self.backend, "for_policy", None)
        if make is None:
            return self.backend
        if kind not in self.per_policy:
            self.per_policy[kind] = make(kind)
        return self.per_policy[kind]


@define
class PolicySlot:
    """A built policy: its type, name, configuration and the instance.

    Attributes:
        kind: The YAML type name.
        name: The policy's name.
        config: The merged configuration it was built from (defaults included).
        policy: The policy instance.
        ref: The shared policy name, for a ``{ref: ...}`` entry.
        uses: The stores and outbox objects its options refer to.
    """

    kind: str
    name: str | None
    config: dict[str, Any]
    policy: Policy
    ref: str | None = None
    uses: tuple[int, ...] = ()

    def same_as(self, other: PolicySlot) -> bool:
        """Whether ``other`` was built from the same configuration (so can be reused)."""
        return (
            self.kind == other.kind
            and self.name == other.name
            and self.config == other.config
            and self.uses == other.uses
        )


@define
class State:
    """One complete, valid build of a configuration (swapped atomically on reload)."""

    pipelines: dict[str, Pipeline] = field(factory=dict)
    slots: dict[str, list[PolicySlot]] = field(factory=dict)
    shared: dict[str, PolicySlot] = field(factory=dict)
    stores: dict[str, StoreSlot] = field(factory=dict)
    outbox: Any = None
    outbox_config: dict[str, Any] | None = None


class _Builder:
    def __init__(
        self,
        doc: Document,
        catalog: Catalog,
        previous: State,
        make_pipeline: Callable[[str, list[Policy]], Pipeline],
    ) -> None:
        self.doc = doc
        self.problems: Problems = doc.problems
        self.catalog = catalog
        self.previous = previous
        self.make_pipeline = make_pipeline
        self.state = State()
        self.defaults: dict[str, dict[str, Any]] = {}
        self._uses: list[int] = []
        self._kind = ""
        self.converter = Converter(self.problems, self._reference)

    # -- sections -----------------------------------------------------------------------------

    def run(self) -> State:
        data = self.doc.data
        if self.problems and data is None:
            raise self.problems.error()
        if not isinstance(data, dict):
            self.problems.add((), f"expected a mapping with 'pipelines', found {found(data)}")
            raise self.problems.error()
        for key in data:
            if key not in SECTIONS:
                hint = close_matches(key, SECTIONS) or "; expected " + ", ".join(SECTIONS)
                self.problems.add((key,), f"unknown section {key!r}{hint}", key=True)
        version = data.get("version", 1)
        if version != 1 or isinstance(version, bool):
            self.problems.add(("version",), f"expected 1, found {found(version)}")
        self._stores(self._mapping(data, "stores"))
        self._outbox(data.get("outbox"))
        self._defaults(self._mapping(data, "defaults"))
        for name, entry in self._mapping(data, "policies").items():
            path: KeyPath = ("policies", name)
            slot = self._entry(entry, path, shared_name=name)
            if slot is not None:
                self.state.shared[name] = slot
        pipelines = data.get("pipelines")
        if pipelines is None:
            self.problems.add((), "missing section 'pipelines'")
        for name, entries in self._mapping(data, "pipelines").items():
            self._pipeline(name, entries)
        if self.problems:
            raise self.problems.error()
        return self.state

    def _mapping(self, data: dict[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problems.add((key,), f"expected a mapping, found {found(value)}")
            return {}
        return value

    def _stores(self, stores: dict[str, Any]) -> None:
        kinds = self.catalog.store_kinds
        for name, spec in stores.items():
            path: KeyPath = ("stores", name)
            if not isinstance(spec, dict):
                self.problems.add(path, f"expected a mapping with a 'kind', found {found(spec)}")
                continue
            kind = spec.get("kind")
            if not isinstance(kind, str) or kind not in kinds:
                hint = close_matches(kind, kinds) if isinstance(kind, str) else ""
                known = ", ".join(sorted(kinds))
                self.problems.add(
                    (*path, "kind"),
                    f"expected a store kind ({known}), found {found(kind)}{hint}",
                )
                continue
            config = {k: v for k, v in spec.items() if k != "kind"}
            old = self.previous.stores.get(name)
            if old is not None and old.kind == kind and old.config == config:
                self.state.stores[name] = old
                continue
            described = kinds.options(kind)
            if described is None:
                kwargs: dict[str, Any] | None = config
            else:
                fields = [OptionField(k, tp, None) for k, tp in described.items()]
                kwargs = self.converter.fields(fields, config, path, {})
            if kwargs is None:
                continue
            try:
                backend = kinds.get(kind)(**kwargs)
            except Exception as exc:  # any factory error is the user's to fix
                self.problems.add(path, f"cannot create the {kind} store: {_message(exc)}")
                continue
            self.state.stores[name] = StoreSlot(kind, config, backend)

    def _outbox(self, spec: Any) -> None:
        if spec is None:
            return
        path: KeyPath = ("outbox",)
        if not isinstance(spec, dict):
            self.problems.add(path, f"expected a mapping with a 'kind', found {found(spec)}")
            return
        config = dict(spec)
        if "store" in config:
            self._outbox_in_store(spec, config, path)
            return
        kind = config.pop("kind", "sqlite")
        if kind not in _OUTBOX_KINDS:
            hint = close_matches(str(kind), _OUTBOX_KINDS)
            self.problems.add(
                (*path, "kind"), f"expected sqlite or redis, found {found(kind)}{hint}"
            )
            return
        if self.previous.outbox_config == spec and self.previous.outbox is not None:
            self.state.outbox, self.state.outbox_config = self.previous.outbox, spec
            return
        allowed = ("path", "synchronous", "name") if kind == "sqlite" else ("url", "name")
        for key in config:
            if key not in allowed:
                hint = close_matches(key, allowed) or "; expected " + ", ".join(allowed)
                self.problems.add((*path, key), f"unknown option {key!r}{hint}", key=True)
                return
        try:
            from resilio.outbox import Outbox

            if kind == "sqlite":
                outbox = Outbox.sqlite(**config)
            else:
                url = config.pop("url", None)
                if not isinstance(url, str):
                    shown = found(url)
                    self.problems.add((*path, "url"), f"expected a redis:// URL, found {shown}")
                    return
                outbox = Outbox.redis(url, **config)
        except Exception as exc:  # any error here is the user's to fix
            self.problems.add(path, f"cannot create the outbox: {_message(exc)}")
            return
        self.state.outbox, self.state.outbox_config = outbox, spec

    def _outbox_in_store(self, spec: dict[str, Any], config: dict[str, Any], path: KeyPath) -> None:
        """Build ``outbox: {store: NAME}``: the outbox where a ``stores:`` entry keeps its data."""
        store_name = config.pop("store")
        for key in config:
            if key in ("kind", "path", "url"):
                self.problems.add(
                    (*path, key),
                    f"give either 'store' or {key!r}: with 'store' the outbox is kept where "
                    "that store keeps its data",
                    key=True,
                )
                return
            if key not in _OUTBOX_STORE_OPTIONS:
                allowed = _OUTBOX_STORE_OPTIONS
                hint = close_matches(key, allowed) or "; expected store, " + ", ".join(allowed)
                self.problems.add((*path, key), f"unknown option {key!r}{hint}", key=True)
                return
        where: KeyPath = (*path, "store")
        if not isinstance(store_name, str) or not store_name:
            self.problems.add(where, f"expected a store name, found {found(store_name)}")
            return
        slot = self.state.stores.get(store_name)
        if slot is None:
            declared = self.doc.data.get("stores") if isinstance(self.doc.data, dict) else None
            if isinstance(declared, dict) and store_name in declared:
                return  # declared but not built: its own problem is reported under 'stores'
            hint = close_matches(store_name, self.state.stores)
            self.problems.add(where, f"unknown store {store_name!r}{hint} (see 'stores')")
            return
        if slot.kind not in _OUTBOX_KINDS:
            self.problems.add(
                where,
                f"store {store_name!r} is a {slot.kind} store; the outbox needs a sqlite or "
                "redis store",
            )
            return
        if "synchronous" in config and slot.kind != "sqlite":
            self.problems.add(
                (*path, "synchronous"),
                f"'synchronous' is for a sqlite store; {store_name!r} is a {slot.kind} store",
                key=True,
            )
            return
        previous = self.previous
        if (
            previous.outbox is not None
            and previous.outbox_config == spec
            and previous.stores.get(store_name) is slot
        ):
            self.state.outbox, self.state.outbox_config = previous.outbox, spec
            return
        try:
            from resilio.outbox import Outbox

            outbox = Outbox.from_store(slot.backend, **config)
        except Exception as exc:  # any error here is the user's to fix
            self.problems.add(path, f"cannot create the outbox: {_message(exc)}")
            return
        self.state.outbox, self.state.outbox_config = outbox, spec

    def _defaults(self, defaults: dict[str, Any]) -> None:
        types = self.catalog.policy_types
        for kind, body in defaults.items():
            path: KeyPath = ("defaults", kind)
            if kind not in types:
                self._unknown_type(kind, path)
                continue
            if not isinstance(body, dict):
                self.problems.add(path, f"expected a mapping of options, found {found(body)}")
                continue
            self.defaults[kind] = body

    def _pipeline(self, name: str, entries: Any) -> None:
        path: KeyPath = ("pipelines", name)
        if not isinstance(entries, list):
            self.problems.add(path, f"expected a list of policies, found {found(entries)}")
            return
        if not name or not isinstance(name, str):
            self.problems.add(path, "a pipeline needs a non-empty name")
            return
        slots: list[PolicySlot] = []
        previous = list(self.previous.slots.get(name, ()))
        for i, entry in enumerate(entries):
            slot = self._entry(entry, (*path, i), previous=previous)
            if slot is not None:
                slots.append(slot)
        if self.problems:
            return
        self.state.slots[name] = slots
        policies = [slot.policy for slot in slots]
        old = self.previous.pipelines.get(name)
        if (
            old is not None
            and len(old.policies) == len(policies)
            and all(a is b for a, b in zip(old.policies, policies, strict=True))
        ):
            self.state.pipelines[name] = old
            return
        try:
            self.state.pipelines[name] = self.make_pipeline(name, policies)
        except (TypeError, ValueError) as exc:
            self.problems.add(path, _message(exc))

    # -- one policy -------------------------------------------------------------------------

    def _entry(
        self,
        entry: Any,
        path: KeyPath,
        *,
        shared_name: str | None = None,
        previous: list[PolicySlot] | None = None,
    ) -> PolicySlot | None:
        if not isinstance(entry, dict) or len(entry) != 1:
            shown = f"{len(entry)} keys" if isinstance(entry, dict) else found(entry)
            self.problems.add(
                path,
                f"expected a mapping with one policy type (like 'retry: {{attempts: 3}}'), "
                f"found {shown}",
            )
            return None
        ((kind, body),) = entry.items()
        path = (*path, kind)
        cls = self.catalog.policy_types.items().get(kind)
        if cls is None:
            self._unknown_type(kind, path)
            return None
        if isinstance(body, dict) and "ref" in body:
            return self._ref(kind, body, path, shared_name)
        fields = option_fields(cls.options_class)  # type: ignore[attr-defined]
        if body is None and fields and _no_default_form(cls.options_class):  # type: ignore[attr-defined]
            body = {fields[0].name: None}  # `- fallback: null` is `value: null`
        elif body is None:
            body = {}  # `- retry:` means all defaults
        elif not isinstance(body, dict):
            if not fields:
                self.problems.add(path, f"{kind} has no options, found {found(body)}")
                return None
            body = {fields[0].name: body}  # the scalar form: the first option
            if self.problems.is_reported(path):
                self.problems.mark_reported((*path, fields[0].name))
        merged = dict(self.defaults.get(kind, {}))
        paths: dict[str, KeyPath] = {key: ("defaults", kind, key) for key in merged}
        merged.update(body)
        for key in body:
            paths.pop(key, None)
        name = merged.pop("name", shared_name)
        if isinstance(name, str):
            name = str(name)  # plain text, even from a quoted "${VAR}"
        paths.pop("name", None)
        if name is not None and (not isinstance(name, str) or not name):
            self.problems.add((*path, "name"), f"expected a non-empty string, found {found(name)}")
            return None
        return self._build(cls, kind, name, merged, path, paths, previous, shared_name)

    def _build(
        self,
        cls: type[Policy],
        kind: str,
        name: str | None,
        config: dict[str, Any],
        path: KeyPath,
        paths: dict[str, KeyPath],
        previous: list[PolicySlot] | None,
        shared_name: str | None,
    ) -> PolicySlot | None:
        self._uses, self._kind = [], kind
        options_class: type = cls.options_class  # type: ignore[attr-defined]
        kwargs = self.converter.options(options_class, config, path, paths)
        if kwargs is None:
            return None
        candidate = PolicySlot(kind, name, config, _PLACEHOLDER, shared_name, tuple(self._uses))
        old = self._previous_slot(candidate, previous, shared_name)
        if old is not None:
            return old
        try:
            options = options_class(**kwargs)
            policy = cls.from_options(options, name=name)  # type: ignore[attr-defined]
        except Exception as exc:  # validators' messages are for the user
            self.problems.add(_field_path(exc, path, paths, config), _message(exc))
            return None
        candidate.policy = policy
        return candidate

    def _previous_slot(
        self, candidate: PolicySlot, previous: list[PolicySlot] | None, shared_name: str | None
    ) -> PolicySlot | None:
        if shared_name is not None:
            old = self.previous.shared.get(shared_name)
            return old if old is not None and old.same_as(candidate) else None
        for i, old in enumerate(previous or ()):
            if old.ref is None and old.same_as(candidate):
                del previous[i]  # type: ignore[union-attr]
                return old
        return None

    def _ref(
        self, kind: str, body: dict[str, Any], path: KeyPath, shared_name: str | None
    ) -> PolicySlot | None:
        if shared_name is not None:
            self.problems.add((*path, "ref"), "a shared policy cannot refer to another one")
            return None
        extra = [k for k in body if k != "ref"]
        if extra:
            self.problems.add(
                (*path, extra[0]),
                f"a {{ref: ...}} entry takes no other option, found {extra[0]!r}; "
                "configure the shared policy under 'policies'",
                key=True,
            )
            return None
        ref = body["ref"]
        slot = self.state.shared.get(ref) if isinstance(ref, str) else None
        if slot is None:
            hint = close_matches(ref, self.state.shared) if isinstance(ref, str) else ""
            self.problems.add(
                (*path, "ref"), f"unknown shared policy {found(ref)}{hint} (see 'policies')"
            )
            return None
        if slot.kind != kind:
            self.problems.add(
                (*path, "ref"), f"shared policy {ref!r} is a {slot.kind}, not a {kind}"
            )
            return None
        return PolicySlot(kind, slot.name, slot.config, slot.policy, ref, slot.uses)

    def _unknown_type(self, kind: str, path: KeyPath) -> None:
        types = self.catalog.policy_types
        hint = close_matches(kind, types) or "; known types: " + ", ".join(sorted(types))
        self.problems.add(path, f"unknown policy type {kind!r}{hint}", key=True)

    # -- references -------------------------------------------------------------------------

    def _reference(self, field_name: str, value: str, path: KeyPath) -> Any:
        if field_name == "store" or field_name.endswith("_store"):
            slot = self.state.stores.get(value)
            if slot is None:
                hint = close_matches(value, self.state.stores)
                raise InvalidValueError(f"unknown store {value!r}{hint} (see 'stores')")
            self._uses.append(id(slot.backend))
            try:
                return slot.for_policy(self._kind)
            except Exception as exc:  # a store kind that cannot serve this policy type
                raise InvalidValueError(f"store {value!r}: {_message(exc)}") from None
        if field_name in ("enqueue", "outbox") and value == "outbox":
            if self.state.outbox is None:
                raise InvalidValueError("'outbox' refers to the outbox section, which is missing")
            self._uses.append(id(self.state.outbox))
            return self.state.outbox
        return NotImplemented


class _Placeholder(Policy):
    kind = "placeholder"

    def make_layer(self, inner: Any, env: Any) -> Any:  # pragma: no cover - never built
        raise NotImplementedError


_PLACEHOLDER = _Placeholder()


@functools.cache
def _no_default_form(options_class: type) -> bool:
    """Whether a policy type has no valid all-defaults form although no option is required.

    For such a type (a fallback: exactly one of value, handler, enqueue) a null entry body is
    the scalar form, the first option set to null, rather than "all defaults".
    """
    if any(f.required for f in option_fields(options_class)):
        return False
    try:
        options_class()
    except Exception:  # any validator refusing the defaults
        return True
    return False


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _field_path(
    exc: BaseException, path: KeyPath, paths: Mapping[str, KeyPath], config: Mapping[str, Any]
) -> KeyPath:
    text = str(exc)
    for key in config:
        if re.search(rf"(?<![\w]){re.escape(key)}(?![\w])", text):
            return paths.get(key, (*path, key))
    return path


def build(
    doc: Document,
    catalog: Catalog,
    previous: State,
    make_pipeline: Callable[[str, list[Policy]], Pipeline],
) -> State:
    """Check a document and build its pipelines, reusing ``previous`` objects that did not change.

    Args:
        doc: The document (with any problems found while reading it).
        catalog: Registered policy types and store kinds.
        previous: The last successful build (an empty :class:`State` for a first load).
        make_pipeline: Builds a pipeline from its name and policies.

    Returns:
        The new state.

    Raises:
        ConfigError: Listing every problem in the document.
    """
    return _Builder(doc, catalog, previous, make_pipeline).run()
