"""OpenTelemetry: cachedeco's counters as observable instruments, read when the meter
provider collects, and a ``cachedeco.load`` span around each load.

The instruments (``cachedeco.hits``, ``cachedeco.misses``, …) are made once per meter
provider and read every registry instrumented for it; each observation carries the
attributes ``cachedeco.function`` and ``cachedeco.prefix``. A span carries the function,
the prefix and the outcome (``ok``, ``error`` or ``cancelled``, plus ``error.type`` on an
error): never a key, an argument or an exception message (they may hold argument values).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from cachedeco import __version__
from cachedeco.api.registry import Registry
from cachedeco.api.registry import registry as default_registry
from cachedeco.exporters.errors import missing
from cachedeco.exporters.readings import METRICS, Metric, read
from cachedeco.runtime.watch import Begin, Finish

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Histogram, MeterProvider, Observation
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["OtelInstrumentation", "instrument_otel"]

FUNCTION: Final = "cachedeco.function"
PREFIX: Final = "cachedeco.prefix"
OUTCOME: Final = "cachedeco.outcome"
SCOPE: Final = "cachedeco"  # the instrumentation scope of every meter and tracer


class _Meters:
    """The instruments of one meter provider and the registries they read."""

    _lock: Final = threading.Lock()
    _made: Final[dict[int, tuple[object, _Meters]]] = {}

    @classmethod
    def of(cls, provider: MeterProvider) -> _Meters:
        """The instruments of ``provider``, made on first use."""
        with cls._lock:
            held = cls._made.get(id(provider))
            if held is None or held[0] is not provider:
                held = cls._made[id(provider)] = (provider, _Meters(provider))
            return held[1]

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter(SCOPE, __version__)
        self.registries: weakref.WeakSet[Registry] = weakref.WeakSet()
        for metric in METRICS:
            make = meter.create_observable_gauge if metric.gauge else (
                meter.create_observable_counter)
            make(metric.otel, callbacks=[self._observer(metric)], description=metric.help)
        self.duration: Histogram = meter.create_histogram(
            "cachedeco.load.duration", unit="s",
            description="Seconds a load (a call of the cached function) took")

    def _observer(self, metric: Metric) -> Callable[[CallbackOptions], Iterable[Observation]]:
        from opentelemetry.metrics import Observation

        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            for (prefix, function), stats in read(list(self.registries)).items():
                yield Observation(getattr(stats, metric.field),
                                  {FUNCTION: function, PREFIX: prefix})

        return observe


class _LoadSpans:
    """A load watcher: a span around each load, current while the function runs (so the
    spans of what the function does are its children), and its duration recorded."""

    def __init__(self, tracer: Tracer, duration: Histogram) -> None:
        self.tracer = tracer
        self.duration = duration

    def hook(self, prefix: str, function: str) -> Begin:
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        tracer, duration = self.tracer, self.duration
        names = {FUNCTION: function, PREFIX: prefix}

        def begin() -> Finish:
            span = tracer.start_span("cachedeco.load", kind=SpanKind.INTERNAL, attributes=names)
            token = context.attach(trace.set_span_in_context(span))

            def finish(seconds: float, exc: BaseException | None) -> None:
                outcome = "ok" if exc is None else (
                    "error" if isinstance(exc, Exception) else "cancelled")
                span.set_attribute(OUTCOME, outcome)
                if exc is not None:
                    span.set_attribute("error.type", type(exc).__qualname__)
                    span.set_status(Status(StatusCode.ERROR))
                duration.record(seconds, {**names, OUTCOME: outcome})
                context.detach(token)
                span.end()

            return finish

        return begin


class OtelInstrumentation:
    """What :func:`instrument_otel` set up; ``uninstrument()`` undoes it."""

    def __init__(self, registry: Registry, meters: _Meters, key: tuple[Any, ...]) -> None:
        self.registry = registry
        self._meters = meters
        self._key = key

    def uninstrument(self) -> None:
        """Stop the spans and the observations of this registry (instruments made on the
        meter provider stay, reporting nothing for it)."""
        self._meters.registries.discard(self.registry)
        self.registry.watchers.remove(self._key)


def instrument_otel(reg: Registry | None = None, *, meter_provider: MeterProvider | None = None,
                    tracer_provider: TracerProvider | None = None) -> OtelInstrumentation:
    """Report a registry's counters as OpenTelemetry observable instruments and trace its loads.

    Instruments `cachedeco.<counter>` (`cachedeco.hits`, `cachedeco.misses`, …, with the
    attributes `cachedeco.function` and `cachedeco.prefix`) are read when the provider
    collects; a span `cachedeco.load` surrounds each load (attributes `cachedeco.function`
    and `cachedeco.outcome`: `ok`, `error` or `cancelled`; never a key or an argument) and
    its duration goes to the histogram `cachedeco.load.duration`. Calling it again for the
    same registry and providers changes nothing. Needs `pip install 'cachedeco[otel]'`.

    Args:
        reg: The registry; `None`: the default one, `cachedeco.registry`.
        meter_provider: Where the instruments go; `None`: the global meter provider.
        tracer_provider: Where the spans go; `None`: the global tracer provider.

    Returns:
        A handle whose `uninstrument()` undoes it.
    """
    try:
        from opentelemetry import metrics, trace
    except ImportError as exc:
        raise missing("otel", exc) from exc
    registry = default_registry if reg is None else reg
    meter_provider = meter_provider or metrics.get_meter_provider()
    tracer_provider = tracer_provider or trace.get_tracer_provider()
    meters = _Meters.of(meter_provider)
    meters.registries.add(registry)
    key = (SCOPE, meter_provider, tracer_provider)
    registry.watchers.add(key, _LoadSpans(tracer_provider.get_tracer(SCOPE, __version__),
                                          meters.duration))
    return OtelInstrumentation(registry, meters, key)
