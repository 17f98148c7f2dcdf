"""Counters: one Stats per decorated function and per registry, read as snapshots."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Final

__all__ = ["COUNTERS", "GAUGES", "Stats", "by_function", "hit_ratio", "join_field", "split_field"]


@dataclass(slots=True)
class Stats:
    """What a cache did: hits (near hits among them) and misses, loads, errors, coalescing,
    invalidation, recovery, write-behind.

    `reg.stats()` and `f.stats()` return snapshots; adding two snapshots sums them. Every
    field but the gauges (`recoveries_pending`, `write_behind_pending`: what waits now) only
    ever grows while the process lives.

    Attributes:
        hits: Reads served a fresh value from the cache.
        near_hits: Hits served by the near cache, without a round trip (counted in `hits`
            too).
        misses: Reads that found no valid entry.
        stale_hits: Expired values served within `stale_ttl` (not counted in `hits`).
        loads: Calls of the function that returned.
        load_errors: Calls of the function that raised.
        backend_errors: Backend faults: errors, timeouts, calls skipped by the circuit
            breaker.
        singleflight_joins: Calls that waited for another call's load in the process.
        lock_waits: Calls that waited for another process's load (`lock=True`).
        invalidations: Invalidations made (`invalidate`, `invalidate_tags`, patterns).
        decode_errors: Stored values that could not be decoded or authenticated (misses).
        early_refreshes: Refreshes started before expiry (`early_refresh`).
        recoveries_pending: Changes waiting to reach a backend that was down (a gauge).
        recoveries_done: Such changes that landed.
        write_behind_pending: Records queued and not yet flushed (a gauge).
        write_behind_flushed: Records that `flush` accepted.
        write_behind_retried: Records handed to `flush` again after it raised.
        write_behind_dead: Records moved to the dead letters after their retries.
        write_behind_duplicates: Records delivered again, taken over from a process that
            stopped answering (delivery is at least once).
    """

    hits: int = 0
    near_hits: int = 0  # hits served by the near cache (counted in ``hits`` too)
    misses: int = 0
    stale_hits: int = 0  # stale values served (not counted in ``hits``)
    loads: int = 0  # loads that returned
    load_errors: int = 0  # loads that raised
    backend_errors: int = 0
    singleflight_joins: int = 0
    lock_waits: int = 0
    invalidations: int = 0
    decode_errors: int = 0
    early_refreshes: int = 0
    recoveries_pending: int = 0
    recoveries_done: int = 0
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

    def counters(self) -> Iterator[tuple[str, int]]:
        """``(name, value)`` of every field that only grows (the gauges left out)."""
        for name in COUNTERS:
            yield name, getattr(self, name)

    def since(self, base: Stats) -> Stats:
        """What the counters gained since ``base`` (a snapshot of them); gauges as they are."""
        return Stats(*(getattr(self, f.name) - (0 if f.name in GAUGES else getattr(base, f.name))
                       for f in fields(self)))

    def retired(self) -> Stats:
        """This snapshot as the counts of something gone: its gauges are zero."""
        return replace(self, **dict.fromkeys(GAUGES, 0))

    @property
    def hit_rate(self) -> float:
        """Hits (fresh or stale) over reads that reached the cache; 0.0 before any."""
        return hit_ratio(self.hits, self.stale_hits, self.misses)


#: The fields that say what waits now rather than what happened: they may go down.
GAUGES: Final = frozenset({"write_behind_pending", "recoveries_pending"})
#: Every other field, in declaration order: counters that never go down.
COUNTERS: Final = tuple(f.name for f in fields(Stats) if f.name not in GAUGES)


def hit_ratio(hits: int, stale_hits: int, misses: int) -> float:
    """Reads served from the cache (fresh or stale) over every read; 0.0 before any."""
    served = hits + stale_hits
    total = served + misses
    return served / total if total else 0.0


def join_field(function: str, counter: str) -> str:
    """The name of one function's counter in a table of many (the service-wide hash)."""
    return f"{function}|{counter}"


def split_field(field: str) -> tuple[str, str] | None:
    """``(function, counter)`` from :func:`join_field`, or None for a name it did not make."""
    function, sep, counter = field.rpartition("|")
    return (function, counter) if sep and counter in COUNTERS else None


def by_function(table: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """A flat table of :func:`join_field` names regrouped by function."""
    out: dict[str, dict[str, int]] = {}
    for field, value in table.items():
        parts = split_field(field)
        if parts is not None:
            out.setdefault(parts[0], {})[parts[1]] = value
    return out
