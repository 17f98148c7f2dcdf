"""100 concurrent async callers over 1,000 warm keys: throughput against one raw GET per call.

Every batch spreads its calls over 100 tasks on one event loop, each awaiting calls on keys
drawn uniformly (seeded) from 1,000 warm keys. Baseline: ``redis.asyncio`` with one GET and one
``orjson.loads`` per call (its default pool, so up to 100 connections). The time per call here
is the inverse of the throughput; the target, >= 1.5x the baseline's throughput, is a ratio
<= 0.67: reachable only by coalescing concurrent reads into one MGET or pipeline round trip.
Peers: cashews and aiocache.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from itertools import cycle, islice
from typing import Any

import orjson

import cachedeco
from benchmarks import peers
from benchmarks.harness import Plan, Variant, measure, rows_for
from benchmarks.rig import Rig
from benchmarks.workload import loads, record

__all__ = ["NEEDS_REDIS", "run"]

NEEDS_REDIS = True
CALLERS = 100
KEYS = 1_000
TARGET = 1 / 1.5


async def _aload(key: int) -> dict[str, Any]:
    return record(key)


def concurrent_batch(loop: asyncio.AbstractEventLoop, call: Callable[[Any], Awaitable[object]],
                     args: Sequence[Any], callers: int = CALLERS) -> Callable[[int], None]:
    """A batch of ``n`` calls over ``args``, made by ``callers`` tasks at once."""

    async def run(n: int) -> None:
        todo = islice(cycle(args), n)

        async def caller() -> None:
            for arg in todo:
                await call(arg)

        await asyncio.gather(*(caller() for _ in range(callers)))

    def batch(n: int) -> None:
        loop.run_until_complete(run(n))

    return batch


def _variants(rig: Rig, args: list[int]) -> list[Variant]:
    """The raw baseline, cachedeco and the async peers, over the same warm keys."""
    aclient, prefix, loop = rig.aclient, rig.prefix, rig.loop
    rig.client.mset({f"{prefix}:raw:{k}": orjson.dumps(record(k)) for k in range(KEYS)})

    async def raw(key: int) -> Any:
        return loads(await aclient.get(f"{prefix}:raw:{key}"))

    base = Variant("raw GET + orjson.loads", concurrent_batch(loop, raw, args))
    ours = cachedeco.cached(ttl=3600, registry=rig.reg)(_aload)
    variants = [base, Variant("cachedeco", concurrent_batch(loop, ours, args), baseline=base,
                              target=TARGET, target_text=">= 1.5x throughput (<= 0.67x)")]
    if peers.has("cashews"):
        cashews = rig.peer(peers.cashews_cached(peers.cashews_cache(rig.url), _aload,
                                                key=rig.key("cashews", "{key}")))
        variants.append(Variant(cashews.name, concurrent_batch(loop, cashews.call, args),
                                baseline=base, note="pickle (its default)"))
    if peers.has("aiocache"):
        aio = rig.peer(peers.aiocache_cached(_aload, rig.key("aiocache"), rig.url))
        variants.append(Variant(aio.name, concurrent_batch(loop, aio.call, args),
                                baseline=base, note=aio.note))
    return variants


def run(redis_url: str | None, quick: bool) -> list[dict[str, Any]]:
    """Measure throughput under 100 concurrent callers, interleaved; see the docstring."""
    if redis_url is None:
        return []
    rng = random.Random(6)  # every batch starts with all keys, then uniform draws
    args = rng.sample(range(KEYS), KEYS) + rng.choices(range(KEYS), k=KEYS * 9)
    with Rig(redis_url, "concurrency") as rig:
        variants = _variants(rig, args)
        samples = measure(variants, Plan.for_mode(quick, rounds=15, batch_seconds=0.15),
                          "100 callers", warmup=CALLERS * 2 if quick else KEYS,
                          min_n=CALLERS * (2 if quick else 10))
        rows = rows_for(variants, samples)
        for row in rows:
            row["ops_per_s"] = 1e6 / row["median_us"]
        return rows
