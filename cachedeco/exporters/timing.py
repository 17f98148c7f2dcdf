"""What every Prometheus exporter shares: the labels, the load-duration histogram and the
load watcher that feeds it (the one thing measured on the call path)."""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Final

from cachedeco.api.registry import Registry
from cachedeco.exporters.errors import missing
from cachedeco.runtime.watch import Begin, Finish, watch_everywhere

if TYPE_CHECKING:
    from prometheus_client import Histogram

__all__ = ["DEFAULT_BUCKETS", "HISTOGRAM", "LABELS", "LoadTimer", "histogram",
           "multiprocess_mode", "unwatch", "watch"]

LABELS: Final = ("prefix", "function")
HISTOGRAM: Final = "cachedeco_load_duration_seconds"
_HISTOGRAM_HELP: Final = "Seconds a load (a call of the cached function that returned) took"
DEFAULT_BUCKETS: Final = (.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0, 7.5, 10.0)


def multiprocess_mode() -> bool:
    """Whether prometheus_client writes its metrics to ``PROMETHEUS_MULTIPROC_DIR``."""
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ


def histogram(buckets: Sequence[float]) -> Histogram:
    """The load-duration histogram, in no Prometheus registry (a collector yields it)."""
    try:
        from prometheus_client import Histogram
    except ImportError as exc:
        raise missing("prometheus", exc) from exc
    return Histogram(HISTOGRAM, _HISTOGRAM_HELP, LABELS, buckets=tuple(buckets), registry=None)


class LoadTimer:
    """A load watcher: each load that returned is one observation of the histogram."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram

    def hook(self, prefix: str, function: str) -> Begin:
        """The hook of one function: its series is made now, so it shows from the start."""
        observe = self.histogram.labels(prefix, function).observe

        def finish(seconds: float, exc: BaseException | None) -> None:
            if exc is None:
                observe(seconds)

        def begin() -> Finish:
            return finish

        return begin


def watch(reg: Registry | None, key: Hashable, timer: LoadTimer) -> None:
    """Time the loads of ``reg`` (None: of every registry, those made later too)."""
    if reg is None:
        watch_everywhere(key, timer)
    else:
        reg.watchers.add(key, timer)


def unwatch(reg: Registry | None, key: Hashable) -> None:
    """Stop what :func:`watch` started."""
    if reg is None:
        watch_everywhere(key, None)
    else:
        reg.watchers.remove(key)
