"""Redis hit, sync and async, with 0 and 3 tags: cachedeco against a raw client.

Baseline: ``orjson.loads(redis.Redis.get(key))`` (sync) and the same with ``redis.asyncio``,
on the same server, with the same ~300-byte JSON record, cycling over 100 warm keys. Targets:
<= 1.10x the baseline without tags, <= 1.20x with 3 tags and one round trip per hit (commands
per hit counted with ``INFO commandstats`` around a separate batch). Peers: dogpile.cache
(sync), cashews and aiocache (async), cashews with 3 tags.

Sensitive rows: the same hit with ``sensitive=True`` (keyed-hash key, AES-GCM
value); target <= +5 µs CPU over the plain cachedeco hit of its group. A few µs out of a
~100 µs hit whose CPU time swings by tens of µs from one batch to the next on a busy machine
cannot be read from the interleaved rounds (plain and sensitive batches there lie up to a
round apart), so after them the two rows run again in back-to-back pairs of short batches of
real hits (plain then sensitive, or the reverse, alternately), and the row's figure is the
median of the per-pair CPU differences; its p10-p90, which the verdict uses, is the 80%
interval of that median over bootstrap resamples of the pairs (the per-pair spread is in the
note). The registry has an ``encryption_key=``, which the plain rows do not use: they show
that configuring one costs other functions nothing. A process decrypts a stored value once
and remembers the key names of int and str arguments, so these rows, which read 100 entries
again and again, show a hot entry's cost; one more sync row reads 5,000 entries in turn, more
than those memos hold, so that every hit hashes its key and decrypts, beside a plain row
over 5,000 entries read the same way (its note is its CPU over that row per interleaved
round). One more sync row reads, after a
rotation (``encryption_key=[new, old]``), entries still stored under the older key's names:
a miss under the current name, then a hit under the older one (2 round trips); its note is
its CPU over plain per interleaved round.
"""

from __future__ import annotations

import gc
import itertools
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

import cachedeco
from benchmarks import peers, verdicts
from benchmarks.harness import (
    Plan,
    Samples,
    Variant,
    async_batch,
    measure,
    quantiles,
    rows_for,
    sync_batch,
)
from benchmarks.rig import Rig
from benchmarks.servers import commands_per_op
from benchmarks.workload import WARM_KEYS, loads, record

__all__ = ["NEEDS_REDIS", "run"]

NEEDS_REDIS = True
ARGS = list(range(WARM_KEYS))
TAGS = ("a:{key}", "b", "c:{key}")
KEY, NEW_KEY = "benchmark-key-" + "k" * 32, "benchmark-new-key-" + "n" * 32
SENSITIVE_US = 5.0  # the sensitive rows' target: CPU over the plain hit
SENSITIVE = "cachedeco, sensitive"
PAIRS, QUICK_PAIRS = 240, 40  # back-to-back pairs for a sensitive row's CPU over plain
RESAMPLES = 2000  # bootstrap resamples of the pairs for the median's interval
SPREAD = list(range(5000))  # more than the 4,096 remembered key names, 512 decrypted values
SPREAD_PLAIN = f"cachedeco, {len(SPREAD):,} entries"  # the spread sensitive row's plain twin
SPREAD_SENSITIVE = f"{SENSITIVE}, {len(SPREAD):,} entries (beyond its memos)"


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


def _load_sensitive(key: int) -> dict[str, Any]:
    return record(key)


async def _aload_sensitive(key: int) -> dict[str, Any]:
    return record(key)


def _load_rotated(key: int) -> dict[str, Any]:
    return record(key)


def _load_spread(key: int) -> dict[str, Any]:
    return record(key)


def _load_spread_plain(key: int) -> dict[str, Any]:
    return record(key)


def _onward_batch(call: Callable[[int], object], args: list[int]) -> Callable[[int], None]:
    """Like ``sync_batch``, but each batch goes on where the last one stopped: over more
    entries than a memo holds, no read finds its entry remembered."""
    onward = itertools.cycle(args)

    def batch(n: int) -> None:
        for arg in itertools.islice(onward, n):
            call(arg)

    return batch


def _sensitive_rows(rig: Rig, base_sync: Variant, base_async: Variant) -> list[Variant]:
    """sensitive=True hits, sync and async; sync hits over more entries than the memos of
    key names and decrypted values hold; sync hits under an older key's names."""
    sync = cachedeco.cached(ttl=3600, sensitive=True, registry=rig.reg)(_load_sensitive)
    asyn = cachedeco.cached(ttl=3600, sensitive=True, registry=rig.reg)(_aload_sensitive)
    written = cachedeco.cached(ttl=3600, sensitive=True, registry=rig.reg)(_load_rotated)
    for arg in ARGS:
        written(arg)  # stored under KEY's names; read below with [NEW_KEY, KEY]
    spread = cachedeco.cached(ttl=3600, sensitive=True, registry=rig.reg)(_load_spread)
    spread_plain = cachedeco.cached(ttl=3600, registry=rig.reg)(_load_spread_plain)
    for arg in SPREAD:
        spread(arg)
        spread_plain(arg)
    rotated_reg = cachedeco.Registry(rig.url or "", prefix=rig.prefix,
                                     encryption_key=[NEW_KEY, KEY])
    rig.cleanups.append(rotated_reg.aclose)
    rotated = cachedeco.cached(ttl=3600, sensitive=True, registry=rotated_reg)(_load_rotated)
    target = f"<= +{SENSITIVE_US:.0f} µs CPU over plain"
    return [Variant(SENSITIVE, sync_batch(sync, ARGS), group="sync", baseline=base_sync,
                    target_text=target),
            Variant(SENSITIVE, async_batch(rig.loop, asyn, ARGS), group="async",
                    baseline=base_async, target_text=target),
            Variant(SPREAD_PLAIN, _onward_batch(spread_plain, SPREAD), group="sync",
                    baseline=base_sync, note="read in turn"),
            Variant(SPREAD_SENSITIVE, _onward_batch(spread, SPREAD), group="sync",
                    baseline=base_sync, note="every hit hashes its key and decrypts"),
            Variant(f"{SENSITIVE}, under the older key (rotation)", sync_batch(rotated, ARGS),
                    group="sync", baseline=base_sync, note="a miss, then a hit: 2 reads")]


def _cpu(batch: Callable[[int], object], n: int) -> float:
    """CPU seconds per operation of one batch of ``n``."""
    start = time.process_time_ns()
    batch(n)
    return (time.process_time_ns() - start) / n / 1e9


def _paired(mine: Variant, plain: Variant, n: int, pairs: int) -> list[float]:
    """Per-pair CPU seconds per hit of ``mine`` over ``plain``: ``pairs`` back-to-back pairs
    of batches of ``n`` real hits, the order alternating, so a slow drift hits both alike."""
    diffs = []
    gc.collect()
    for i in range(pairs):
        if i % 2:
            theirs = _cpu(plain.batch, n)
            diffs.append(_cpu(mine.batch, n) - theirs)
        else:
            over = _cpu(mine.batch, n)
            diffs.append(over - _cpu(plain.batch, n))
    return diffs


def median_interval(values: list[float], resamples: int = RESAMPLES) -> tuple[float, float]:
    """The 80% interval (p10, p90) of the median of ``values`` over bootstrap resamples
    (seeded: a run is reproducible from its samples)."""
    draw = random.Random(0).choices
    medians = [statistics.median(draw(values, k=len(values))) for _ in range(resamples)]
    low, _, high = quantiles(medians)
    return low, high


def _judge_sensitive(variants: list[Variant], rows: list[dict[str, Any]],
                     samples: dict[Variant, Samples], quick: bool) -> None:
    """Give each sensitive row its CPU over the plain cachedeco row of its group: for a row
    with a target, from back-to-back pairs (see the module docstring), judged on the 80%
    interval of their median; for the others, per interleaved round (the row over 5,000
    entries against its plain twin)."""
    plain = {v.group: v for v in variants if v.name == "cachedeco"}
    spread_plain = next(v for v in variants if v.name == SPREAD_PLAIN)
    for variant, row in zip(variants, rows, strict=True):
        if not variant.name.startswith(SENSITIVE):
            continue
        spread = variant.name == SPREAD_SENSITIVE
        base = spread_plain if spread else plain[variant.group]
        if not variant.target_text:
            per_round = [a - b for a, b in zip(samples[variant].cpu, samples[base].cpu,
                                               strict=True)]
            row["note"] = (f"{statistics.median(per_round) * 1e6:+.1f} µs CPU over "
                           f"{'the plain row over the same entries' if spread else 'plain'}"
                           + (f"; {variant.note}" if variant.note else ""))
            continue
        n = max(1, samples[base].n // 3)
        diffs = _paired(variant, base, n, QUICK_PAIRS if quick else PAIRS)
        low, high = (d * 1e6 for d in median_interval(diffs))
        p10, over, p90 = (d * 1e6 for d in quantiles(diffs))
        row.update(cpu_over_plain_us=over, cpu_over_plain_pairs=len(diffs),
                   note=f"{over:+.1f} µs CPU over plain, median of {len(diffs)} back-to-back "
                        f"pairs of {n} hits (per pair p10-p90 {p10:+.1f} to {p90:+.1f} µs)",
                   target=variant.target_text, met=over <= SENSITIVE_US,
                   verdict=verdicts.judge(low, high, SENSITIVE_US),
                   result=f"{over:+.1f} µs CPU over plain (80% interval of the median "
                          f"{low:+.1f} to {high:+.1f} µs)")


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
            if row["cmds_per_op"] > 1.0:
                row["verdict"] = verdicts.NOT_MET


def run(redis_url: str | None, quick: bool) -> list[dict[str, Any]]:
    """Measure warm Redis hits of every row, interleaved; see the module docstring."""
    if redis_url is None:
        return []
    with Rig(redis_url, "redis_hit", encryption_key=KEY) as rig:
        base_sync, base_async = _raw(rig)
        variants = [base_sync, *_sync_rows(rig, base_sync),
                    base_async, *_async_rows(rig, base_async),
                    *_sensitive_rows(rig, base_sync, base_async)]
        variants.sort(key=lambda v: ("async" in v.group, "tags" in v.group))
        samples = measure(variants, Plan.for_mode(quick), "hits", warmup=len(ARGS))
        rows = rows_for(variants, samples)
        _judge_sensitive(variants, rows, samples, quick)
        _commands(rig, variants, rows, len(ARGS) if quick else 5 * len(ARGS))
        return rows
