"""The cluster backend's own mechanics on a real 3-primary Redis Cluster: the backends a URL
makes, a decoding client refused, tags sharing one slot, the two-step store and its window,
SCAN on every primary, reads that survive a stale slot map, and many asyncio tasks at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.retry import Retry

import cachedeco
from cachedeco import Registry
from cachedeco.backends.redis._async.cluster import AsyncClusterBackend
from cachedeco.backends.redis._sync.cluster import ClusterBackend
from cachedeco.backends.redis.cluster_plan import tag_plan, tag_slot_key
from cachedeco.backends.redis.ready import slow_failures
from cachedeco.errors import ConfigurationError
from tests.support.backends import Write, new_marker, new_tag_token, new_tombstone
from tests.support.commands import BOOKKEEPING, commandstats, ran
from tests.support.deployments import acluster_client, hosts
from tests.support.polling import poll


async def test_a_cluster_url_makes_the_cluster_backends(
        amake_registry: Callable[..., Registry], cluster_url: str) -> None:
    reg = amake_registry(cluster_url)
    assert isinstance(reg.slot("default").backend(), ClusterBackend)
    assert isinstance(reg.slot("default").abackend(), AsyncClusterBackend)


def test_decoding_cluster_client_is_refused(cluster_url: str) -> None:
    nodes = [ClusterNode(h, p) for h, p in hosts(cluster_url)]  # type: ignore[no-untyped-call]
    with RedisCluster(startup_nodes=nodes, decode_responses=True) as client, \
            pytest.raises(ConfigurationError, match="decode_responses"):
        Registry(client).slot("default").backend()


def test_a_ready_cluster_clients_retries_and_timeouts_are_told(cluster_url: str) -> None:
    """A sync cluster client connects when made: its nodes' settings and its own retry
    policy are what a call waits through while a node is down."""
    nodes = [ClusterNode(h, p) for h, p in hosts(cluster_url)]  # type: ignore[no-untyped-call]
    with RedisCluster(startup_nodes=nodes, socket_timeout=None,
                      retry=Retry(NoBackoff(), 2)) as slow, \
            RedisCluster(startup_nodes=nodes, socket_timeout=1.0, socket_connect_timeout=1.0,
                         retry=Retry(NoBackoff(), 0)) as bounded:
        said = slow_failures(slow)
        assert "has no socket_timeout (" in said
        assert "retries a failed command up to 2 time(s)" in said
        assert slow_failures(bounded) == ""


def test_tags_share_one_slot_and_invalidate_in_one_command_per_tag(
        make_registry: Callable[..., Registry], cluster_url: str, prefix: str,
        cluster_client: RedisCluster) -> None:
    reg = make_registry(cluster_url, on_error="raise")
    tags = [f"t{i}" for i in range(50)]
    keys = [reg.keyspace.tag(t) for t in tags]
    assert len({key_slot(tag_slot_key(k).encode()) for k in keys}) == 1
    assert len(tag_plan(tuple(keys)).groups) == 1
    before = commandstats(cluster_client)
    reg.invalidate_tags(*tags)
    assert ran(before, commandstats(cluster_client), ignore=BOOKKEEPING) == {"set": 50}
    # the tag keys are where reads look, under the prefix (ACL ~prefix:*)
    names = [tag_slot_key(k) for k in keys]
    assert all(n.startswith(f"{prefix}:") for n in names)
    assert all(v is not None for v in cluster_client.mget(names))


# --- the two-step store --------------------------------------------------------------------------


def _write(tag_keys: tuple[str, ...], state: tuple[str, tuple[str | None, ...]] | None,
           value: bytes = b"1") -> Write:
    expect, expect_tags = (None, None) if state is None else state
    return Write(marker=new_marker(), value=value, soft=2e9, delta=0.0, px=60_000,
                 tag_keys=tag_keys, expect=expect, expect_tags=expect_tags,
                 new_tag=new_tag_token(), tag_px=60_000)


def _state(backend: ClusterBackend, key: str,
           tags: tuple[str, ...]) -> tuple[str, tuple[str | None, ...]]:
    entry, tokens = backend.read(key, tags)
    return ("" if entry is None else entry.marker), tokens


def test_fill_aborts_when_a_tag_was_invalidated_before_step_one(
        make_registry: Callable[..., Registry], cluster_url: str, prefix: str) -> None:
    reg = make_registry(cluster_url)
    backend = reg.slot("default").backend()
    assert isinstance(backend, ClusterBackend)
    key, tags = f"{prefix}:k", (f"{prefix}:tag:a", f"{prefix}:fn:f")
    assert backend.write(key, _write(tags, None))  # creates the tags
    state = _state(backend, key, tags)
    backend.invalidate_tags([tags[0]], new_tag_token(True), 60_000)
    assert backend.write(key, _write(tags, state)) is False
    # a tag the fill saw missing, since created by an invalidation: abort too
    missing = (f"{prefix}:tag:new",)
    state = _state(backend, key + "2", missing)
    assert state == ("", (None,))
    backend.invalidate_tags(missing, new_tag_token(True), 60_000)
    assert backend.write(key + "2", _write(missing, state)) is False
    # ... but one created by a store is adopted
    state = _state(backend, key + "3", (f"{prefix}:tag:fresh",))
    assert backend.write(key + "4", _write((f"{prefix}:tag:fresh",), None))
    assert backend.write(key + "3", _write((f"{prefix}:tag:fresh",), state)) is True


def test_fill_aborts_when_the_entry_changed(make_registry: Callable[..., Registry],
                                           cluster_url: str, prefix: str) -> None:
    reg = make_registry(cluster_url)
    backend = reg.slot("default").backend()
    assert isinstance(backend, ClusterBackend)
    key, tags = f"{prefix}:k", (f"{prefix}:tag:a",)
    state = _state(backend, key, tags)
    assert backend.invalidate([key], new_tombstone(), 60_000) == 0
    assert backend.write(key, _write(tags, state)) is False  # a tombstone since
    state = _state(backend, key, tags)
    assert backend.write(key, _write(tags, None, b"written"))  # a write-through since
    assert backend.write(key, _write(tags, state, b"old")) is False
    entry, _ = backend.read(key, tags)
    assert entry is not None and entry.value == b"written"


def test_invalidation_between_the_steps_leaves_a_dead_entry(
        make_registry: Callable[..., Registry], cluster_url: str, prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented window: the entry is stored, but it records the old tokens: a miss."""
    reg = make_registry(cluster_url)
    backend = reg.slot("default").backend()
    assert isinstance(backend, ClusterBackend)
    key, tags = f"{prefix}:k", (f"{prefix}:tag:a", f"{prefix}:fn:f")
    store_entry = backend._store_entry

    def invalidate_then_store(**kwargs: Any) -> Any:
        backend.invalidate_tags([tags[0]], new_tag_token(True), 60_000)
        return store_entry(**kwargs)

    state = _state(backend, key, tags)
    monkeypatch.setattr(backend, "_store_entry", invalidate_then_store)
    assert backend.write(key, _write(tags, state)) is True
    entry, tokens = backend.read(key, tags)
    assert entry is not None and entry.tags != tokens  # stored, and already a miss


# --- SCAN on every primary, redirects -------------------------------------------------------------


def test_delete_matching_scans_every_primary(make_registry: Callable[..., Registry],
                                             cluster_url: str, prefix: str,
                                             cluster_client: Any) -> None:
    keys = [f"{prefix}:bulk:{i}" for i in range(1200)]
    primaries = {cluster_client.get_node_from_key(k).name for k in keys}
    assert len(primaries) == 3
    for start in range(0, len(keys), 100):
        with cluster_client.pipeline(transaction=False) as pipe:
            for k in keys[start:start + 100]:
                pipe.set(k, b"x")
            pipe.execute()
    cluster_client.set(f"{prefix}:other", b"x")
    reg = make_registry(cluster_url, on_error="raise")
    before = commandstats(cluster_client)
    assert reg.invalidate_pattern("bulk:*") == 1200
    spent = ran(before, commandstats(cluster_client), ignore=BOOKKEEPING)
    assert set(spent) == {"scan", "unlink"}
    assert cluster_client.exists(*keys[:1]) == 0
    assert cluster_client.get(f"{prefix}:other") == b"x"
    assert reg.clear() == 1


def test_read_survives_a_stale_slot_map(make_registry: Callable[..., Registry],
                                        cluster_url: str) -> None:
    """The direct read path meets MOVED; the routed path answers and repairs the map."""
    reg = make_registry(cluster_url, on_error="raise")

    @cachedeco.cached(registry=reg, tags=["t"])
    def f(x: int) -> int:
        return x

    assert f(7) == 7
    backend = reg.slot("default").backend()
    assert isinstance(backend, ClusterBackend)
    manager: Any = backend.client.nodes_manager
    slot = key_slot(f.key(7).encode())
    right = manager.slots_cache[slot]
    primaries: Any = backend.client
    wrong = next(n for n in primaries.get_primaries() if n.name != right[0].name)
    manager.slots_cache[slot] = [wrong]
    assert f(7) == 7
    assert f.stats().hits == 1
    assert manager.slots_cache[slot][0].name == right[0].name
    # the same for invalidate_tags, whose SETs also go straight to the tag slot's node
    tag_slot = key_slot(tag_slot_key(reg.keyspace.tag("t")).encode())
    right = manager.slots_cache[tag_slot]
    manager.slots_cache[tag_slot] = [
        next(n for n in primaries.get_primaries() if n.name != right[0].name)]
    reg.invalidate_tags("t")
    assert f(7) == 7
    assert f.stats().misses == 2


# --- many asyncio tasks at once ------------------------------------------------------------------


async def _many_tasks(reg: Registry, tasks: int, rounds: int = 3) -> None:
    """``tasks`` callers at once over keys in as many slots, ``rounds`` times (misses, hits,
    misses after an invalidation of half their tags): every value right, no backend fault."""
    @cachedeco.cached(registry=reg, tags=["item:{x}", "items"])
    async def f(x: int) -> dict[str, int]:
        await asyncio.sleep(0)
        return {"x": x}

    # spread over most slots: CRC16 is linear, so keys differing in a few digits share slots
    # more often than random ones would (420-500 slots of 500 over 300 random prefixes)
    assert len({key_slot(f.key(x).encode()) for x in range(tasks)}) > tasks * 0.75
    for _ in range(rounds):
        assert await asyncio.gather(*(f(x) for x in range(tasks))) == [
            {"x": x} for x in range(tasks)]
        await reg.ainvalidate_tags(*(f"item:{x}" for x in range(0, tasks, 2)))
    assert reg.stats().backend_errors == 0


async def test_many_tasks_on_a_new_registry(amake_registry: Callable[..., Registry],
                                            cluster_url: str) -> None:
    """The first calls of a registry find its client without a slot map: it learns the
    topology once, before routing anything (not a KeyError, a MOVED storm, or connections cut
    under other tasks: 'NoneType' object has no attribute 'writelines')."""
    await _many_tasks(amake_registry(cluster_url, on_error="raise", pool_timeout=60), 500)


async def test_many_tasks_on_a_ready_client(amake_registry: Callable[..., Registry],
                                            cluster_url: str) -> None:
    """The same on an asyncio cluster client handed over before its first command (its own
    pools: at most 100 connections per node, so 100 callers)."""
    client = acluster_client(cluster_url)
    try:
        await _many_tasks(amake_registry(client, on_error="raise"), 100)
    finally:
        await client.aclose()


class _ClosesOnConnect:
    """A connect callback that closes the whole client as the connection comes up."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.fired = 0

    async def close(self, connection: Any) -> None:
        if not self.fired:
            self.fired += 1
            await self.client.aclose()


async def test_a_connection_cut_under_a_task_is_a_backend_fault(
        amake_registry: Callable[..., Registry], cluster_url: str) -> None:
    """redis-py's asyncio cluster client closes itself on CLUSTERDOWN, on an uncovered slot and
    on every fifth MOVED, cutting the connections other tasks are using; one cut as it comes up
    fails inside redis-py with "'NoneType' object has no attribute 'writelines'". The caller
    sees a backend fault: the function's value (or a BackendError), never that error. redis-py
    8.2 survives the cut itself: the read then simply misses."""
    reg = amake_registry(cluster_url)

    @cachedeco.cached(registry=reg)
    async def f(x: int) -> int:
        return x

    backend = reg.slot("default").abackend()
    assert isinstance(backend, AsyncClusterBackend)
    client: Any = backend.client
    await client.initialize()
    # A key on a primary that has no connection yet (the default node ran COMMAND).
    x, node = next((x, node) for x in range(100)
                   if (node := client.nodes_manager.get_node_from_slot(
                       key_slot(f.key(x).encode()))) is not client.get_default_node())
    conn = node.acquire_connection()  # new, not connected: the read will connect it
    node.release(conn)
    cutter = _ClosesOnConnect(client)
    conn.register_connect_callback(cutter.close)
    assert await f(x) == x
    assert cutter.fired == 1
    survives_cuts = tuple(int(n) for n in redis.__version__.split(".")[:2]) >= (8, 2)
    assert reg.stats().backend_errors == (0 if survives_cuts else 1)


def test_the_near_caches_stream_asks_for_the_primaries_on_one_kept_connection(
        make_registry: Callable[..., Registry], cluster_url: str) -> None:
    """Its check every second opens no connection once the stream is up (a new connection
    per check was one connect per second per process on the cluster)."""
    reg = make_registry(cluster_url, near_cache=10, stats_interval=0)

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        return x

    def received() -> int:
        total = 0
        for host, port in hosts(cluster_url):
            with redis.Redis(host=host, port=port) as node:
                total += int(node.info("stats")["total_connections_received"])
        return total

    def near() -> bool:
        before = f.stats().near_hits
        return f(1) == 1 and f.stats().near_hits == before + 1

    poll(near, timeout=10.0)  # the stream is up, its first checks made
    time.sleep(1.2)
    before = received()
    time.sleep(2.5)  # two checks or more
    assert received() - before == len(hosts(cluster_url))  # this test's own INFO clients
