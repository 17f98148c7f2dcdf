"""Hits and invalidations on a 3-primary Redis Cluster, beside the same rows on one server.

Hit rows (sync and async): ``@cached`` with 0 and 3 tags against the raw client's ``GET`` +
``orjson.loads`` on the *same* deployment, cycling over 100 warm keys. On the cluster a hit is
a ``GET`` on the entry's node and an ``MGET`` on the tag slot's node, written together (see
``cachedeco/backends/cluster.py``): expect 2 commands per hit there, 1 on a single server
(``cmds_per_op``, counted over every primary with ``INFO commandstats``).

Invalidation rows (sync): ``invalidate_tags`` of 1 and of 3 tags and ``f.invalidate`` (one
tombstone) against a raw ``SET`` on the same deployment. Tag keys of a prefix share one slot,
so ``invalidate_tags`` reaches one node whatever the number of tags.

Target: a cachedeco hit on the cluster is at most 2 round trips (``cmds_per_op`` <= 2).

``cluster_url`` is given by the runner; when it is None and ``tools.servers`` is there,
the scenario starts a private cluster for the run and stops it after.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

import orjson
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

import cachedeco
from benchmarks.harness import Plan, Variant, async_batch, measure, rows_for, sync_batch
from benchmarks.rig import Rig
from benchmarks.servers import command_calls
from benchmarks.workload import WARM_KEYS, record

__all__ = ["NEEDS_REDIS", "run"]

NEEDS_REDIS = True
ARGS = list(range(WARM_KEYS))
TAGS = ("a:{key}", "b", "c:{key}")
TTL = 3600


def _load(key: int) -> dict[str, Any]:
    return record(key)


async def _aload(key: int) -> dict[str, Any]:
    return record(key)


def _load_tagged(key: int) -> dict[str, Any]:
    return record(key)


async def _aload_tagged(key: int) -> dict[str, Any]:
    return record(key)


def _invalidated(key: int) -> int:
    return key


# --- deployments ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _cluster(url: str | None) -> Iterator[str | None]:
    """The cluster URL given, or a private cluster's for the run (None when none can start)."""
    if url is not None:
        yield url
        return
    try:
        tools = importlib.import_module("tools.servers")
        cluster = tools.start_cluster()
    except (ImportError, RuntimeError, OSError):
        yield None
        return
    try:
        yield str(cluster.url)
    finally:
        cluster.stop()


class _Side:
    """One deployment: a registry (through a Rig), raw sync and async clients, a counter."""

    def __init__(self, label: str, url: str, rig: Rig) -> None:
        self.label = label
        self.rig = rig
        self.cluster = url.startswith("redis+cluster://")
        self.raw: Any
        self.araw: Any
        if self.cluster:
            nodes = urlsplit_hosts(url)
            self.raw = redis.cluster.RedisCluster(startup_nodes=[
                redis.cluster.ClusterNode(h, p) for h, p in nodes])  # type: ignore[no-untyped-call]
            self.araw = redis.asyncio.cluster.RedisCluster(startup_nodes=[
                redis.asyncio.cluster.ClusterNode(h, p) for h, p in nodes])
        else:
            self.raw = redis.Redis.from_url(url)
            self.araw = redis.asyncio.Redis.from_url(url)

    def commands(self) -> int:
        """Commands run so far, summed over every primary (INFO itself left out)."""
        if not self.cluster:
            return command_calls(self.raw)
        return sum(command_calls(self.raw.get_redis_connection(node))
                   for node in self.raw.get_primaries())

    def close(self) -> None:
        """Close the raw clients (the rig closes the registry)."""
        self.rig.run(self.araw.aclose())
        self.raw.close()


def urlsplit_hosts(url: str) -> list[tuple[str, int]]:
    """``redis+cluster://h1:p1,h2:p2`` as ``[(h1, p1), (h2, p2)]``."""
    netloc = url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]
    return [(item.rpartition(":")[0], int(item.rpartition(":")[2])) for item in netloc.split(",")]


# --- rows ----------------------------------------------------------------------------------------


def _hit_rows(side: _Side) -> list[Variant]:
    rig, raw, araw, label = side.rig, side.raw, side.araw, side.label
    for key in ARGS:
        raw.set(rig.key("raw", key), orjson.dumps(record(key)), ex=TTL)

    def get(key: int) -> Any:
        return orjson.loads(raw.get(rig.key("raw", key)))

    async def aget(key: int) -> Any:
        return orjson.loads(await araw.get(rig.key("raw", key)))

    base = Variant("raw GET + orjson.loads", sync_batch(get, ARGS), group=f"hit, sync, {label}")
    abase = Variant("raw GET + orjson.loads", async_batch(rig.loop, aget, ARGS),
                    group=f"hit, async, {label}")
    plain = cachedeco.cached(ttl=TTL, registry=rig.reg)(_load)
    tagged = cachedeco.cached(ttl=TTL, tags=list(TAGS), registry=rig.reg)(_load_tagged)
    aplain = cachedeco.cached(ttl=TTL, registry=rig.reg)(_aload)
    atagged = cachedeco.cached(ttl=TTL, tags=list(TAGS), registry=rig.reg)(_aload_tagged)
    return [
        base,
        Variant("cachedeco", sync_batch(plain, ARGS), group=base.group, baseline=base),
        Variant("cachedeco, 3 tags", sync_batch(tagged, ARGS), group=base.group, baseline=base),
        abase,
        Variant("cachedeco", async_batch(rig.loop, aplain, ARGS), group=abase.group,
                baseline=abase),
        Variant("cachedeco, 3 tags", async_batch(rig.loop, atagged, ARGS), group=abase.group,
                baseline=abase),
    ]


def _invalidation_rows(side: _Side) -> list[Variant]:
    rig, raw = side.rig, side.raw
    fn = cachedeco.cached(ttl=TTL, tags=["x:{key}"], registry=rig.reg)(_invalidated)
    for key in ARGS:
        fn(key)
    one = ["x:1"]
    three = ["x:1", "x:2", "x:3"]

    def set_one(key: int) -> None:
        raw.set(rig.key("rawset", key), b"1", px=60_000)

    base = Variant("raw SET", sync_batch(set_one, ARGS), group=f"invalidate, {side.label}")
    return [
        base,
        Variant("invalidate_tags, 1 tag", sync_batch(lambda _: rig.reg.invalidate_tags(*one),
                                                     ARGS), group=base.group, baseline=base),
        Variant("invalidate_tags, 3 tags", sync_batch(lambda _: rig.reg.invalidate_tags(*three),
                                                      ARGS), group=base.group, baseline=base),
        Variant("f.invalidate (1 entry)", sync_batch(fn.invalidate, ARGS), group=base.group,
                baseline=base),
    ]


def _commands(side: _Side, variants: list[Variant], rows: list[dict[str, Any]], n: int) -> None:
    """Commands per operation of every row (server-side, so nothing else may run meanwhile)."""
    for variant, row in zip(variants, rows, strict=True):
        before = side.commands()
        variant.batch(n)
        row["cmds_per_op"] = (side.commands() - before) / n


def _measure(sides: list[_Side], quick: bool) -> list[dict[str, Any]]:
    per_side = [(side, _hit_rows(side) + _invalidation_rows(side)) for side in sides]
    variants = [v for _, vs in per_side for v in vs]
    samples = measure(variants, Plan.for_mode(quick), "cluster", warmup=len(ARGS))
    rows = rows_for(variants, samples)
    start = 0
    for side, vs in per_side:
        _commands(side, vs, rows[start:start + len(vs)], len(ARGS) if quick else 5 * len(ARGS))
        start += len(vs)
    for row in rows:
        row.setdefault("scenario", "cluster")
        row["name"] = f"{row['group']}: {row['row']}"
        if row["group"].startswith("hit") and row["group"].endswith("cluster") \
                and row["row"].startswith("cachedeco"):  # the entry's node and the tags' node
            row.update(target="<= 2 round trips per hit", met=row["cmds_per_op"] <= 2.0,
                       result=f"{row['cmds_per_op']:.2f} commands per hit, sent together")
    return rows


def run(redis_url: str | None, quick: bool, cluster_url: str | None = None
        ) -> list[dict[str, Any]]:
    """Measure hit and invalidation rows on the cluster (and on ``redis_url`` beside it)."""
    with _cluster(cluster_url) as url:
        if url is None:
            return []
        with contextlib.ExitStack() as stack:
            sides: list[_Side] = []
            targets: list[tuple[str, str]] = [("cluster", url)]
            if redis_url is not None:
                targets.append(("single", redis_url))
            for label, target in targets:
                rig = stack.enter_context(Rig(target, f"cluster-{label}"))
                side = _Side(label, target, rig)
                stack.callback(side.close)
                sides.append(side)
            return _measure(sides, quick)

