"""Near cache hits, sync and async, 0 and 3 tags, vs a cachetools hit; and a write-heavy mix.

Hits: ``near_cache=1000`` on the run's Redis, every call a hit on one of 100 warm keys served
from process memory. Baseline: ``cachetools.cached(LRUCache)`` (sync) and an ``LRUCache``
looked up in an ``async def`` (async) on the same function and record. Target: <= 1.5x the
baseline and 0 Redis commands per hit (``INFO commandstats`` around a separate batch, which
also counts the change stream's pings: 4 a second). The plain Redis hit (no near cache) is
shown for scale, against the same baseline.

Write-heavy: a stream over 10,000 keys (1,500 with ``--quick``), all stored first, where one
call in ten is a ``@write_through`` writer (a store, which every near cache drops) and nine
are reads; the near cache holds 1,000 values, so it mostly misses and its cost shows: a
ticket per read, an install (and an eviction) per Redis hit, a drop per write. Target: <=
1.10x the same stream on a registry without a near cache.
"""

from __future__ import annotations

import random
import time
from itertools import cycle, islice
from typing import Any

import cachedeco
from benchmarks import peers, verdicts
from benchmarks.harness import Plan, Variant, async_batch, measure, rows_for, sync_batch
from benchmarks.rig import Rig
from benchmarks.servers import commands_per_op
from benchmarks.workload import WARM_KEYS, record

__all__ = ["NEEDS_REDIS", "run"]

NEEDS_REDIS = True
ARGS = list(range(WARM_KEYS))
TAGS = ("a:{key}", "b", "c:{key}")
HIT_TARGET = 1.5
MIX_TARGET = 1.10
MIX_KEYS = {False: 10_000, True: 1_500}  # full, --quick
NEAR = 1_000  # near_cache: room for the hit rows' keys, a fraction of the mix's


def _load(key: int) -> dict[str, Any]:
    return record(key)


async def _aload(key: int) -> dict[str, Any]:
    return record(key)


# One function per row: a key names its function, and rows must not share entries.
def _load_tagged(key: int) -> dict[str, Any]:
    return record(key)


async def _aload_tagged(key: int) -> dict[str, Any]:
    return record(key)


def _load_far(key: int) -> dict[str, Any]:
    return record(key)


def _settle(call: Any, loop: Any = None) -> None:
    """Read every key until each is served near (the change stream connects in the
    background; a value is kept near from its second read on)."""
    deadline = time.monotonic() + 10
    while True:
        before = call.stats().near_hits
        for arg in ARGS:
            if loop is None:
                call(arg)
            else:
                loop.run_until_complete(call(arg))
        if call.stats().near_hits - before == len(ARGS) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _hit_rows(rig: Rig) -> list[Variant]:
    """The baselines, the near hits (0 and 3 tags) and, for scale, a plain Redis hit."""
    target = f"<= {HIT_TARGET}x, 0 commands"
    sync_base = Variant("cachetools.cached", sync_batch(peers.cachetools_cached(_load).call,
                                                        ARGS), group="sync")
    memo = peers.cachetools_async(_aload)
    async_base = Variant(memo.name, async_batch(rig.loop, memo.call, ARGS), group="async")
    near = cachedeco.cached(ttl=3600, registry=rig.reg)(_load)
    tagged = cachedeco.cached(ttl=3600, tags=list(TAGS), registry=rig.reg)(_load_tagged)
    anear = cachedeco.cached(ttl=3600, registry=rig.reg)(_aload)
    atagged = cachedeco.cached(ttl=3600, tags=list(TAGS), registry=rig.reg)(_aload_tagged)
    far = cachedeco.cached(ttl=3600, registry=rig.reg, near=False)(_load_far)
    for call in (near, tagged, far):
        _settle(call)
    for acall in (anear, atagged):
        _settle(acall, rig.loop)
    return [
        sync_base,
        Variant("cachedeco near hit", sync_batch(near, ARGS), group="sync", baseline=sync_base,
                target=HIT_TARGET, target_text=target),
        Variant("cachedeco near hit, 3 tags", sync_batch(tagged, ARGS), group="sync",
                baseline=sync_base, target=HIT_TARGET, target_text=target),
        Variant("cachedeco Redis hit (near=False)", sync_batch(far, ARGS), group="sync",
                baseline=sync_base, note="for scale: one round trip"),
        async_base,
        Variant("cachedeco near hit", async_batch(rig.loop, anear, ARGS), group="async",
                baseline=async_base, target=HIT_TARGET, target_text=target),
        Variant("cachedeco near hit, 3 tags", async_batch(rig.loop, atagged, ARGS),
                group="async", baseline=async_base, target=HIT_TARGET, target_text=target),
    ]


def _mix(reg: cachedeco.Registry, name: str, keys: int) -> Any:
    """A batch of the write-heavy stream on ``reg`` (1 write in 10, uniform over ``keys``
    keys, every entry stored first), continuing where the previous batch stopped."""

    def read(key: int) -> dict[str, Any]:
        return record(key)

    read.__qualname__ = f"mix_{name}"  # its own key family per registry
    cached = cachedeco.cached(ttl=3600, tags=["item:{key}"], registry=reg)(read)

    @cachedeco.write_through(cached, registry=reg)
    def write(key: int) -> dict[str, Any]:
        return record(key)

    for key in range(keys):
        write(key)
    rng = random.Random(11)
    stream = cycle([(rng.random() < 0.1, rng.randrange(keys)) for _ in range(50_000)])

    def batch(n: int) -> None:
        for is_write, key in islice(stream, n):
            (write if is_write else cached)(key)

    return batch


def _mix_rows(rig: Rig, plain: cachedeco.Registry, keys: int) -> list[Variant]:
    group = f"write-heavy: 10% writes, {keys:,} keys, near_cache={NEAR:,}"
    base = Variant("no near cache", _mix(plain, "plain", keys), group=group)
    return [base, Variant("near_cache on", _mix(rig.reg, "near", keys), group=group,
                          baseline=base, target=MIX_TARGET,
                          note="mostly near misses: Redis hits, installs, drops")]


def run(redis_url: str | None, quick: bool) -> list[dict[str, Any]]:
    """Measure the near hits and the write-heavy mix, interleaved; see the module docstring."""
    if redis_url is None or not peers.has("cachetools"):
        return []
    with Rig(redis_url, "near", near_cache=NEAR) as rig:
        plain = cachedeco.Registry(redis_url, prefix=rig.prefix, stats_interval=0)
        rig.cleanups.append(plain.aclose)
        hits = _hit_rows(rig)
        samples = measure(hits, Plan.for_mode(quick, batch_seconds=0.02), "near hits",
                          warmup=len(ARGS))
        rows = rows_for(hits, samples)
        for variant, row in zip(hits, rows, strict=True):
            if variant.baseline is None:
                continue
            row["cmds_per_op"] = commands_per_op(rig.client, variant.batch,
                                                 len(ARGS) if quick else 5 * len(ARGS))
            if variant.target is not None:
                row["met"] = bool(row.get("met")) and row["cmds_per_op"] < 0.01
                if row["cmds_per_op"] >= 0.01:
                    row["verdict"] = verdicts.NOT_MET
        mix = _mix_rows(rig, plain, MIX_KEYS[quick])
        mix_samples = measure(mix, Plan.for_mode(quick), "write-heavy")
        mix_rows = rows_for(mix, mix_samples)
        for variant, row in zip(mix, mix_rows, strict=True):
            row["cmds_per_op"] = commands_per_op(rig.client, variant.batch,
                                                 100 if quick else 500)
        return rows + mix_rows
