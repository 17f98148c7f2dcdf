"""Prometheus multiprocess mode: each worker copies its counts into prometheus_client's own
metric objects, which write them to the worker's files in ``PROMETHEUS_MULTIPROC_DIR``;
``MultiProcessCollector`` sums every worker's files at scrape time.

A custom collector only ever sees the process that answers the scrape, so here the counts
are copied, off the call path: a daemon thread adds what each counter gained since the last
copy every second, and once more at exit. Loads are observed into a multiprocess histogram
as they end. One mirror per process (two would write the same series over each other).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Literal

from cachedeco.api.registry import Registry
from cachedeco.core.forking import redo_after_fork
from cachedeco.core.stats import GAUGES
from cachedeco.errors import ConfigurationError
from cachedeco.exporters.errors import missing
from cachedeco.exporters.readings import METRICS, read
from cachedeco.exporters.timing import LABELS, LoadTimer, histogram, watch
from cachedeco.runtime.ledger import Cursor
from cachedeco.runtime.process import at_exit
from cachedeco.runtime.workers import ThreadWorker

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge

__all__ = ["INTERVAL", "Mirror"]

INTERVAL: Final = 1.0  # seconds between two copies
_KEY: Final = "cachedeco.exporters.multiprocess"  # one load watcher per registry, whoever asks
Counts = dict[tuple[str, str, str], int]  # by (prefix, function, counter)
#: How a scrape joins the workers' gauges: a Redis queue's length is the same in every worker
#: (the latest holds); the changes auto-recovery keeps are each worker's own (the sum of the
#: live ones: a worker that exits writes 0, its changes given up or left to its spool's next
#: process, which counts them; one killed keeps its last value until ``mark_process_dead``).
_MODES: Final[dict[str, Literal["mostrecent", "livesum"]]] = {
    "write_behind_pending": "mostrecent", "recoveries_pending": "livesum"}


class Mirror:
    """This process's counts, copied into prometheus_client's multiprocess files."""

    _lock: Final = threading.Lock()
    _instance: Mirror | None = None

    @classmethod
    def join(cls, reg: Registry | None, buckets: Sequence[float]) -> Mirror:
        """The process's mirror, now also covering ``reg`` (None: every registry)."""
        with cls._lock:
            mirror = cls._instance
            if mirror is None:
                mirror = cls._instance = Mirror(tuple(buckets))
            elif tuple(buckets) != mirror.buckets:
                raise ConfigurationError("in multiprocess mode every PrometheusCollector of a "
                                         "process shares one histogram: give the same buckets")
            mirror.cover(reg)
            return mirror

    def __init__(self, buckets: tuple[float, ...]) -> None:
        try:
            from prometheus_client import Counter, Gauge
        except ImportError as exc:
            raise missing("prometheus", exc) from exc
        self.buckets = buckets
        self._timer = LoadTimer(histogram(buckets))
        self._counters: dict[str, Counter] = {
            m.field: Counter(m.prometheus, m.help, LABELS, registry=None)
            for m in METRICS if not m.gauge}
        self._gauges: dict[str, Gauge] = {
            m.field: Gauge(m.prometheus, m.help, LABELS, registry=None,
                           multiprocess_mode=_MODES[m.field])
            for m in METRICS if m.gauge}
        self._everything = False
        self._registries: weakref.WeakSet[Registry] = weakref.WeakSet()
        self._cursor: Cursor[tuple[str, str, str]] = Cursor(lambda: self._read()[0])
        self._shown: set[tuple[str, str, str]] = set()
        self._set: dict[tuple[str, str, str], int] = {}
        self._copying = threading.Lock()
        self._worker = self._new_worker()
        at_exit(_stop)
        redo_after_fork(self)

    def _new_worker(self) -> ThreadWorker:
        return ThreadWorker("prometheus", INTERVAL, lambda _stop: self.copy(), self.copy,
                            role="metrics")

    def cover(self, reg: Registry | None) -> None:
        """Copy the counts of ``reg`` too (None: of every registry) and time its loads."""
        if reg is None:
            self._everything = True
        else:
            self._registries.add(reg)
        watch(reg, _KEY, self._timer)
        self._worker.ensure()

    def _read(self) -> tuple[Counts, Counts]:
        """(counters, gauges) of what is covered, by (prefix, function, field)."""
        readings = read(None if self._everything else list(self._registries))
        counters: Counts = {}
        gauges: Counts = {}
        for (prefix, function), stats in readings.items():
            for name, value in stats.counters():
                counters[prefix, function, name] = value
            for name in GAUGES:
                gauges[prefix, function, name] = getattr(stats, name)
        return counters, gauges

    def copy(self) -> None:
        """Add what each counter gained since the last copy; set the gauges that changed."""
        with self._copying:
            counters, gauges = self._read()
            for key in counters.keys() - self._shown:  # a series shows from its first zero
                self._counters[key[2]].labels(key[0], key[1])
                self._shown.add(key)
            for (prefix, function, name), gained in self._cursor.take(counters).items():
                if gained > 0:
                    self._counters[name].labels(prefix, function).inc(gained)
            for key, value in gauges.items():
                if self._set.get(key) != value:
                    self._gauges[key[2]].labels(key[0], key[1]).set(value)
                    self._set[key] = value

    def stop(self) -> None:
        """Copy what is left and stop the thread (it starts again with the next collector)."""
        if not self._worker.stop():
            self.copy()

    def exit(self) -> None:
        """The process ends: its last counts, and no changes kept any more (see _MODES)."""
        self.stop()
        with self._copying:
            for prefix, function, name in self._set:
                if _MODES[name] == "livesum":
                    self._gauges[name].labels(prefix, function).set(0)

    def after_fork(self) -> None:
        """In a child: its own thread and series (prometheus_client opens its files)."""
        self._shown, self._set = set(), {}
        self._worker = self._new_worker()
        if self._everything or len(self._registries):
            self._worker.ensure()


def _stop() -> None:
    """At exit: the process's last counts go to its files."""
    mirror = Mirror._instance
    if mirror is not None:
        mirror.exit()
