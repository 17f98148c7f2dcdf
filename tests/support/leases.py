"""Fixtures of the lease tests on one real server: a raw client (``raw``), asyncio leases over
a client of their own (``aleases``) and a lease name under the test's prefix (``name``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio

from cachedeco.backends.redis._async.leases import AsyncRedisLeases
from cachedeco.core.keyspace import KeySpace, LeaseName

__all__ = ["aleases", "name", "raw"]


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
async def aleases(redis_url: str) -> AsyncIterator[AsyncRedisLeases]:
    """Leases over an asyncio client of their own, closed after the test."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        yield AsyncRedisLeases(client)
    finally:
        await client.aclose()


@pytest.fixture
def name(prefix: str) -> LeaseName:
    return KeySpace(prefix).lease(f"{prefix}:item:1")
