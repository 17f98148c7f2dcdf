"""The test deployments answer, and the fixtures clean up after themselves."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from tools.redis_servers import acommandstats, commandstats, sentinel_hosts


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
    hosts, service, db = sentinel_hosts(sentinel_url)
    assert (service, db, len(hosts)) == ("mymaster", 0, 3)
    sentinel = Sentinel(hosts, socket_timeout=5.0)
    try:
        assert sentinel.discover_master(service) == ("127.0.0.1", sentinel_ports[0])
        assert ("127.0.0.1", sentinel_ports[1]) in sentinel.discover_slaves(service)
        primary = sentinel.master_for(service, db=db, socket_timeout=5.0)
        try:
            assert primary.set(f"{prefix}:k", b"v")
            assert primary.get(f"{prefix}:k") == b"v"
        finally:
            primary.close()
    finally:
        for client in sentinel.sentinels:
            client.close()


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
