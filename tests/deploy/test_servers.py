"""The test deployments and tools.servers: the shared deployments answer and are spread as
promised, the fixtures clean up after a test, and a private server or cluster can be broken
the ways a fault test needs (SIGSTOP, kill -9 and restart with or without an AOF, maxmemory
with eviction, a cluster primary killed and its replica promoted, a Sentinel primary killed
and a replica in sync again once it rejoins)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from redis.cluster import RedisCluster

from tests.support.commands import acommandstats, commandstats
from tests.support.deployments import cluster_client, hosts, sentinel_primary
from tools.servers import SentinelSetup, Server, start_cluster, start_single
from tools.servers.process import RedisStartError


def test_single_server_answers_ping(redis_client: redis.Redis) -> None:
    assert redis_client.ping() is True
    assert redis_client.config_get("save") == {"save": ""}
    assert redis_client.config_get("appendonly") == {"appendonly": "no"}


def test_commandstats_counts_calls(redis_client: redis.Redis, prefix: str) -> None:
    before = commandstats(redis_client)
    redis_client.get(f"{prefix}:missing")
    redis_client.mget([f"{prefix}:a", f"{prefix}:b"])
    after = commandstats(redis_client)
    assert after.get("get", 0) - before.get("get", 0) == 1
    assert after.get("mget", 0) - before.get("mget", 0) == 1


async def test_async_client_and_commandstats(
    aredis_client: redis.asyncio.Redis, prefix: str
) -> None:
    before = await acommandstats(aredis_client)
    await aredis_client.set(f"{prefix}:k", b"v")
    assert await aredis_client.get(f"{prefix}:k") == b"v"
    after = await acommandstats(aredis_client)
    assert after["set"] - before.get("set", 0) == 1


def test_cluster_set_get_across_slots(cluster_client: RedisCluster, prefix: str) -> None:
    keys = [f"{prefix}:{i}" for i in range(40)]
    for i, key in enumerate(keys):
        assert cluster_client.set(key, str(i).encode())
    assert [cluster_client.get(key) for key in keys] == [str(i).encode() for i in range(40)]
    owners = {cluster_client.get_node_from_key(key).name for key in keys}
    assert len(owners) == 3  # the keys really are spread over every primary
    assert len(cluster_client.get_primaries()) == 3


def test_sentinel_reports_the_primary(
    sentinel_url: str, sentinel_ports: tuple[int, int], prefix: str
) -> None:
    assert sentinel_url.endswith("/mymaster/0") and len(hosts(sentinel_url)) == 3
    with sentinel_primary(sentinel_url) as primary:
        assert primary.connection_pool.connection_kwargs["port"] == sentinel_ports[0]
        assert primary.set(f"{prefix}:k", b"v")
        assert primary.get(f"{prefix}:k") == b"v"
        replicas = primary.info("replication")
    assert replicas["slave0"]["port"] == sentinel_ports[1]


@pytest.fixture
def keys_swept_after_test(redis_url: str) -> Iterator[dict[str, list[str]]]:
    """Set up before ``prefix``, so torn down after it: checks what its teardown left."""
    written: dict[str, list[str]] = {"swept": [], "kept": []}
    yield written
    with redis.Redis.from_url(redis_url) as client:
        assert written["swept"] and written["kept"]
        assert client.exists(*written["swept"]) == 0
        assert client.exists(*written["kept"]) == len(written["kept"])
        client.unlink(*written["kept"])


def test_prefix_keys_are_swept_after_the_test(
    keys_swept_after_test: dict[str, list[str]], prefix: str, redis_client: redis.Redis
) -> None:
    other = f"t{uuid.uuid4().hex[:10]}"
    swept = [f"{prefix}:a", f"{prefix}:b:c", f"{{{prefix}}}:slot"]
    swept += [f"{prefix}:many:{i}" for i in range(1200)]  # more than one SCAN batch
    kept = [f"{other}:a", f"x{prefix}:a"]
    with redis_client.pipeline(transaction=False) as pipe:
        for key in swept + kept:
            pipe.set(key, b"1")
        pipe.execute()
    keys_swept_after_test["swept"] = swept
    keys_swept_after_test["kept"] = kept


def test_the_cluster_client_of_a_url_reaches_every_node(cluster_url: str) -> None:
    with cluster_client(cluster_url) as client:
        assert {n.port for n in client.get_nodes()} == {p for _, p in hosts(cluster_url)}


# --- private servers a test may break ----------------------------------------------------------


def _client(server: Server) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)


def test_a_paused_server_answers_nothing_until_resumed(fresh_redis: Server) -> None:
    with _client(fresh_redis) as client:
        client.set("k", b"v")
        fresh_redis.pause()
        with pytest.raises(redis.TimeoutError):
            client.get("k")
        fresh_redis.resume()
        assert client.get("k") == b"v"


@pytest.mark.parametrize("appendonly", [True, False], ids=["aof", "no-aof"])
def test_a_killed_server_restarts_with_or_without_its_writes(appendonly: bool) -> None:
    with start_single(appendonly=appendonly) as server:
        with _client(server) as client:
            client.set("k", b"v")
        server.kill()
        server.restart()
        with _client(server) as client:
            assert client.get("k") == (b"v" if appendonly else None)
            if appendonly:  # every acknowledged write was on disk before the kill
                assert client.config_get("appendfsync") == {"appendfsync": "always"}
        if appendonly:
            server.restart(appendonly=False)  # the same server, its AOF now ignored
            with _client(server) as client:
                assert client.get("k") is None
                assert client.config_get("appendonly") == {"appendonly": "no"}


def test_a_server_with_maxmemory_evicts(prefix: str) -> None:
    with start_single(maxmemory="2mb", policy="allkeys-lru") as server, _client(server) as client:
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
        for i in range(100):
            client.set(f"{prefix}:{i}", b"x" * 100_000)  # 10 MB into 2 MB: never an OOM error
        assert client.info("stats")["evicted_keys"] > 0


def test_a_cluster_primary_killed_is_replaced_by_its_replica() -> None:
    with start_cluster(primaries=3, replicas=1, node_timeout=1000) as cluster:
        assert len(cluster.primaries()) == 3 and len(cluster.replicas()) == 3
        with RedisCluster(host="127.0.0.1", port=cluster.ports[0], socket_timeout=2.0) as client:
            keys = [f"k{i}" for i in range(30)]
            for key in keys:
                client.set(key, b"v")
            # every primary's writes reached its replica before the crash
            acked = client.execute_command("WAIT", 1, 5000, target_nodes=RedisCluster.PRIMARIES)
            assert acked == 3  # summed over the three primaries: one replica each
            victim = cluster.kill_primary()
            promoted = cluster.wait_for_failover()
        assert promoted in cluster.primaries() and victim not in cluster.primaries()
        with RedisCluster(host="127.0.0.1", port=promoted.port, socket_timeout=2.0) as client:
            assert [client.get(key) for key in keys] == [b"v"] * 30  # replicated, then promoted


def test_a_sentinel_primary_killed_then_rejoining_leaves_a_replica_in_sync(
        fresh_sentinel: SentinelSetup) -> None:
    setup = fresh_sentinel
    old = setup.kill_primary()
    new = setup.wait_for_failover(old, timeout=20)
    with pytest.raises(RedisStartError):  # no replica: the killed node is down
        setup.wait_for_replica(timeout=0.5)
    setup.killed[-1].restart()
    with setup.killed[-1].client() as admin:
        admin.replicaof(setup.host, new)
    before = time.time()
    assert before <= setup.wait_for_replica(timeout=20) <= time.time()
    with redis.Redis(port=new, socket_timeout=5.0) as primary:
        assert primary.execute_command("WAIT", 1, 1000) == 1  # a write reaches one replica
