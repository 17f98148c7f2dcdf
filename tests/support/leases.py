"""Fixtures of the lease tests on one real server: a raw client (``raw``), asyncio leases over
a client of their own (``aleases``) and a lease name under the test's prefix (``name``); and
scripts whose first call fails (:class:`CutOnce`, :class:`ACutOnce`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from cachedeco.backends.redis._async.leases import AsyncRedisLeases
from cachedeco.core.keyspace import KeySpace, LeaseName

__all__ = ["ACutOnce", "CutOnce", "aleases", "name", "raw"]


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


class CutOnce:
    """A script (or backend method) whose first call fails with ``error`` (a cut connection,
    a timeout, a cancelled caller): before it reached the server, or (``ran``) after it ran
    there, its reply lost."""

    def __init__(self, script: Any, error: Exception, *, ran: bool = False) -> None:
        self.script, self.error, self.ran = script, error, ran
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            if self.ran:
                self.script(*args, **kwargs)
            raise self.error
        return self.script(*args, **kwargs)


class ACutOnce(CutOnce):
    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            if self.ran:
                await self.script(*args, **kwargs)
            raise self.error
        return await self.script(*args, **kwargs)
