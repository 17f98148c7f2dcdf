"""The near cache of a backend given as a ready client: a `redis.asyncio.Redis` has one (its
change stream opens a sync connection with the client's address, credentials and TLS
settings), serves hits with no command and hears of other clients' changes; a client it
cannot take settings from (a ready cluster client, a fake) has none, and the registry says
so once, naming the backend."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import fakeredis
import pytest
import redis
import redis.asyncio
import redis.connection

from cachedeco import Registry
from cachedeco.backends.base import ConnectionOptions
from cachedeco.backends.near.sources import source_for
from tests.support.commands import commandstats, ran
from tests.support.near import TRACKER, awarm
from tests.support.polling import apoll_async


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


@pytest.mark.parametrize("make", ["cluster", "fake"])
def test_a_client_without_settings_to_reuse_has_no_near_cache_and_says_so(
        make: str, cluster_url: str, caplog: pytest.LogCaptureFixture) -> None:
    if make == "cluster":
        host, port = cluster_url.split("://")[1].split(",", maxsplit=1)[0].split(":")
        client: object = redis.RedisCluster(host=host, port=int(port))
    else:
        client = fakeredis.FakeAsyncRedis()
    kind = type(client).__name__
    caplog.set_level(logging.WARNING, logger="cachedeco")
    reg = Registry(client, near_cache=100, stats_interval=0)
    try:
        assert reg.slot("default").near is None
        lines = [r.getMessage() for r in caplog.records if r.name == "cachedeco"]
        assert lines == [f"cachedeco: backend 'default' has no near cache: a ready {kind} "
                         "client gives no settings to open its change stream with; give a URL"]
    finally:
        reg.close()
