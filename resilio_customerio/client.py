"""``ResilientCustomerIO``: every method of Customer.io's client, run through resilio pipelines.

Example:
    >>> from resilio_customerio import ResilientCustomerIO
    >>> cio = ResilientCustomerIO(site_id, api_key, region="eu")  # doctest: +SKIP
    >>> cio.identify("42", email="a@example.com")  # doctest: +SKIP
    >>> cio.track("42", "purchase", {"amount": 3})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import requests

from resilio._clock import SYSTEM_CLOCK, Clock
from resilio._context import Context
from resilio._operation import Operation
from resilio._pipeline import Pipeline
from resilio.classify import Classification, ErrorKind, default_classifier
from resilio.errors import TimeoutExceeded
from resilio_customerio import _build
from resilio_customerio._pipelines import load
from resilio_customerio._transport import AppClient, ResponseTap, TrackClient
from resilio_customerio.batching import (
    BatchBuffer,
    BatchItemResult,
    BatchResult,
    install_shutdown_handlers,
    merge_results,
    parse_errors,
    split,
)
from resilio_customerio.classify import classify, parse_retry_after, translate
from resilio_customerio.errors import ConfigurationProblem, CustomerIOError, InvalidRequest
from resilio_customerio.operations import SPECS, set_replay_client
from resilio_customerio.region import resolve_region

if TYPE_CHECKING:
    from customerio.regions import Region

    from resilio.policies._base import Policy

__all__ = ["ResilientCustomerIO"]

_TRACK_KINDS = ("transient", "throttled", "ambiguous")
_SEND_KINDS = ("transient", "throttled")


def pipeline_classifier(error: BaseException, context: Context) -> Classification | None:
    """Classify failures in the adapter's pipelines.

    A deadline that expired while a non-idempotent send was in flight is an outcome unknown,
    never a reason to send again; everything else follows the classification table.

    Args:
        error: The failure.
        context: The execution context.

    Returns:
        The classification, or ``None`` to let the default decide.
    """
    if isinstance(error, TimeoutExceeded) and context.idempotent is False:
        return Classification(kind=ErrorKind.AMBIGUOUS, reason="timeout: outcome unknown")
    return classify(error, context)


def check_timeout(timeout: Any) -> float:
    """Check a per-request timeout: a finite number of seconds above 0.

    Args:
        timeout: The value given as ``timeout=``.

    Returns:
        The timeout as a float.

    Raises:
        TypeError: If it is not a number.
        ValueError: If it is not finite or not above 0.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout= must be a number of seconds, got {type(timeout).__name__}")
    value = float(timeout)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"timeout= must be a finite number of seconds above 0, got {timeout!r}")
    return value


def ensure_plugin() -> None:
    """Register the adapter's plugin from code when its entry point is not installed."""
    from resilio.errors import PluginError
    from resilio.plugins import manager
    from resilio_customerio import plugin

    try:
        if "customerio.track" in manager.catalog().operations:
            return
    except PluginError:
        return  # a broken plugin elsewhere; the adapter still classifies through its pipelines
    manager.register(plugin, name="customerio")


class ResilientCustomerIO:
    """Customer.io's Track and App API clients with classified errors, retries and an outbox.

    Every method of ``customerio.CustomerIO`` and the ``send_*`` methods of
    ``customerio.APIClient`` are offered with the same names and arguments. Each call runs
    through its operation's pipeline (see ``pipelines.yaml``); errors are payload-free
    :class:`~resilio_customerio.errors.CustomerIOError` subclasses. Events get a ULID ``id``
    once per call, reused on every retry and replay.

    Args:
        site_id: Track API site id.
        api_key: Track API key.
        region: ``"us"``, ``"eu"``, a ``customerio.Regions`` value, or ``"auto"`` to ask
            ``GET /api/v1/accounts/region`` once, now.
        app_key: App API key, needed for the ``send_*`` methods.
        config: A path, YAML text or mapping merged over the default pipelines.
        outbox: Where calls that cannot be completed now are queued (a :class:`resilio.Outbox`);
            such calls return its ``Queued`` receipt instead of raising.
        host: Track API host (passed to the client; default: the region's).
        port: Track API port.
        url_prefix: Track API path prefix (default ``/api/v1``).
        api_url: App API base URL (default: the region's).
        timeout: Seconds the client waits to connect and for each read.
        use_connection_pooling: Keep connections open between calls (passed to the client).
        pool_size: Most pooled connections per host.
        clock: resilio's clock for waits and deadlines (tests pass a ``FakeClock``).
        pipelines: Pipelines (or lists of policies) by operation name, replacing configured ones.
        buffer: Group ``identify`` and ``track`` calls into v2 batches in the background:
            ``True`` or :class:`~resilio_customerio.batching.BatchBuffer` options, plus
            ``handle_signals`` (default ``True``): built in the main thread, the adapter calls
            :func:`~resilio_customerio.batching.install_shutdown_handlers` so SIGTERM and
            SIGINT flush the buffer before the process exits.
        replay: Register this adapter as the client outbox replays use.
        telemetry: Trace and log pipeline executions (never with payloads).
        tracer_provider: OpenTelemetry tracer provider (default: the global one).
        meter_provider: OpenTelemetry meter provider (default: the global one).

    Raises:
        ConfigError: If the configuration is invalid.
        ConfigurationProblem: For an unknown region.
        TypeError: If ``timeout`` is not a number or ``pool_size`` not an integer.
        ValueError: If ``timeout`` is not a finite number of seconds above 0, or ``pool_size``
            is below 1.
    """

    def __init__(
        self,
        site_id: str | None = None,
        api_key: str | None = None,
        region: str | Region = "us",
        app_key: str | None = None,
        config: str | Mapping[str, Any] | None = None,
        outbox: Any = None,
        *,
        host: str | None = None,
        port: int | None = None,
        url_prefix: str | None = None,
        api_url: str | None = None,
        timeout: float = 10.0,
        use_connection_pooling: bool = True,
        pool_size: int = 10,
        clock: Clock | None = None,
        pipelines: Mapping[str, Pipeline | Sequence[Policy]] | None = None,
        buffer: bool | Mapping[str, Any] = False,
        replay: bool = True,
        telemetry: bool = True,
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ) -> None:
        timeout = check_timeout(timeout)
        if isinstance(pool_size, bool) or not isinstance(pool_size, int):
            raise TypeError(f"pool_size= must be an integer, got {type(pool_size).__name__}")
        if pool_size < 1:
            raise ValueError(f"pool_size= must be at least 1, got {pool_size}")
        self.region: Region = resolve_region(
            region, site_id=site_id, api_key=api_key, host=host, port=port, timeout=timeout
        )
        self._probe_target = (site_id, api_key, host, port)
        self._probe_registered = False
        self._tap = ResponseTap()
        self.track_client = TrackClient(
            site_id,
            api_key,
            host=host,
            region=self.region,
            port=port,
            url_prefix=url_prefix,
            retries=0,
            timeout=timeout,
            use_connection_pooling=use_connection_pooling,
            tap=self._tap,
            pool_size=pool_size,
        )
        self.api_client: AppClient | None = None
        if app_key:
            self.api_client = AppClient(
                app_key,
                url=api_url.rstrip("/") if api_url else None,
                region=self.region,
                retries=0,
                timeout=timeout,
                use_connection_pooling=use_connection_pooling,
                tap=self._tap,
                pool_size=pool_size,
            )
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._telemetry = telemetry
        self._providers = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
        ensure_plugin()
        state = load(config, self._make_pipeline)
        built: dict[str, Pipeline] = dict(state.pipelines)
        for name, given in (pipelines or {}).items():
            built[name] = given if isinstance(given, Pipeline) else self._make_pipeline(name, given)
        self.outbox: Any = outbox if outbox is not None else state.outbox
        self._replay_pipelines = built
        self._pipelines = dict(built)
        if self.outbox is not None:
            for name, pipeline in built.items():
                self._pipelines[name] = self._with_outbox(name, pipeline)
        self._operations = {
            spec.name: Operation(
                name=spec.name,
                idempotent=spec.idempotent,
                classifier=classify,
                handler=self._replayer(spec.name),
                pipeline=spec.name,
                description=spec.description,
            )
            for spec in SPECS.values()
        }
        self._buffer: BatchBuffer | None = None
        if buffer:
            options = dict(buffer) if isinstance(buffer, Mapping) else {}
            handle_signals = options.pop("handle_signals", True)
            self._buffer = BatchBuffer(self.batch, **options)
            if handle_signals:
                install_shutdown_handlers()
        self._replay = replay
        if replay:
            set_replay_client(self)
        self._closed = threading.Event()

    # -- pipelines ----------------------------------------------------------------------------

    def _make_pipeline(self, name: str, policies: Sequence[Policy]) -> Pipeline:
        return Pipeline(
            list(policies),
            name=name,
            clock=self.clock,
            classifier=pipeline_classifier,
            telemetry=self._telemetry,
            **self._providers,
        )

    def _with_outbox(self, name: str, pipeline: Pipeline) -> Pipeline:
        from resilio.policies.fallback import Fallback

        kinds = _TRACK_KINDS if SPECS[name].idempotent else _SEND_KINDS
        fallback = Fallback(enqueue=self.outbox, on=list(kinds), name="customerio.outbox")
        return self._make_pipeline(name, [fallback, *pipeline.policies])

    def pipeline(self, name: str) -> Pipeline:
        """Return the pipeline an operation replays through (without the outbox step).

        With :meth:`operation`, this makes the adapter a registry for ``resilio.Drainer``:
        ``Drainer(outbox, cio)`` replays queued calls with this adapter's clients.

        Args:
            name: The operation's name, e.g. ``"customerio.track"``.

        Returns:
            The pipeline.

        Raises:
            KeyError: For an unknown name.
        """
        return self._replay_pipelines[name]

    def operation(self, name: str) -> Operation:
        """Return an adapter operation whose handler replays with this adapter's clients.

        Args:
            name: The operation's name, e.g. ``"customerio.track"``.

        Returns:
            The operation.

        Raises:
            KeyError: For an unknown name.
        """
        return self._operations[name]

    def _replayer(self, name: str) -> Any:
        def handler(payload: Any) -> Any:
            return self.attempt(name, payload)

        return handler

    # -- running ------------------------------------------------------------------------------

    def require_api_client(self) -> AppClient:
        """Return the App API client.

        Raises:
            ConfigurationProblem: If the adapter was built without an ``app_key``.
        """
        if self.api_client is None:
            raise ConfigurationProblem(
                "customerio.send", None, "no app_key was given: transactional sends need one"
            )
        return self.api_client

    def attempt(self, name: str, payload: dict[str, Any]) -> Any:
        """Make one attempt of an operation from its payload (what handlers and retries run).

        Args:
            name: The operation's name.
            payload: The payload built for the call (or stored in the outbox).

        Returns:
            What the client returned.

        Raises:
            CustomerIOError: The classified, payload-free failure.
        """
        spec = SPECS[name]
        tap = self._tap
        tap.clear()
        try:
            return spec.call(self, payload)
        except (KeyError, AttributeError) as exc:
            if tap.status is not None:
                raise translate(exc, name, idempotent=spec.idempotent, api=spec.api) from exc
            raise InvalidRequest(name, None, "the payload does not fit the operation") from exc
        except Exception as exc:
            raise translate(
                exc,
                name,
                idempotent=spec.idempotent,
                api=spec.api,
                region=self.region.name,
                retry_after=parse_retry_after(tap.retry_after),
            ) from exc

    def context(self, name: str, payload: dict[str, Any]) -> Context:
        """Return the execution context of one logical call.

        Args:
            name: The operation's name.
            payload: Its payload (an event's ``id`` becomes the idempotency key).

        Returns:
            A new context.
        """
        key = payload.get("id") if name != "customerio.identify" else None
        return Context(
            name,
            idempotency_key=key if isinstance(key, str) else None,
            idempotent=SPECS[name].idempotent,
            payload=payload,
        )

    def _run(self, name: str, payload: dict[str, Any]) -> Any:
        if name.startswith("customerio.send_"):
            self.require_api_client()
        context = self.context(name, payload)
        return self._pipelines[name].execute(self.attempt, name, payload, context=context)

    # -- Track API ----------------------------------------------------------------------------

    def identify(self, id: str | int, **kwargs: Any) -> Any:
        """Create or update a person (``PUT /customers/{id}``).

        In buffered mode the call is queued in the batch buffer and returns ``None``.

        Args:
            id: The person's id (``0`` is valid; ``None`` and ``""`` are not).
            **kwargs: Attributes.

        Returns:
            The ``requests.Response``, an outbox receipt, or ``None`` when buffered.
        """
        op = "customerio.identify"
        if self._buffer is not None:
            self._buffer.add(_build.v2_identify(op, id, kwargs))
            return None
        return self._run(op, _build.identify(op, id, kwargs))

    def track(
        self,
        customer_id: str | int,
        name: str,
        data: Mapping[str, Any] | None = None,
        id: str | None = None,
        timestamp: Any = None,
    ) -> Any:
        """Track an event for a person; the event gets a ULID ``id`` unless one is given.

        Args:
            customer_id: The person's id.
            name: The event name.
            data: Event attributes.
            id: The event's dedupe id (a ULID); made once per call when not given.
            timestamp: When it happened (datetime or epoch seconds).

        Returns:
            The ``requests.Response``, an outbox receipt, or ``None`` when buffered.
        """
        op = "customerio.track"
        if self._buffer is not None:
            self._buffer.add(_build.v2_event(op, customer_id, name, data, id, timestamp))
            return None
        payload = _build.event(op, "customer_id", customer_id, name, data, id, timestamp)
        return self._run(op, payload)

    def track_anonymous(
        self,
        anonymous_id: str | None,
        name: str,
        data: Mapping[str, Any] | None = None,
        id: str | None = None,
        timestamp: Any = None,
    ) -> Any:
        """Track an anonymous event (``POST /events``) with a ULID ``id``.

        Args:
            anonymous_id: The anonymous id (``None`` sends an invite-style event).
            name: The event name.
            data: Event attributes.
            id: The event's dedupe id; made once per call when not given.
            timestamp: When it happened.

        Returns:
            The ``requests.Response`` or an outbox receipt.
        """
        op = "customerio.track_anonymous"
        payload = _build.event(op, "anonymous_id", anonymous_id, name, data, id, timestamp)
        return self._run(op, payload)

    def pageview(self, customer_id: str | int, page: str, **data: Any) -> Any:
        """Track a page view (an event of type ``page``) with a ULID ``id``.

        Args:
            customer_id: The person's id.
            page: The page's name or URL.
            **data: Page attributes.

        Returns:
            The ``requests.Response`` or an outbox receipt.
        """
        op = "customerio.pageview"
        return self._run(op, _build.pageview(op, customer_id, page, data))

    def backfill(self, customer_id: str | int, name: str, timestamp: Any, **data: Any) -> Any:
        """Track a past event (with ``timestamp``) with a ULID ``id``.

        Args:
            customer_id: The person's id.
            name: The event name.
            timestamp: When it happened (datetime or epoch seconds; required).
            **data: Event attributes.

        Returns:
            The ``requests.Response`` or an outbox receipt.
        """
        op = "customerio.backfill"
        payload = _build.event(
            op, "customer_id", customer_id, name, data, None, timestamp, timestamp_required=True
        )
        return self._run(op, payload)

    def delete(self, customer_id: str | int) -> Any:
        """Delete a person.

        Args:
            customer_id: The person's id.

        Returns:
            The ``requests.Response`` or an outbox receipt.
        """
        op = "customerio.delete"
        return self._run(op, _build.customer(op, customer_id))

    def add_device(self, customer_id: str | int, device_id: str, platform: str, **data: Any) -> Any:
        """Add or update a person's device.

        Args:
            customer_id: The person's id.
            device_id: The device token.
            platform: ``"ios"`` or ``"android"``.
            **data: Device attributes (``last_used`` ...).

        Returns:
            The ``requests.Response`` or an outbox receipt.
        """
        op = "customerio.add_device"
        return self._run(op, _build.device(op, customer_id, device_id, platform, data))

    def delete_device(self, customer_id: str | int, device_id: str) -> Any:
        """Remove a person's device.

        Args:
            customer_id: The person's id.
            device_id: The device token.

        Returns:
            The ``requests.Response`` or an outbox receipt.
        """
        op = "customerio.delete_device"
        return self._run(op, _build.device(op, customer_id, device_id))

    def suppress(self, customer_id: str | int) -> Any:
        """Suppress a person.

        Args:
            customer_id: The person's id.

        Returns:
            The ``requests.Response`` or an outbox receipt.
        """
        op = "customerio.suppress"
        return self._run(op, _build.customer(op, customer_id))

    def unsuppress(self, customer_id: str | int) -> Any:
        """Unsuppress a person.

        Args:
            customer_id: The person's id.

        Returns:
            The ``requests.Response`` or an outbox receipt.
        """
        op = "customerio.unsuppress"
        return self._run(op, _build.customer(op, customer_id))

    def merge_customers(
        self,
        primary_id_type: str,
        primary_id: str | int,
        secondary_id_type: str,
        secondary_id: str | int,
    ) -> Any:
        """Merge a secondary person into a primary one.

        Args:
            primary_id_type: ``"id"``, ``"email"`` or ``"cio_id"``.
            primary_id: The primary person's identifier.
            secondary_id_type: ``"id"``, ``"email"`` or ``"cio_id"``.
            secondary_id: The secondary person's identifier.

        Returns:
            The ``requests.Response`` or an outbox receipt.
        """
        op = "customerio.merge_customers"
        payload = _build.merge(op, primary_id_type, primary_id, secondary_id_type, secondary_id)
        return self._run(op, payload)

    def batch(self, operations: Sequence[Mapping[str, Any]]) -> BatchResult:
        """Send v2 operations, split into requests under the size limits, with per-item results.

        Event, page and screen operations without an ``id`` get a ULID. A request that fails as
        a whole marks its operations failed (or queued, with an outbox); a 207 answer marks the
        operations it names.

        Args:
            operations: v2 operations (``{"type", "action", "identifiers", ...}``).

        Returns:
            One result per operation.

        Raises:
            InvalidRequest: If an operation is malformed or over 32 KB (nothing is sent).
        """
        op = "customerio.batch"
        ops = _build.batch_operations(op, operations)
        parts = []
        for indexes in split(ops, op):
            try:
                outcome: Any = self._run(op, {"operations": [ops[i] for i in indexes]})
            except Exception as exc:  # reported per item
                outcome = exc
            parts.append((indexes, batch_items(indexes, outcome)))
        return merge_results(parts, len(ops))

    # -- App API ------------------------------------------------------------------------------

    def send_email(self, request: Any) -> Any:
        """Send a transactional email (``SendEmailRequest`` or a dict); never sent twice.

        Returns:
            The API's answer (``delivery_id``, ``queued_at``) or an outbox receipt.
        """
        op = "customerio.send_email"
        return self._run(op, _build.send(op, request))

    def send_push(self, request: Any) -> Any:
        """Send a transactional push notification (``SendPushRequest`` or a dict).

        Returns:
            The API's answer or an outbox receipt.
        """
        op = "customerio.send_push"
        return self._run(op, _build.send(op, request))

    def send_sms(self, request: Any) -> Any:
        """Send a transactional SMS (``SendSMSRequest`` or a dict).

        Returns:
            The API's answer or an outbox receipt.
        """
        op = "customerio.send_sms"
        return self._run(op, _build.send(op, request))

    def send_whatsapp(self, request: Any) -> Any:
        """Send a transactional WhatsApp message (``SendWhatsAppRequest`` or a dict).

        Returns:
            The API's answer or an outbox receipt.
        """
        op = "customerio.send_whatsapp"
        return self._run(op, _build.send(op, request))

    def send_inbox_message(self, request: Any) -> Any:
        """Send a transactional inbox message (``SendInboxMessageRequest`` or a dict).

        Returns:
            The API's answer or an outbox receipt.
        """
        op = "customerio.send_inbox_message"
        return self._run(op, _build.send(op, request))

    def send_in_app(self, request: Any) -> Any:
        """Send a transactional in-app message (``SendInAppRequest`` or a dict).

        Returns:
            The API's answer or an outbox receipt.
        """
        op = "customerio.send_in_app"
        return self._run(op, _build.send(op, request))

    # -- health -------------------------------------------------------------------------------

    def probe(self, timeout: float = 2.0) -> bool:
        """Check cheaply that the Track API answers and accepts these credentials.

        Asks ``GET /api/v1/accounts/region`` once, with the Track credentials, no retries and
        no redirects; nothing is sent about any customer.

        Args:
            timeout: Seconds to wait for the answer.

        Returns:
            ``True`` if the API answered with a known region.

        Raises:
            CustomerIOError: Why it did not (classified as usual: ``AuthenticationFailed`` for
                wrong credentials, a connection error, a 5xx ...), never with a payload.
        """
        site_id, api_key, host, port = self._probe_target
        resolve_region(
            "auto",
            site_id=site_id,
            api_key=api_key,
            host=host,
            port=port,
            timeout=check_timeout(timeout),
        )
        return True

    def register_health_probe(self, timeout: float = 2.0) -> None:
        """Make ``resilio.health(probe=True)`` (and the health endpoint) run :meth:`probe`.

        The probe is registered for the ``customerio.track`` operation and removed by
        :meth:`close`. A failing probe makes the report unhealthy, naming only the error type.

        Args:
            timeout: Seconds each probe may wait for the API.
        """
        from resilio.telemetry.health import register_probe

        timeout = check_timeout(timeout)
        register_probe("customerio.track", lambda: self.probe(timeout))
        self._probe_registered = True

    # -- lifecycle ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Send what the batch buffer holds now (no-op without buffered mode)."""
        if self._buffer is not None:
            self._buffer.flush()

    def close(self) -> None:
        """Flush the batch buffer and close the clients' connections (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._probe_registered:
            from resilio.telemetry.health import unregister_probe

            unregister_probe("customerio.track")
        if self._buffer is not None:
            self._buffer.close()
        self.track_client.close()
        if self.api_client is not None:
            self.api_client.close()
        if self._replay:
            from resilio_customerio import operations

            if operations._replay is self:
                set_replay_client(None)

    def __enter__(self) -> ResilientCustomerIO:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResilientCustomerIO(region={self.region.name!r})"


def batch_items(indexes: list[int], outcome: Any) -> list[BatchItemResult]:
    """Turn one batch request's outcome into per-operation results.

    Args:
        indexes: The operations' positions in the caller's list.
        outcome: The ``requests.Response``, an outbox receipt, or the exception it failed with.

    Returns:
        One result per index.
    """
    if isinstance(outcome, BaseException):
        reason: str | None = (
            outcome.reason if isinstance(outcome, CustomerIOError) else type(outcome).__name__
        )
        context = Context("customerio.batch", idempotent=True)
        found = classify(outcome, context) or default_classifier(outcome, context)
        return [
            BatchItemResult(index=i, ok=False, reason=reason, error=outcome, kind=found.kind)
            for i in indexes
        ]
    if not isinstance(outcome, requests.Response):
        return [BatchItemResult(index=i, ok=True, queued=True) for i in indexes]
    errors: dict[int, tuple[str | None, str | None]] = {}
    if outcome.status_code == 207:
        with contextlib.suppress(ValueError):
            errors = parse_errors(outcome.json())
    results = []
    for local, index in enumerate(indexes):
        if local in errors:
            reason, where = errors[local]
            results.append(
                BatchItemResult(
                    index=index, ok=False, reason=reason, field=where, kind=ErrorKind.PERMANENT
                )
            )
        else:
            results.append(BatchItemResult(index=index, ok=True))
    return results
