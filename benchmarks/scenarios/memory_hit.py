"""memory:// hit, sync and async: cachedeco's embedded backend against in-process memoizers.

Baseline: ``cachetools.cached(LRUCache)`` for sync calls and, since cachetools has no async
decorator, the idiomatic equivalent for ``async def`` (an ``LRUCache`` looked up with
``cachetools.keys.hashkey`` inside the coroutine). ``functools.lru_cache`` is the floor of what
Python can do. Target: cachedeco <= 1.5x cachetools. Every call is a hit on one of 100 warm
keys. Peers: dogpile.cache's memory backend (sync), cashews ``mem://`` and aiocache's
``SimpleMemoryCache`` (async). Without cachetools the baseline is ``functools.lru_cache``
(sync) and a dict in an ``async def`` (async), and no target is judged.

One more row per group measures what exporting metrics costs a hit: the same function on a
registry that a ``PrometheusCollector`` and ``instrument_otel`` watch, against the cachedeco
row (target: at most +0.1 µs per hit: only loads are observed). It needs the ``prometheus``
and ``otel`` extras.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import cachedeco
from benchmarks import peers
from benchmarks.harness import Plan, Variant, async_batch, measure, rows_for, sync_batch
from benchmarks.servers import new_prefix
from benchmarks.workload import WARM_KEYS, record

__all__ = ["run"]

TARGET = 1.5
ARGS = list(range(WARM_KEYS))


def _load(key: int) -> dict[str, Any]:
    return record(key)


async def _aload(key: int) -> dict[str, Any]:
    return record(key)


def _dict_async(func: Callable[[int], Awaitable[Any]]) -> Callable[[int], Awaitable[Any]]:
    """A plain dict memo in an ``async def``: the async baseline when cachetools is missing."""
    cache: dict[int, Any] = {}

    async def wrapper(key: int) -> Any:
        try:
            return cache[key]
        except KeyError:
            value = cache[key] = await func(key)
            return value

    return wrapper


def _watched(prefix: str) -> tuple[cachedeco.Registry | None, list[object]]:
    """A registry that every exporter watches, and the exporters (None without the extras)."""
    try:
        from cachedeco.metrics import PrometheusCollector, instrument_otel

        reg = cachedeco.Registry("memory://", prefix=prefix + "-watched")
        return reg, [PrometheusCollector(reg), instrument_otel(reg)]
    except cachedeco.ConfigurationError:
        return None, []


def _metrics_row(batch: Callable[[int], None], base: Variant, group: str) -> Variant:
    """The cachedeco row again, on the watched registry: what exporting adds to a hit."""
    return Variant("cachedeco, metrics exported", batch, group=group, baseline=base,
                   max_over_us=0.1, target_text="<= +0.1 µs over cachedeco",
                   note="PrometheusCollector + instrument_otel watching")


def _sync_rows(prefix: str, reg: cachedeco.Registry,
               watched: cachedeco.Registry | None) -> list[Variant]:
    """The sync group: the baseline, lru_cache, cachedeco and dogpile.cache."""
    has_ct = peers.has("cachetools")
    lru = functools.lru_cache(maxsize=100_000)(_load)
    if has_ct:
        base = Variant("cachetools.cached", sync_batch(peers.cachetools_cached(_load).call, ARGS),
                       group="sync")
        rows = [base, Variant("functools.lru_cache", sync_batch(lru, ARGS), group="sync",
                              baseline=base)]
    else:
        base = Variant("functools.lru_cache", sync_batch(lru, ARGS), group="sync",
                       note=f"cachetools missing: {peers.INSTALL_HINT}")
        rows = [base]
    ours = cachedeco.cached(ttl=3600, registry=reg)(_load)
    rows.append(Variant("cachedeco (memory://)", sync_batch(ours, ARGS), group="sync",
                        baseline=base, target=TARGET if has_ct else None,
                        target_text="<= 1.5x cachetools"))
    if watched is not None:
        mine = cachedeco.cached(ttl=3600, registry=watched)(_load)
        rows.append(_metrics_row(sync_batch(mine, ARGS), rows[-1], "sync"))
    if peers.has("dogpile.cache"):
        dog = peers.dogpile_cached(_load, prefix, None)
        rows.append(Variant("dogpile.cache (memory)", sync_batch(dog.call, ARGS), group="sync",
                            baseline=base))
    return rows


def _async_rows(loop: asyncio.AbstractEventLoop, reg: cachedeco.Registry,
                watched: cachedeco.Registry | None, closing: list[peers.Cached]
                ) -> list[Variant]:
    has_ct = peers.has("cachetools")
    if has_ct:
        memo = peers.cachetools_async(_aload)
        base = Variant(memo.name, async_batch(loop, memo.call, ARGS), group="async")
    else:
        base = Variant("dict in async def", async_batch(loop, _dict_async(_aload), ARGS),
                       group="async", note=f"cachetools missing: {peers.INSTALL_HINT}")
    ours = cachedeco.cached(ttl=3600, registry=reg)(_aload)
    rows = [base, Variant("cachedeco (memory://)", async_batch(loop, ours, ARGS),
                          group="async", baseline=base, target=TARGET if has_ct else None,
                          target_text="<= 1.5x cachetools")]
    if watched is not None:
        mine = cachedeco.cached(ttl=3600, registry=watched)(_aload)
        rows.append(_metrics_row(async_batch(loop, mine, ARGS), rows[-1], "async"))
    if peers.has("cashews"):
        cashews = peers.cashews_cached(peers.cashews_cache(None), _aload, key="mem:{key}")
        closing.append(cashews)
        rows.append(Variant("cashews (mem://)", async_batch(loop, cashews.call, ARGS),
                            group="async", baseline=base, note=cashews.note))
    if peers.has("aiocache"):
        aio = peers.aiocache_cached(_aload, "mem", None)
        closing.append(aio)
        rows.append(Variant("aiocache (SimpleMemoryCache)", async_batch(loop, aio.call, ARGS),
                            group="async", baseline=base, note=aio.note))
    return rows


def run(redis_url: str | None, quick: bool) -> list[dict[str, Any]]:
    """Measure warm hits of every memoizer, interleaved; see the module docstring."""
    del redis_url  # in-process only
    prefix = new_prefix("memory_hit")
    reg = cachedeco.Registry("memory://", prefix=prefix)
    watched, exporters = _watched(prefix)
    loop = asyncio.new_event_loop()
    closing: list[peers.Cached] = []
    try:
        variants = [*_sync_rows(prefix, reg, watched),
                    *_async_rows(loop, reg, watched, closing)]
        samples = measure(variants, Plan.for_mode(quick, batch_seconds=0.02), "hits",
                          warmup=len(ARGS))
        return rows_for(variants, samples)
    finally:
        loop.run_until_complete(peers.close_all(closing))
        loop.run_until_complete(reg.aclose())
        if watched is not None:
            loop.run_until_complete(watched.aclose())
        del exporters
        loop.close()
