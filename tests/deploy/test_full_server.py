"""A server that is full and evicts nothing (``maxmemory`` with ``noeviction``, the policy the
docs advise for write-behind queues) refuses every write, an invalidation's tombstones and
tag tokens included, but not deletes. A writer's changes must still reach every reader at
once: their keys are unlinked, and auto-recovery writes the tombstones and tokens once the
server takes writes again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from cachedeco import Registry
from cachedeco.backends.redis.cluster_plan import tag_slot_key
from tests.support.commands import sweep_prefix
from tests.support.near import silenced_stream, warm
from tests.support.polling import poll
from tools.servers import start_cluster, start_single


@dataclass
class Full:
    """A deployment that fills up: its URL, an admin client, and how to fill it."""

    url: str
    admin: Any
    fill: Callable[[], None]


@pytest.fixture(params=["redis", "cluster"])
def full(request: pytest.FixtureRequest) -> Iterator[Full]:
    if request.param == "redis":
        server = start_single(maxmemory="3mb", policy="noeviction")
        with redis.Redis.from_url(server.url) as admin:
            yield Full(server.url, admin, lambda: _fill(admin, 1, [admin]))
        server.process.stop()
        return
    cluster = start_cluster()
    try:
        for node in cluster.processes:  # room for the test's keys, then full
            with node.client() as client:
                used = int(client.info("memory")["used_memory"])
                client.config_set("maxmemory", used + 600_000)
                client.config_set("maxmemory-policy", "noeviction")
        host, port = cluster.startup_nodes[0]
        with RedisCluster(host=host, port=port) as admin, contextlib.ExitStack() as nodes:
            primaries = [nodes.enter_context(node.client()) for node in cluster.processes]
            yield Full(cluster.url, admin, lambda: _fill(admin, len(primaries), primaries))
    finally:
        cluster.stop()


def _fill(admin: Any, nodes: int, primaries: list[Any]) -> None:
    """Write 8 KB keys until every primary has refused one, then set each primary's limit
    100 KB below what it uses: a server just at its limit takes a write again as soon as its
    memory dips (client buffers freed), and would let a change through that the test needs
    refused. Sweeping the filler keys (600 KB or more a primary) makes room again."""
    refused: set[int] = set()
    for i in range(50_000):
        try:
            admin.set(f"filler:{i}", b"x" * 8192)
        except redis.exceptions.OutOfMemoryError:
            refused.add(admin.keyslot(f"filler:{i}") if nodes > 1 else 0)
            owners = {_owner(admin, slot) for slot in refused} if nodes > 1 else refused
            if len(owners) == nodes:
                for client in primaries:
                    used = int(client.info("memory")["used_memory"])
                    client.config_set("maxmemory", used - 100_000)
                return
    raise AssertionError("the deployment never filled up")


def _owner(admin: RedisCluster, slot: int) -> str:
    return str(admin.nodes_manager.get_node_from_slot(slot).name)


def test_changes_reach_readers_while_the_server_is_full(
        make_registry: Callable[..., Registry], full: Full) -> None:
    writer = make_registry(full.url, stats_interval=0)
    reader = make_registry(full.url, stats_interval=0)  # another process's registry
    db = {1: "v1", 2: "v1", 3: "v1"}
    loads: list[int] = []

    @writer.cached(ttl=600, key="p:{x}", tags=["p:{x}"])
    def w_read(x: int) -> str:
        return db[x]

    @reader.cached(ttl=600, key="p:{x}", tags=["p:{x}"])
    def read(x: int) -> str:
        loads.append(x)
        return db[x]

    @writer.write_through(w_read)
    def write(x: int, value: str) -> str:
        db[x] = value
        return value

    @reader.cached(ttl=600, key="p:{x}", tags=["p:{x}"])
    async def aread(x: int) -> str:
        return db[x]

    @writer.cached(ttl=600, key="p:{x}", tags=["p:{x}"])
    async def aw_read(x: int) -> str:
        return db[x]

    @writer.write_through(aw_read)
    async def awrite(x: int, value: str) -> str:
        db[x] = value
        return value

    assert [read(x) for x in (1, 2, 3, 1, 2, 3)] == ["v1"] * 6 and loads == [1, 2, 3]
    full.fill()
    db[1] = "v2"
    writer.invalidate_tags("p:1")  # a tag's new token: refused
    db[2] = "v2"
    assert w_read.invalidate(2) is False  # a tombstone: refused (kept for recovery)
    write(3, "v2")  # the store and its tombstone: refused
    assert [read(x) for x in (1, 2, 3)] == ["v2"] * 3  # at once, in the other process
    assert asyncio.run(aread(1)) == "v2"
    assert writer.stats().recoveries_pending == 3
    sweep_prefix(full.admin, "filler")  # room again: recovery lands
    poll(lambda: writer.stats().recoveries_pending == 0, timeout=10)
    tag = writer.keyspace.tag("p:1")
    token = full.admin.get(tag_slot_key(tag) if isinstance(full.admin, RedisCluster) else tag)
    assert token is not None and token.startswith(b"i")  # the invalidation's own token
    loads.clear()
    assert [read(x) for x in (1, 2, 3, 1, 2, 3)] == ["v2"] * 6
    assert loads == [1, 2, 3]  # cached again

    async def changes() -> None:  # the same changes from asyncio callers
        assert await awrite(1, "v3") == "v3"
        db[2] = "v3"
        assert await aw_read.invalidate(2) is False

    full.fill()
    asyncio.run(changes())
    assert [read(x) for x in (1, 2)] == ["v3"] * 2
    # the two, and the changes of the first part again (landed within the seconds an
    # outage's replay reaches: the server may have lost them)
    assert writer.stats().recoveries_pending >= 2
    sweep_prefix(full.admin, "filler")
    poll(lambda: writer.stats().recoveries_pending == 0, timeout=10)
    loads.clear()
    assert [read(x) for x in (1, 2, 1, 2)] == ["v3"] * 4 and loads == [1, 2]


@pytest.mark.parametrize("full", ["redis"], indirect=True)
def test_the_writer_never_serves_near_what_its_refused_change_undoes(
        make_registry: Callable[..., Registry], full: Full) -> None:
    """Its change stream stays up (the server answers), but a refused change never reaches
    Redis to be reported. The first refusal opens the circuit breaker, so the next change is
    kept without being sent: the writer's own near cache must still drop the entries it
    concerns when it keeps it, and serve them again once it lands."""
    writer = make_registry(full.url, stats_interval=0, near_cache=100, breaker_threshold=1,
                           breaker_cooldown=60)
    db = {1: "v1", 2: "v1"}

    @writer.cached(ttl=600, key="p:{x}", tags=["p:{x}"])
    def read(x: int) -> str:
        return db[x]

    @writer.write_through(read)
    def write(x: int, value: str) -> str:
        db[x] = value
        return value

    for x in (1, 2):
        warm(lambda x=x: read(x), read.stats)
    full.fill()
    with silenced_stream(writer):
        write(1, "v2")  # the store and its tombstone: refused, kept; the breaker opens
        db[2] = "v2"
        writer.invalidate_tags("p:2")  # kept, not sent
        assert writer.stats().recoveries_pending >= 2
        assert [read(1), read(2)] == ["v2", "v2"]
    sweep_prefix(full.admin, "filler")
    poll(lambda: writer.stats().recoveries_pending == 0, timeout=10)
    warm(lambda: read(1), read.stats)
    assert [read(1), read(2)] == ["v2", "v2"]
