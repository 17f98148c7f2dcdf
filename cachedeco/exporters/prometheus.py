"""The Prometheus collector: cachedeco's counters read at scrape time, and the one thing
measured on the call path, how long each load took.

In one process, :class:`PrometheusCollector` is an ordinary ``prometheus_client`` collector.
Under ``prometheus_client``'s multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set: gunicorn
or uvicorn workers) each worker's counts must reach the files every worker shares, where
``MultiProcessCollector`` sums them: see :mod:`cachedeco.exporters.multiprocess`.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from cachedeco.api.registry import Registry
from cachedeco.exporters.multiprocess import Mirror
from cachedeco.exporters.readings import METRICS, read
from cachedeco.exporters.timing import (
    DEFAULT_BUCKETS,
    LABELS,
    LoadTimer,
    histogram,
    multiprocess_mode,
    unwatch,
    watch,
)

if TYPE_CHECKING:
    from prometheus_client import Histogram
    from prometheus_client.metrics_core import Metric as Family

__all__ = ["PrometheusCollector"]

class PrometheusCollector:
    """cachedeco's counters and load times as Prometheus metrics, read at scrape time.

    Register it with `prometheus_client.REGISTRY.register(PrometheusCollector())`, once per
    Prometheus registry. Counters `cachedeco_<counter>_total` (every
    [`Stats`][cachedeco.Stats] counter), the gauges `cachedeco_write_behind_pending` and
    `cachedeco_recoveries_pending`, and the histogram `cachedeco_load_duration_seconds`
    carry the labels `prefix` and `function` (`module.qualname`; `""` for registry-wide
    operations such as `invalidate_tags`). A hit costs nothing more; a load is timed from
    the moment the collector exists. Needs `pip install 'cachedeco[prometheus]'`.

    Under prometheus_client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`), make one in
    every worker: it copies the worker's counts to the shared files every second (and at
    exit), yields nothing itself, and `prometheus_client.multiprocess.MultiProcessCollector`
    serves the service's sums.

    Args:
        reg: The registry to export; `None`: every registry of the process, those made
            later too.
        buckets: The upper bounds, in seconds, of the load-duration histogram's buckets.
    """

    def __init__(self, reg: Registry | None = None, *,
                 buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self._registries = None if reg is None else (reg,)
        self.multiprocess = multiprocess_mode()
        if self.multiprocess:
            self._histogram: Histogram | None = None
            self._stop = Mirror.join(reg, buckets).stop
            return
        self._histogram = histogram(buckets)
        timer = LoadTimer(self._histogram)
        watch(reg, timer, timer)
        self._stop = weakref.finalize(self, unwatch, reg, timer)

    def close(self) -> None:
        """Stop timing loads (in multiprocess mode: copy what is left to the files now and
        stop the copying thread, which the next collector starts again)."""
        self._stop()

    def describe(self) -> Iterator[Family]:
        """The metric names, without reading anything (prometheus_client asks at register)."""
        yield from self._families({})

    def collect(self) -> Iterator[Family]:
        """Every counter of every function, read now, and the load-duration histogram."""
        if self._histogram is None:  # multiprocess: the shared files carry everything
            return
        yield from self._families(read(self._registries))

    def _families(self, readings: dict[tuple[str, str], Any]) -> Iterator[Family]:
        from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

        rows = sorted(readings.items())
        for metric in METRICS:
            kind = GaugeMetricFamily if metric.gauge else CounterMetricFamily
            family = kind(metric.prometheus, metric.help, labels=LABELS)
            for labels, stats in rows:
                family.add_metric(labels, getattr(stats, metric.field))
            yield family
        if self._histogram is not None:
            yield from self._histogram.collect()
