"""A server older than cachedeco supports is named as such: against a real Redis 6.2 (built
from source by :mod:`tools.servers.older`), the first command it refuses is a
ConfigurationError giving its version and the one needed, in both flavours, and the version
is asked once (one ``HELLO``). A registry given an asyncio client only asks in a task: the
refusals after its answer raise. On a supported server a refused command stays a backend
fault the call falls back from."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
import redis

from cachedeco import ConfigurationError, Registry
from tests.support.commands import commandstats, ran
from tools.servers import Server
from tools.servers.older import VERSION, start_older

OLD = r"Redis 6\.2\.14, and cachedeco needs Redis 7\.0 or newer"


@pytest.fixture(scope="module")
def older() -> Iterator[Server]:
    server = start_older()
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture
def older_admin(older: Server) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(older.url) as client:
        assert client.info("server")["redis_version"] == VERSION
        yield client


def test_an_old_server_is_a_configuration_error(make_registry: Callable[..., Registry],
                                                older: Server,
                                                older_admin: redis.Redis) -> None:
    reg = make_registry(older.url, stats_interval=0)
    loads: list[int] = []

    @reg.cached(ttl=60, tags=["t"])
    def f(x: int) -> int:
        loads.append(x)
        return x

    @reg.cached(ttl=60, tags=["t"])
    async def af(x: int) -> int:
        loads.append(-x)
        return x

    # A tag key with less life left than the entry: the store extends it (PEXPIRE … GT).
    older_admin.set(reg.keyspace.tag("t"), "c0.1", px=5000)
    before = commandstats(older_admin)
    with pytest.raises(ConfigurationError, match=OLD) as caught:
        f(1)
    assert "backend 'default'" in str(caught.value)
    assert isinstance(caught.value.__cause__, redis.exceptions.ResponseError)
    assert ran(before, commandstats(older_admin))["hello"] == 1
    before = commandstats(older_admin)
    with pytest.raises(ConfigurationError, match=OLD):
        f(2)
    with pytest.raises(ConfigurationError, match=OLD):
        asyncio.run(af(3))
    assert "hello" not in ran(before, commandstats(older_admin))  # asked once, kept
    assert loads == [1, 2, -3]
    assert older_admin.get(f.key(1)) is None  # nothing stored


def test_a_refusal_by_a_supported_server_stays_a_fault(make_registry: Callable[..., Registry],
                                                       redis_url: str,
                                                       redis_client: redis.Redis) -> None:
    reg = make_registry(redis_url, stats_interval=0)

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        return x * 10

    redis_client.rpush(f.key(1), "not an entry")  # its GET is refused: WRONGTYPE
    before = commandstats(redis_client)
    assert [f(1), f(1)] == [10, 10]  # served by the function
    assert f.stats().backend_errors >= 2
    assert ran(before, commandstats(redis_client)).get("hello") == 1  # asked once: 7.x, fine


async def test_an_asyncio_client_is_asked_in_a_task(amake_registry: Callable[..., Registry],
                                                    older: Server,
                                                    older_admin: redis.Redis) -> None:
    client = redis.asyncio.Redis.from_url(older.url)
    reg = amake_registry(client, stats_interval=0)  # nothing sync to ask the server with

    @reg.cached(ttl=60, tags=["t"])
    async def af(x: int) -> int:
        return x

    older_admin.set(reg.keyspace.tag("t"), "c0.1", px=5000)
    assert await af(1) == 1  # the first refusal falls back; the question goes in a task
    await apoll_raises(lambda: af(2))
    await client.aclose()


async def apoll_raises(call: Callable[[], Awaitable[object]], timeout: float = 5.0) -> None:
    """Call until the call raises the old server's ConfigurationError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await call()
        except ConfigurationError as exc:
            assert re.search(OLD, str(exc))
            return
        assert time.monotonic() < deadline, "never named the old server"
        await asyncio.sleep(0.05)
