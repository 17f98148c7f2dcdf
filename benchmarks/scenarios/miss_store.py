"""Miss + store: a call on a cold key, which reads, runs the (instant) function and stores.

Baseline: a raw GET that finds nothing, then ``SET key orjson.dumps(value) PX ttl``, sync and
async. cachedeco does one read (MGET of the entry and its function's tag) and one EVALSHA of
its conditional STORE script (no stale set after an invalidation). Target <= 1.3x. Every call
uses a fresh argument, so every call misses. Peers: dogpile.cache (sync), cashews and aiocache
(async).
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson

import cachedeco
from benchmarks import peers
from benchmarks.harness import Plan, Variant, measure, rows_for
from benchmarks.rig import Rig
from benchmarks.servers import commands_per_op
from benchmarks.workload import record

__all__ = ["NEEDS_REDIS", "run"]

NEEDS_REDIS = True
TARGET = 1.3
TTL_MS = peers.TTL * 1000
VALUE = record(1)


def _load(key: int) -> dict[str, Any]:
    return VALUE


async def _aload(key: int) -> dict[str, Any]:
    return VALUE


def _fresh(call: Any) -> Any:
    """A sync batch calling ``call`` with arguments never used before."""
    counter = itertools.count()

    def batch(n: int) -> None:
        for key in itertools.islice(counter, n):
            call(key)

    return batch


def _afresh(rig: Rig, call: Any) -> Any:
    """An async batch (on the rig's loop) calling ``call`` with arguments never used before."""
    counter = itertools.count()

    async def run(n: int) -> None:
        for key in itertools.islice(counter, n):
            await call(key)

    def batch(n: int) -> None:
        rig.loop.run_until_complete(run(n))

    return batch


def _sync_rows(rig: Rig) -> list[Variant]:
    """Raw GET + SET, cachedeco and dogpile.cache, sync."""
    client, prefix = rig.client, rig.prefix

    def raw(key: int) -> Any:
        name = f"{prefix}:raw:{key}"
        if client.get(name) is None:
            client.set(name, orjson.dumps(VALUE), px=TTL_MS)
        return VALUE

    base = Variant("raw GET + SET", _fresh(raw), group="sync")
    ours = cachedeco.cached(ttl=3600, registry=rig.reg)(_load)
    rows = [base, Variant("cachedeco", _fresh(ours), group="sync", baseline=base,
                          target=TARGET)]
    if peers.has("dogpile.cache"):
        dog = rig.peer(peers.dogpile_cached(_load, prefix, rig.url))
        rows.append(Variant(dog.name, _fresh(dog.call), group="sync", baseline=base,
                            note=dog.note))
    return rows


def _async_rows(rig: Rig) -> list[Variant]:
    """Raw GET + SET, cachedeco, cashews and aiocache, async."""
    aclient, prefix = rig.aclient, rig.prefix

    async def raw(key: int) -> Any:
        name = f"{prefix}:araw:{key}"
        if await aclient.get(name) is None:
            await aclient.set(name, orjson.dumps(VALUE), px=TTL_MS)
        return VALUE

    base = Variant("raw GET + SET", _afresh(rig, raw), group="async")
    ours = cachedeco.cached(ttl=3600, registry=rig.reg)(_aload)
    rows = [base, Variant("cachedeco", _afresh(rig, ours), group="async", baseline=base,
                          target=TARGET)]
    if peers.has("cashews"):
        cashews = rig.peer(peers.cashews_cached(peers.cashews_cache(rig.url), _aload,
                                                key=rig.key("cashews", "{key}")))
        rows.append(Variant(cashews.name, _afresh(rig, cashews.call), group="async",
                            baseline=base, note="pickle (its default)"))
    if peers.has("aiocache"):
        aio = rig.peer(peers.aiocache_cached(_aload, rig.key("aiocache"), rig.url))
        rows.append(Variant(aio.name, _afresh(rig, aio.call), group="async", baseline=base,
                            note=aio.note))
    return rows


def run(redis_url: str | None, quick: bool) -> list[dict[str, Any]]:
    """Measure cold calls (read, compute, store) of every row, interleaved."""
    if redis_url is None:
        return []
    with Rig(redis_url, "miss_store") as rig:
        variants = [*_sync_rows(rig), *_async_rows(rig)]
        samples = measure(variants, Plan.for_mode(quick), "misses", max_n=20_000)
        rows = rows_for(variants, samples)
        for variant, row in zip(variants, rows, strict=True):
            row["cmds_per_op"] = commands_per_op(rig.client, variant.batch, 50)
        return rows
