"""The registry: pipelines built from configuration, operations from plugins, hot reload."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from resilio._context import Context
from resilio._operation import is_async_handler
from resilio._pipeline import Pipeline
from resilio.config import loader
from resilio.config.source import read_source
from resilio.plugins.catalog import Catalog, NotRegisteredError, not_registered

if TYPE_CHECKING:
    from resilio._clock import Clock
    from resilio._operation import Operation
    from resilio.classify import Classifier
    from resilio.events import Listener
    from resilio.policies._base import Policy

__all__ = ["PipelineFactory", "Registry", "Source"]

Source = str | os.PathLike[str] | Mapping[str, Any]
"""A configuration: a file path, YAML text, or a mapping."""

PipelineFactory = Callable[[str, Sequence["Policy"]], Pipeline]
"""Builds one pipeline from its name and its policies (outermost first)."""

_PIPELINE_DEFAULTS: dict[str, Any] = {
    "clock": None,
    "listeners": (),
    "classifier": None,
    "telemetry": True,
    "tracer_provider": None,
    "meter_provider": None,
    "trace_attempts": False,
}


class Registry:
    """Named pipelines built from a configuration, and the operations plugins registered.

    Make one with :func:`resilio.load_config`. Lookups are lock-free: a reload builds a complete
    new set of pipelines and swaps it in at once, so a call in flight finishes on the pipeline it
    started on.

    Every pipeline is built as ``Pipeline(policies, name=..., clock=..., listeners=...,
    classifier=..., telemetry=..., tracer_provider=..., meter_provider=...,
    trace_attempts=...)`` from the arguments below, or by ``pipeline_factory`` when given.

    Args:
        clock: The clock every pipeline uses (tests pass a :class:`resilio.testing.FakeClock`).
        listeners: Listeners added to every pipeline.
        telemetry: Whether pipelines trace and log through OpenTelemetry and structlog.
        catalog: Policy types, operations and store kinds (default: from the plugins).
        classifier: Classifies exceptions in every pipeline, before operations and plugins do.
        tracer_provider: OpenTelemetry tracer provider of every pipeline (default: the global).
        meter_provider: OpenTelemetry meter provider of every pipeline (default: the global).
        trace_attempts: Make each attempt a child span of the execution's span.
        pipeline_factory: Builds each pipeline from its name and policies instead; then none
            of ``clock``, ``listeners``, ``classifier``, ``tracer_provider``,
            ``meter_provider``, ``trace_attempts`` or ``telemetry=False`` may be given.

    Raises:
        TypeError: If ``pipeline_factory`` is combined with a pipeline option.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        listeners: Iterable[Listener] = (),
        telemetry: bool = True,
        catalog: Catalog | None = None,
        classifier: Classifier | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        trace_attempts: bool = False,
        pipeline_factory: PipelineFactory | None = None,
    ) -> None:
        self._options: dict[str, Any] = {
            "clock": clock,
            "listeners": tuple(listeners),
            "classifier": classifier,
            "telemetry": telemetry,
            "tracer_provider": tracer_provider,
            "meter_provider": meter_provider,
            "trace_attempts": trace_attempts,
        }
        if pipeline_factory is not None:
            given = [k for k, v in self._options.items() if v != _PIPELINE_DEFAULTS[k]]
            if given:
                raise TypeError(
                    "pipeline_factory builds the pipelines itself; do not also give "
                    + ", ".join(given)
                )
        self._factory = pipeline_factory
        self._catalog = catalog
        self._state = loader.State()
        self._source: Source | None = None
        self._lock = threading.Lock()

    # -- loading ------------------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        """Registered policy types, operations and store kinds (plugins load on first use)."""
        if self._catalog is None:
            from resilio.plugins.manager import catalog

            return catalog()
        return self._catalog

    @property
    def source(self) -> Source | None:
        """What the current pipelines were loaded from."""
        return self._source

    def _make_pipeline(self, name: str, policies: list[Policy]) -> Pipeline:
        if self._factory is not None:
            pipeline = self._factory(name, policies)
            if not isinstance(pipeline, Pipeline):
                raise TypeError(
                    f"pipeline_factory returned {type(pipeline).__name__}, not a Pipeline"
                )
            return pipeline
        return Pipeline(policies, name=name, **self._options)

    def load(self, source: Source, *, environ: Mapping[str, str] | None = None) -> None:
        """Load a configuration, replacing the current pipelines (same as :meth:`reload`).

        Raises:
            ConfigError: Listing every problem; nothing changes.
            TypeError: If ``source`` is not a path, YAML text or a mapping.
        """
        if source is None:
            raise TypeError(
                "a configuration is a file path (str or pathlib.Path), YAML text or a mapping, "
                "got None"
            )
        self.reload(source, environ=environ)

    def reload(
        self, source: Source | None = None, *, environ: Mapping[str, str] | None = None
    ) -> None:
        """Load a configuration again and swap the pipelines in atomically.

        Calls in flight finish on the pipelines they started on. A policy (or store) whose
        configuration did not change keeps its instance and state (a breaker stays open); so
        does a pipeline whose policies all stayed. A configuration with any problem changes
        nothing.

        Args:
            source: A path, YAML text or mapping (default: what was loaded last).
            environ: The environment for ``${VAR}`` (default: ``os.environ``).

        Raises:
            ConfigError: Listing every problem, with file, line, column and key path.
            ValueError: If there is no source to reload.
        """
        if source is None:
            source = self._source
            if source is None:
                raise ValueError("nothing to reload: no configuration was loaded yet")
        catalog = self.catalog
        with self._lock:
            doc = read_source(source, environ)
            state = loader.build(doc, catalog, self._state, self._make_pipeline)
            from resilio.telemetry.health import retire_pipelines  # health skips replaced ones

            retire_pipelines(self._state.pipelines.values(), state.pipelines.values())
            self._state = state
            self._source = doc.path if doc.path is not None else source

    # -- lookups ------------------------------------------------------------------------------

    def pipeline(self, name: str) -> Pipeline:
        """Return the pipeline called ``name``.

        Raises:
            NotRegisteredError: If there is none; the message suggests close names.
        """
        pipeline = self._state.pipelines.get(name)
        if pipeline is None:
            raise not_registered("pipeline", name, self._state.pipelines)
        return pipeline

    @property
    def pipelines(self) -> Mapping[str, Pipeline]:
        """Every pipeline, by name, in file order."""
        return dict(self._state.pipelines)

    def policy(self, name: str) -> Policy:
        """Return the shared policy declared under ``policies:`` as ``name``.

        Raises:
            NotRegisteredError: If there is none.
        """
        slot = self._state.shared.get(name)
        if slot is None:
            raise not_registered("shared policy", name, self._state.shared)
        return slot.policy

    def store(self, name: str) -> Any:
        """Return the store declared under ``stores:`` as ``name``.

        Raises:
            NotRegisteredError: If there is none.
        """
        slot = self._state.stores.get(name)
        if slot is None:
            raise not_registered("store", name, self._state.stores)
        return slot.backend

    @property
    def outbox(self) -> Any:
        """The :class:`resilio.outbox.Outbox` of the ``outbox:`` section, or ``None``."""
        return self._state.outbox

    def describe(self) -> dict[str, list[loader.PolicySlot]]:
        """Return each pipeline's policies in order, with their type, name and configuration."""
        return {name: list(slots) for name, slots in self._state.slots.items()}

    def operation(self, name: str) -> Operation:
        """Return the registered operation called ``name``.

        Raises:
            NotRegisteredError: If there is none; the message suggests close names.
        """
        return self.catalog.operations.get(name)

    @property
    def operations(self) -> Mapping[str, Operation]:
        """Every registered operation, by name."""
        return self.catalog.operations.items()

    # -- running operations -----------------------------------------------------------------

    def _prepare(
        self, name: str, payload: Any, context: Context | None
    ) -> tuple[Operation, Pipeline, Context]:
        op = self.operation(name)
        if op.handler is None:
            raise NotRegisteredError(f"operation {name!r} has no handler to run")
        pipeline = self.pipeline(op.pipeline_name)
        ctx = context if context is not None else Context()
        if ctx.operation is None:
            ctx.operation = op.name
        if ctx.idempotent is None:
            ctx.idempotent = op.idempotent
        if ctx.payload is None:
            ctx.payload = payload
        return op, pipeline, ctx

    def execute(
        self, operation: str, payload: Any = None, *, context: Context | None = None
    ) -> Any:
        """Run a registered operation's handler on ``payload`` through its pipeline.

        The context's ``operation``, ``idempotent`` and ``payload`` are filled from the
        operation when the caller left them unset. This is how queued work is replayed by name.

        Args:
            operation: The operation's name.
            payload: The JSON-serialisable payload for its handler.
            context: The execution context (one is made if not given).

        Returns:
            What the handler returned.

        Raises:
            NotRegisteredError: If the operation, its handler or its pipeline is missing.
            Exception: The handler's own exception, or a :class:`resilio.Rejected`.
        """
        op, pipeline, ctx = self._prepare(operation, payload, context)
        assert op.handler is not None
        if is_async_handler(op.handler):
            raise TypeError(f"operation {operation!r} has an async handler: use execute_async()")
        return pipeline.execute(op.handler, payload, context=ctx)

    async def execute_async(
        self, operation: str, payload: Any = None, *, context: Context | None = None
    ) -> Any:
        """Like :meth:`execute`, on the event loop.

        An ``async def`` handler is awaited through the pipeline's ``execute_async``; a plain
        (sync) handler runs through the pipeline's ``execute`` in a worker thread
        (:func:`asyncio.to_thread`), so it never blocks the event loop. Cancelling the call
        stops waiting for a sync handler, not the handler itself: its thread runs to the end.

        Args:
            operation: The operation's name.
            payload: The JSON-serialisable payload for its handler.
            context: The execution context (one is made if not given).

        Returns:
            What the handler returned.

        Raises:
            NotRegisteredError: If the operation, its handler or its pipeline is missing.
            Exception: The handler's own exception, or a :class:`resilio.Rejected`.
        """
        op, pipeline, ctx = self._prepare(operation, payload, context)
        assert op.handler is not None
        if is_async_handler(op.handler):
            return await pipeline.execute_async(op.handler, payload, context=ctx)
        return await asyncio.to_thread(pipeline.execute, op.handler, payload, context=ctx)

    # -- schema -------------------------------------------------------------------------------

    def json_schema(self) -> dict[str, Any]:
        """Return the JSON Schema (draft 2020-12) of configurations for the registered types."""
        from resilio.config.schema import json_schema

        return json_schema(self.catalog)

    def __repr__(self) -> str:
        return f"Registry(pipelines={sorted(self._state.pipelines)!r})"


def load_config(
    source: Source,
    *,
    clock: Clock | None = None,
    listeners: Iterable[Listener] = (),
    telemetry: bool = True,
    environ: Mapping[str, str] | None = None,
    classifier: Classifier | None = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    trace_attempts: bool = False,
    pipeline_factory: PipelineFactory | None = None,
) -> Registry:
    """Load a configuration and build its pipelines.

    Args:
        source: A YAML file path (``str`` or :class:`~pathlib.Path`), YAML text, or a mapping.
        clock: The clock every pipeline uses.
        listeners: Listeners added to every pipeline.
        telemetry: Whether pipelines trace and log.
        environ: The environment for ``${VAR}`` references (default: ``os.environ``).
        classifier: Classifies exceptions in every pipeline, before operations and plugins do.
        tracer_provider: OpenTelemetry tracer provider of every pipeline.
        meter_provider: OpenTelemetry meter provider of every pipeline.
        trace_attempts: Make each attempt a child span of the execution's span.
        pipeline_factory: ``factory(name, policies) -> Pipeline`` builds each pipeline instead
            (full control over :class:`resilio.Pipeline`'s arguments); it excludes the
            pipeline options above.

    Returns:
        The registry; ``registry.pipeline("orders.create")`` is a :class:`resilio.Pipeline`.

    Raises:
        ConfigError: Listing every problem, each with file, line, column and key path.
        PluginError: If a plugin failed to load or registered a clashing name.
        TypeError: If ``pipeline_factory`` is combined with a pipeline option, or ``source``
            is not a path, YAML text or a mapping.
    """
    registry = Registry(
        clock=clock,
        listeners=listeners,
        telemetry=telemetry,
        classifier=classifier,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        trace_attempts=trace_attempts,
        pipeline_factory=pipeline_factory,
    )
    registry.load(source, environ=environ)
    return registry
