"""The near cache of a backend given as a ready client: a `redis.asyncio.Redis` and the cluster
clients of both flavours have one (the change stream opens sync connections with the
client's address, credentials and TLS settings), serve hits with no command and hear of
other clients' changes; a client it cannot take settings from (a fake, a Sentinel-managed
one) has none, and the registry says so once, naming the backend and why."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import fakeredis
import pytest
import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.connection
import redis.sentinel

from cachedeco import Registry
from cachedeco.backends.base import ConnectionOptions
from cachedeco.backends.near.sources import source_for
from tests.support.commands import commandstats, ran
from tests.support.near import TRACKER, awarm, warm
from tests.support.polling import apoll_async, poll
from tools.servers.process import free_port


async def test_an_asyncio_client_has_a_near_cache_kept_coherent_by_redis(
        amake_registry: Callable[..., Registry], redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    raw = redis.Redis.from_url(redis_url)
    reg = amake_registry(client, near_cache=100, stats_interval=0)
    loads: list[int] = []

    @reg.cached(ttl=60, tags=["item:{x}"])
    async def get(x: int) -> int:
        loads.append(x)
        return x * len(loads)

    try:
        await awarm(lambda: get(1), get.stats)
        before, stats = commandstats(raw), get.stats()
        assert [await get(1) for _ in range(100)] == [1] * 100
        assert ran(before, commandstats(raw), ignore=TRACKER) == {}
        assert get.stats().near_hits - stats.near_hits == 100
        raw.delete(get.key(1))  # another client's change: the stream reports it

        async def loaded_again() -> bool:
            return await get(1) == 2 and loads == [1, 1]

        await apoll_async(loaded_again, timeout=5.0)
    finally:
        raw.close()
        await client.aclose()


def test_an_asyncio_clients_tls_and_socket_settings_carry_over_to_its_stream(
        tmp_path: Path) -> None:
    ca = str(tmp_path / "ca.pem")
    tls = redis.asyncio.Redis(host="127.0.0.1", port=6390, username="u", password="p", db=3,
                              ssl=True, ssl_ca_certs=ca, ssl_check_hostname=False,
                              socket_timeout=0.5)
    source = source_for("redis", tls, ConnectionOptions())
    assert source is not None
    [(where, factory)] = source.primaries().items()
    conn = factory()
    assert where == "127.0.0.1:6390"
    assert type(conn) is redis.connection.SSLConnection
    assert (conn.host, conn.port, conn.db, conn.username, conn.password) == (
        "127.0.0.1", 6390, 3, "u", "p")
    assert (conn.ca_certs, conn.check_hostname, conn.socket_timeout) == (ca, False, 0.5)
    assert conn.protocol == 3
    unix = redis.asyncio.Redis(unix_socket_path=str(tmp_path / "redis.sock"))
    source = source_for("redis", unix, ConnectionOptions())
    assert source is not None
    [(where, factory)] = source.primaries().items()
    assert type(factory()) is redis.connection.UnixDomainSocketConnection
    assert where == str(tmp_path / "redis.sock")


def _cluster_seed(cluster_url: str) -> tuple[str, int]:
    host, port = cluster_url.split("://")[1].split(",", maxsplit=1)[0].split(":")
    return host, int(port)


def test_a_ready_cluster_client_has_a_near_cache_kept_coherent_by_redis(
        make_registry: Callable[..., Registry], cluster_url: str) -> None:
    host, port = _cluster_seed(cluster_url)
    client = redis.RedisCluster(host=host, port=port)
    reg = make_registry(client, near_cache=100, stats_interval=0)
    loads: list[int] = []

    @reg.cached(ttl=60, tags=["item:{x}"])
    def get(x: int) -> int:
        loads.append(x)
        return x * len(loads)

    try:
        warm(lambda: get(1), get.stats)
        before, stats = commandstats(client), get.stats()
        assert [get(1) for _ in range(100)] == [1] * 100
        assert ran(before, commandstats(client), ignore=TRACKER) == {}
        assert get.stats().near_hits - stats.near_hits == 100
        client.delete(get.key(1))  # another client's change: the stream reports it
        poll(lambda: get(1) == 2 and loads == [1, 1], timeout=5.0)
    finally:
        client.close()


async def test_a_ready_asyncio_cluster_client_has_a_near_cache(
        amake_registry: Callable[..., Registry], cluster_url: str) -> None:
    host, port = _cluster_seed(cluster_url)
    client = redis.asyncio.RedisCluster(host=host, port=port)
    reg = amake_registry(client, near_cache=100, stats_interval=0)

    @reg.cached(ttl=60)
    async def get(x: int) -> int:
        return x * 2

    try:
        await awarm(lambda: get(1), get.stats)
        assert reg.slot("default").near is not None
    finally:
        await client.aclose()


@pytest.mark.parametrize("kind", ["fake", "sentinel-managed", "asyncio sentinel-managed"])
def test_a_client_without_settings_to_reuse_has_no_near_cache_and_says_so(
        kind: str, caplog: pytest.LogCaptureFixture) -> None:
    if kind == "fake":
        client: object = fakeredis.FakeAsyncRedis()
        why = (f"a ready {type(client).__name__} client gives no settings to open its change "
               "stream with; give a URL")
    else:  # nothing is asked of the sentinels until a command
        flavour = redis.asyncio.sentinel if kind.startswith("asyncio") else redis.sentinel
        client = flavour.Sentinel([("127.0.0.1", free_port())]).master_for("svc")
        why = ("a ready Sentinel-managed client knows its primary in its pool alone; give a "
               "redis+sentinel:// URL")
    caplog.set_level(logging.WARNING, logger="cachedeco")
    reg = Registry(client, near_cache=100, stats_interval=0, prefix="shop")
    try:
        assert reg.slot("default").near is None
        lines = [r.getMessage() for r in caplog.records if r.name == "cachedeco"]
        assert lines == [f"cachedeco[shop]: backend 'default' has no near cache: {why}"]
    finally:
        reg.close()
