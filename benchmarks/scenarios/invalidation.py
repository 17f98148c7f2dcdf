"""Invalidation scaling: the cost of ``invalidate_tags`` as the tagged entries grow.

For each size N (1, 10, ... 10**5 in a full run; up to 10**2 with ``--quick``) N entries
sharing one tag are stored through the decorator (64 concurrent async callers), then the tag
is invalidated once and timed, and a call on one of the entries must load again (exactness).
Memory: the ``INFO memory`` ``used_memory`` delta of the fill (noisy: it moves with client
buffers and whatever else the server does), and, exactly, the ``MEMORY USAGE`` of every key
the library holds for the size (entries, tag keys, cashews' tag set) over N, after the fill
and what is still held after the invalidation (cachedeco's invalidated entries stay until
their TTL; cashews deletes them).

Rows: the fill time, the invalidation time and its ratio to the N = 1 time of the same
library. The timed invalidation follows ``WARMUPS`` invalidations of tags that no entry
carries, for every library alike: a first call after a pause costs 2-3x a warm one here.
Each size is one sample (the first invalidation of a tag is the one that costs), so the
verdict uses every size: the exponent k of a least-squares fit ``time ~ N**k`` (0 is
flat, 1 linear); the target is k <= 0.1 (cachedeco's tags are versions, so invalidation is
one round trip whatever N).
Side by side with cashews' tags (a Redis set of keys per tag, popped and deleted on
invalidation) when cashews is installed, up to ``PEER_MAX`` entries (10**4: its fill of 10**6
took 399 s, most of a full run, and its growth is plain by 10**4). A fill goes through the
decorator, a miss and a store per entry: cachedeco's own 10**6 took minutes on 2 busy cores,
so a full run stops at 10**5 (add 1_000_000 to ``SIZES_FULL`` to see it). Keys of a size are
cleared before the next size.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import cachedeco
from benchmarks import peers, progress
from benchmarks.rig import Rig
from benchmarks.servers import memory_usage, used_memory

__all__ = ["NEEDS_REDIS", "PEER_MAX", "SIZES_FULL", "SIZES_QUICK", "run"]

NEEDS_REDIS = True
SIZES_FULL = (1, 10, 100, 1_000, 10_000, 100_000)
SIZES_QUICK = (1, 10, 100)
PEER_MAX = 10_000  # the peers' largest size
FILLERS = 64
FLAT_K = 0.1  # time x 3.2 at most from N = 1 to 10**5
#: Invalidations of tags that no entry carries, right before the timed one: the first call
#: after a pause (the fill, the memory count) took 2-3x a warm one here whatever N, and the
#: pause grows with N (10**5 MEMORY USAGE commands), which read as growth.
WARMUPS = 3


@dataclass
class Library:
    """One library's tagged function and its invalidation, with a load counter."""

    name: str
    call: Callable[[int, int], Awaitable[object]] = field(repr=False)
    invalidate: Callable[[int], Awaitable[object]] = field(repr=False)
    loads: list[int] = field(default_factory=lambda: [0])
    elsewhere: Callable[[int], list[str]] = lambda n: []  # its keys outside the prefix


def _counting(loads: list[int]) -> Callable[[int, int], Awaitable[dict[str, int]]]:
    """An async function of (size, index) that counts its runs in ``loads``."""
    async def load(n: int, i: int) -> dict[str, int]:
        loads[0] += 1
        return {"i": i}

    return load


def _cachedeco(rig: Rig) -> Library:
    """cachedeco: entries tagged ``grp:{n}``, invalidated with ``ainvalidate_tags``."""
    loads = [0]
    cached = cachedeco.cached(ttl=3600, tags=["grp:{n}"], registry=rig.reg)(_counting(loads))

    async def invalidate(n: int) -> None:
        await rig.reg.ainvalidate_tags(f"grp:{n}")

    return Library("cachedeco", cached, invalidate, loads)


def _cashews(rig: Rig) -> Library:
    """cashews: the same with its tags (a set per tag), invalidated with ``delete_tags``."""
    loads = [0]
    cache = peers.cashews_cache(rig.url)
    peer = rig.peer(peers.cashews_cached(cache, _counting(loads), key=rig.key("c", "{n}", "{i}"),
                                         tags=[rig.key("cgrp", "{n}")]))

    async def invalidate(n: int) -> None:
        await cache.delete_tags(rig.key("cgrp", n))

    return Library("cashews", peer.call, invalidate, loads,
                   lambda n: ["_tag:" + rig.key("cgrp", n)])  # cashews' tag set


async def _fill(call: Callable[[int, int], Awaitable[object]], n: int,
                count: int | None = None) -> None:
    """Store ``count`` (default ``n``) entries tagged with size ``n``, 64 callers at once."""
    todo = iter(range(n if count is None else count))

    async def filler() -> None:
        for i in todo:
            await call(n, i)
            if i % 1000 == 999:
                progress.advance(0)  # keep a live bar moving during long fills

    await asyncio.gather(*(filler() for _ in range(FILLERS)))


async def _one(rig: Rig, lib: Library, n: int) -> dict[str, Any]:
    """Fill N entries, measure memory, invalidate once (timed), check exactness."""
    client = rig.client
    mem0 = used_memory(client)
    start = time.perf_counter()
    await _fill(lib.call, n)
    fill = time.perf_counter() - start
    mem1 = used_memory(client)
    held = memory_usage(client, rig.prefix, lib.elsewhere(n))
    for spare in range(WARMUPS):  # tags that no entry carries: the path warm, N untouched
        await lib.invalidate(-1 - spare)
    start = time.perf_counter()
    await lib.invalidate(n)
    took = time.perf_counter() - start
    kept = memory_usage(client, rig.prefix, lib.elsewhere(n))
    before = lib.loads[0]
    await lib.call(n, 0)
    exact = lib.loads[0] == before + 1
    await lib.invalidate(n)  # the check stored the entry again (and cashews its tag set)
    return {"group": lib.name, "row": f"N = {n:,}", "entries": n, "fill_s": fill,
            "invalidate_us": took * 1e6, "used_memory_delta": mem1 - mem0,
            "bytes_per_entry": held / n, "kept_bytes": kept, "exact": exact}


async def _warm(lib: Library) -> None:
    """Open the fillers' connections first, so that their buffers stay out of the deltas."""
    await _fill(lib.call, 0, FILLERS * 4)
    await lib.invalidate(0)


def exponent(sizes: list[float], times: list[float]) -> float:
    """k of the least-squares fit ``time ~ N**k`` over every size (0 flat, 1 linear); one
    noisy size moves it little, unlike a ratio of two single samples."""
    xs = [math.log10(n) for n in sizes]
    ys = [math.log10(t) for t in times]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / spread if spread else 0.0


def _judge(rows: list[dict[str, Any]]) -> None:
    """Ratios to the N = 1 time of each library; on a library's last row its exponent, and
    for cachedeco whether it is flat."""
    for name in dict.fromkeys(r["group"] for r in rows):
        mine = [r for r in rows if r["group"] == name]
        for row in mine:
            row["ratio"] = row["invalidate_us"] / mine[0]["invalidate_us"]
        k = exponent([r["entries"] for r in mine], [r["invalidate_us"] for r in mine])
        mine[-1]["exponent"] = k
        if name == "cachedeco":
            mine[-1].update(target=f"flat: time ~ N**k, k <= {FLAT_K}", met=k <= FLAT_K)


def run(redis_url: str | None, quick: bool) -> list[dict[str, Any]]:
    """Fill, invalidate and measure for every size and library; see the module docstring."""
    if redis_url is None:
        return []
    sizes = SIZES_QUICK if quick else SIZES_FULL
    rows: list[dict[str, Any]] = []
    with Rig(redis_url, "invalidation") as rig:
        libraries = [_cachedeco(rig)] + ([_cashews(rig)] if peers.has("cashews") else [])
        plan = [(lib, [n for n in sizes if lib.name == "cachedeco" or n <= PEER_MAX])
                for lib in libraries]
        progress.task("fill and invalidate", sum(len(mine) for _, mine in plan))
        for lib, mine in plan:
            rig.run(_warm(lib))
            rig.reg.clear()
            for n in mine:
                rows.append(rig.run(_one(rig, lib, n)))
                rig.reg.clear()  # the next size starts from an empty prefix
                progress.advance()
        _judge(rows)
    return rows
