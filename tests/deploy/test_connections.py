"""A registry's connections on the single server: closing it, sync or asyncio, releases every
connection it opened (named with ``client_name``, counted with CLIENT LIST)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import redis

from cachedeco import Registry, cached


def _connections_named(client: redis.Redis, name: str) -> int:
    """How many connections the server holds with CLIENT SETNAME ``name`` (settles ~1 s)."""
    deadline = time.monotonic() + 1.0
    while True:
        count = sum(1 for c in client.client_list() if c.get("name") == name)
        if count == 0 or time.monotonic() > deadline:
            return count
        time.sleep(0.02)


def test_close_releases_every_connection(make_registry: Callable[..., Registry],
                                         redis_url: str, prefix: str,
                                         redis_client: redis.Redis) -> None:
    reg = make_registry(redis_url, client_name=prefix)

    @cached(registry=reg)
    def f(x: int) -> int:
        time.sleep(0.01)
        return x

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(f, range(20))) == list(range(20))
    assert sum(1 for c in redis_client.client_list() if c.get("name") == prefix) >= 1
    reg.close()
    assert _connections_named(redis_client, prefix) == 0


async def test_aclose_releases_every_connection(amake_registry: Callable[..., Registry],
                                                redis_url: str, prefix: str,
                                                redis_client: redis.Redis) -> None:
    reg = amake_registry(redis_url, client_name=prefix)

    @cached(registry=reg)
    async def f(x: int) -> int:
        await asyncio.sleep(0.01)
        return x

    assert await asyncio.gather(*(f(x) for x in range(20))) == list(range(20))
    assert sum(1 for c in redis_client.client_list() if c.get("name") == prefix) >= 1
    await reg.aclose()
    assert _connections_named(redis_client, prefix) == 0
