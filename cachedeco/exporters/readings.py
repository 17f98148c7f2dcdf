"""What the exporters read, at scrape time: every counter of some registries by prefix and
function, and the catalogue of metrics they become."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Final

from cachedeco.api.registry import Registry
from cachedeco.core.stats import GAUGES, Stats
from cachedeco.runtime.ledger import Ledger, book

__all__ = ["METRICS", "Metric", "Readings", "read"]

#: What each counter counts, for the metrics' help texts.
_HELP: Final = {
    "hits": "Calls served a fresh cached value (near-cache hits included)",
    "near_hits": "Hits served by the in-process near cache (also counted in hits)",
    "misses": "Calls that found no usable cached value",
    "stale_hits": "Calls served an expired value while one refresh runs (not in hits)",
    "loads": "Calls of the cached function that returned",
    "load_errors": "Calls of the cached function that raised",
    "backend_errors": "Backend faults: errors, timeouts, calls skipped by the circuit breaker",
    "singleflight_joins": "Calls that waited for a load another call of this process ran",
    "lock_waits": "Calls that waited for a lock=True load of another process",
    "invalidations": "Invalidations: f.invalidate(), invalidate_all(), tags, patterns",
    "decode_errors": "Stored values that could not be decoded (served as misses)",
    "early_refreshes": "Refreshes started before expiry (early_refresh)",
    "recoveries_pending": "Changes waiting for a backend that was unreachable",
    "recoveries_done": "Changes delivered once the backend was back",
    "write_behind_pending": "Write-behind records waiting to be flushed",
    "write_behind_flushed": "Write-behind records handed to flush",
    "write_behind_retried": "Write-behind records whose flush failed and is retried",
    "write_behind_dead": "Write-behind records moved to the dead letters",
    "write_behind_duplicates": "Write-behind records delivered again (at least once)",
}


@dataclass(frozen=True, slots=True)
class Metric:
    """One :class:`~cachedeco.Stats` field as a metric."""

    field: str
    gauge: bool  # what waits now (may go down); else a counter
    help: str

    @property
    def prometheus(self) -> str:
        """The Prometheus name: ``cachedeco_<field>`` (``_total`` added for a counter)."""
        return f"cachedeco_{self.field}"

    @property
    def otel(self) -> str:
        """The OpenTelemetry instrument name: ``cachedeco.<field>``."""
        return f"cachedeco.{self.field}"


METRICS: Final = tuple(Metric(f.name, f.name in GAUGES, _HELP.get(f.name, f.name.replace("_", " ")))
                      for f in fields(Stats))

#: Counters by (prefix, function); function ``""``: registry-wide operations.
Readings = dict[tuple[str, str], Stats]


def read(registries: Iterable[Registry] | None) -> Readings:
    """The counters of ``registries`` (None: every registry of the process, those gone
    included), summed where two registries share a prefix."""
    ledgers: Iterable[Ledger] = book() if registries is None else (
        r.ledger for r in registries)
    out: Readings = {}
    for ledger in ledgers:
        for key, stats in ledger.by_prefix().items():
            have = out.get(key)
            out[key] = stats if have is None else have + stats
    return out
