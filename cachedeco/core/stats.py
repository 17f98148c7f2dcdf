"""Counters: one Stats per decorated function and per registry, read as snapshots."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

__all__ = ["Stats"]


@dataclass(slots=True)
class Stats:
    """What a cache did: hits and misses, loads, errors, coalescing, invalidation, write-behind.

    ``reg.stats()`` and ``f.stats()`` return snapshots; adding two snapshots sums them.
    """

    hits: int = 0
    misses: int = 0
    stale_hits: int = 0
    loads: int = 0
    load_errors: int = 0
    backend_errors: int = 0
    singleflight_joins: int = 0
    lock_waits: int = 0
    invalidations: int = 0
    decode_errors: int = 0
    early_refreshes: int = 0
    write_behind_pending: int = 0
    write_behind_flushed: int = 0
    write_behind_retried: int = 0
    write_behind_dead: int = 0
    write_behind_duplicates: int = 0

    def snapshot(self) -> Stats:
        """A copy that later calls do not change."""
        return replace(self)

    def __add__(self, other: Stats) -> Stats:
        return Stats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def hit_rate(self) -> float:
        """Hits (fresh or stale) over reads that reached the cache; 0.0 before any."""
        served = self.hits + self.stale_hits
        total = served + self.misses
        return served / total if total else 0.0
