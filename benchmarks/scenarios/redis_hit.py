"""Redis hit, sync and async, with 0 and 3 tags: cachedeco against a raw client.

Baseline: ``orjson.loads(redis.Redis.get(key))`` (sync) and the same with ``redis.asyncio``,
on the same server, with the same ~300-byte JSON record, cycling over 100 warm keys. Targets:
<= 1.10x the baseline without tags, <= 1.20x with 3 tags and one round trip per hit (commands
per hit counted with ``INFO commandstats`` around a separate batch). Peers: dogpile.cache
(sync), cashews and aiocache (async), cashews with 3 tags.
"""

from __future__ import annotations

from typing import Any

import orjson

import cachedeco
from benchmarks import peers
from benchmarks.harness import Plan, Variant, async_batch, measure, rows_for, sync_batch
from benchmarks.rig import Rig
from benchmarks.servers import commands_per_op
from benchmarks.workload import WARM_KEYS, loads, record

__all__ = ["NEEDS_REDIS", "run"]

NEEDS_REDIS = True
ARGS = list(range(WARM_KEYS))
TAGS = ("a:{key}", "b", "c:{key}")


def _load(key: int) -> dict[str, Any]:
    return record(key)


async def _aload(key: int) -> dict[str, Any]:
    return record(key)


# The tagged rows cache distinct functions: a key names its function, and two decorations of
# one function would share (and keep overwriting) each other's entries.
def _load_tagged(key: int) -> dict[str, Any]:
    return record(key)


async def _aload_tagged(key: int) -> dict[str, Any]:
    return record(key)


def _raw(rig: Rig) -> tuple[Variant, Variant]:
    """The baselines: one GET and one ``orjson.loads`` per hit, sync and async."""
    client, aclient, prefix = rig.client, rig.aclient, rig.prefix
    with client.pipeline(transaction=False) as pipe:
        for key in ARGS:
            pipe.set(f"{prefix}:raw:{key}", orjson.dumps(record(key)), ex=peers.TTL)
        pipe.execute()

    def get(key: int) -> Any:
        return loads(client.get(f"{prefix}:raw:{key}"))

    async def aget(key: int) -> Any:
        return loads(await aclient.get(f"{prefix}:raw:{key}"))

    return (Variant("raw GET + orjson.loads", sync_batch(get, ARGS), group="sync"),
            Variant("raw GET + orjson.loads", async_batch(rig.loop, aget, ARGS), group="async"))


def _sync_rows(rig: Rig, base: Variant) -> list[Variant]:
    """cachedeco with 0 and 3 tags and dogpile.cache, sync."""
    plain = cachedeco.cached(ttl=3600, registry=rig.reg)(_load)
    tagged = cachedeco.cached(ttl=3600, tags=list(TAGS), registry=rig.reg)(_load_tagged)
    rows = [Variant("cachedeco", sync_batch(plain, ARGS), group="sync", baseline=base,
                    target=1.10),
            Variant("cachedeco, 3 tags", sync_batch(tagged, ARGS), group="sync, 3 tags",
                    baseline=base, target=1.20, target_text="<= 1.20x, 1 round trip")]
    if peers.has("dogpile.cache"):
        dog = rig.peer(peers.dogpile_cached(_load, rig.prefix, rig.url))
        rows.append(Variant(dog.name, sync_batch(dog.call, ARGS), group="sync", baseline=base,
                            note=dog.note))
    return rows


def _async_rows(rig: Rig, base: Variant) -> list[Variant]:
    """cachedeco with 0 and 3 tags, cashews (0 and 3 tags) and aiocache, async."""
    plain = cachedeco.cached(ttl=3600, registry=rig.reg)(_aload)
    tagged = cachedeco.cached(ttl=3600, tags=list(TAGS), registry=rig.reg)(_aload_tagged)
    loop = rig.loop
    rows = [Variant("cachedeco", async_batch(loop, plain, ARGS), group="async", baseline=base,
                    target=1.10),
            Variant("cachedeco, 3 tags", async_batch(loop, tagged, ARGS),
                    group="async, 3 tags", baseline=base, target=1.20,
                    target_text="<= 1.20x, 1 round trip")]
    if peers.has("cashews"):
        cache = peers.cashews_cache(rig.url)
        cashews = rig.peer(peers.cashews_cached(cache, _aload, key=rig.key("cashews", "{key}")))
        tag_templates = [rig.key("cashews-tag", t) for t in TAGS]
        tagged_peer = rig.peer(peers.cashews_cached(
            cache, _aload, key=rig.key("cashews-t", "{key}"), tags=tag_templates, close=False))

        async def drop_tags() -> None:  # cashews keeps its tag sets outside our prefix
            await cache.delete_tags(*[t.format(key=k) for t in tag_templates for k in ARGS])

        rig.cleanups.append(drop_tags)
        rows += [Variant(cashews.name, async_batch(loop, cashews.call, ARGS), group="async",
                         baseline=base, note="pickle (its default)"),
                 Variant(tagged_peer.name, async_batch(loop, tagged_peer.call, ARGS),
                         group="async, 3 tags", baseline=base, note="pickle (its default)")]
    if peers.has("aiocache"):
        aio = rig.peer(peers.aiocache_cached(_aload, rig.key("aiocache"), rig.url))
        rows.append(Variant(aio.name, async_batch(loop, aio.call, ARGS), group="async",
                            baseline=base, note=aio.note))
    return rows


def _commands(rig: Rig, variants: list[Variant], rows: list[dict[str, Any]], n: int) -> None:
    """Add commands per hit to every row; a 3-tag row meets its target only at 1 per hit."""
    for variant, row in zip(variants, rows, strict=True):
        row["cmds_per_op"] = commands_per_op(rig.client, variant.batch, n)
        if variant.target_text.endswith("round trip") and row.get("met") is not None:
            row["met"] = bool(row["met"]) and row["cmds_per_op"] <= 1.0


def run(redis_url: str | None, quick: bool) -> list[dict[str, Any]]:
    """Measure warm Redis hits of every row, interleaved; see the module docstring."""
    if redis_url is None:
        return []
    with Rig(redis_url, "redis_hit") as rig:
        base_sync, base_async = _raw(rig)
        variants = [base_sync, *_sync_rows(rig, base_sync),
                    base_async, *_async_rows(rig, base_async)]
        variants.sort(key=lambda v: ("async" in v.group, "tags" in v.group))
        samples = measure(variants, Plan.for_mode(quick), "hits", warmup=len(ARGS))
        rows = rows_for(variants, samples)
        _commands(rig, variants, rows, len(ARGS) if quick else 5 * len(ARGS))
        return rows
