"""What every policy is made of: a runtime policy object and the layer it puts in a pipeline.

A :class:`Policy` holds validated options and, for stateful policies, the runtime state (a
breaker's counters, a bulkhead's slots). The same policy object may sit in several pipelines to
share its state. When a pipeline is built, each policy makes a :class:`Layer` for it: a small
object that holds the next layer inward and the pipeline's :class:`Env`, and runs one call.

A layer's ``run``/``run_async`` returns either the function's result or a
:class:`~resilio._outcome.Failure`; it raises only :class:`BaseException` s that are not
:class:`Exception` s (cancellation, interrupts), which no policy swallows.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from resilio._outcome import Failure
from resilio.classify import Classification, default_classifier

if TYPE_CHECKING:
    from resilio._clock import Clock
    from resilio._context import Context
    from resilio.classify import Classifier
    from resilio.events import Event

__all__ = ["Env", "Layer", "Policy"]

Args = tuple[Any, ...]
Kwargs = dict[str, Any]


class Env:
    """What a layer gets from its pipeline: name, clock, classification and event emission.

    Attributes:
        pipeline: The pipeline's name.
        clock: The pipeline's clock.
        listening: Whether anyone listens to events (layers may skip building events if not).
    """

    __slots__ = ("_classifiers", "_emit", "clock", "listening", "pipeline")

    def __init__(
        self,
        pipeline: str,
        clock: Clock,
        classifiers: tuple[Classifier, ...],
        emit: Callable[[Event], None],
        listening: bool,
    ) -> None:
        self.pipeline = pipeline
        self.clock = clock
        self._classifiers = classifiers
        self._emit = emit
        self.listening = listening

    def classify(self, failure: Failure, context: Context) -> Classification:
        """Classify a failure once; the result is cached on the failure.

        Classifiers run in order (the pipeline's own, the operation's, then plugins'); the first
        that returns a :class:`Classification` wins, else :func:`default_classifier` decides.
        """
        c = failure.classification
        if c is None:
            error = failure.exception
            for classifier in self._classifiers:
                c = classifier(error, context)
                if c is not None:
                    break
            else:
                c = default_classifier(error, context)
            failure.classification = c
        return c

    def emit(self, event: Event) -> None:
        """Send an event to every listener of the pipeline."""
        self._emit(event)


class Layer:
    """One policy's place in one pipeline.

    Subclasses override both :meth:`run` and :meth:`run_async` (defining a subclass that
    overrides only one is a ``TypeError``: the other kind of pipeline would skip the policy).
    The base class simply passes through.

    Attributes:
        inner: The next layer inward (the innermost calls the user's function).
        env: The pipeline's environment.
        policy: The policy that made this layer (``None`` for the innermost).
    """

    __slots__ = ("env", "inner", "policy")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = [k for k in cls.__mro__ if k is not Layer and issubclass(k, Layer)]
        sync = any("run" in vars(k) for k in own)
        asynchronous = any("run_async" in vars(k) for k in own)
        if sync != asynchronous:
            done, missing = ("run", "run_async") if sync else ("run_async", "run")
            raise TypeError(
                f"{cls.__qualname__} overrides {done}() but not {missing}(): the other kind of "
                f"pipeline would pass calls through without the policy; override both (a "
                f"layer that does nothing there returns self.inner.{missing}(...))"
            )

    def __init__(self, inner: Layer | None, env: Env, policy: Policy | None = None) -> None:
        self.inner: Layer = inner if inner is not None else self
        self.env = env
        self.policy = policy

    def run(self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Context) -> Any:
        """Run the call synchronously; return its result or a :class:`Failure`."""
        return self.inner.run(fn, args, kwargs, ctx)

    async def run_async(
        self, fn: Callable[..., Any], args: Args, kwargs: Kwargs, ctx: Context
    ) -> Any:
        """Run the call on the event loop; return its result or a :class:`Failure`."""
        return await self.inner.run_async(fn, args, kwargs, ctx)


class Policy(abc.ABC):
    """Base class of every policy.

    Subclasses set :attr:`kind` (the type name used in YAML and in events), keep their frozen
    options in :attr:`options`, and implement :meth:`make_layer`.

    Attributes:
        name: The policy's name in events, traces and health reports (defaults to its kind).
    """

    kind: ClassVar[str] = "policy"
    name: str
    options: Any

    @abc.abstractmethod
    def make_layer(self, inner: Layer, env: Env) -> Layer:
        """Build this policy's layer for one pipeline.

        Args:
            inner: The next layer inward.
            env: The pipeline's environment.

        Returns:
            The layer that runs this policy around ``inner``.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, options={self.options!r})"
