"""Metrics and tracing for cachedeco, behind optional extras; nothing here is imported by
``import cachedeco``, and nothing is added to the hit path.

- Prometheus (``pip install 'cachedeco[prometheus]'``): :class:`PrometheusCollector`, a
  ``prometheus_client`` collector reading the counters at scrape time (multiprocess mode
  included: ``PROMETHEUS_MULTIPROC_DIR``).
- OpenTelemetry (``pip install 'cachedeco[otel]'``): :func:`instrument_otel`, observable
  instruments ``cachedeco.hits``, ``cachedeco.misses``, … and a ``cachedeco.load`` span
  around each load.

Counters are per function (``module.qualname``), summed over the function's backends, and
never go down while the process lives (not on ``configure()``, not when a decorated function
is garbage-collected): ``loads`` counts loads that returned, ``load_errors`` those that
raised, ``stale_hits`` are not in ``hits``, ``near_hits`` are.
"""

from __future__ import annotations

from cachedeco.exporters.otel import OtelInstrumentation, instrument_otel
from cachedeco.exporters.prometheus import PrometheusCollector

__all__ = ["OtelInstrumentation", "PrometheusCollector", "instrument_otel"]
