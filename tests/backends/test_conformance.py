"""The conformance suite (``conformance.py``) run over every backend cachedeco ships:
``memory://`` (sync and async faces), fakeredis (``FakeRedis`` and ``FakeAsyncRedis``) and the
real redis-server (``redis.Redis`` and ``redis.asyncio.Redis``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import fakeredis
import pytest
import redis
import redis.asyncio

from cachedeco.backends.memory.faces import AsyncMemoryBackend
from cachedeco.backends.memory.store import MemoryBackend
from cachedeco.backends.redis._sync.single import RedisBackend
from cachedeco.backends.redis.batching import CoalescingRedisBackend as AsyncRedisBackend
from tests.backends.conformance import BackendContract, BytesBackendContract, Driver, Poke


@pytest.fixture
def ns() -> str:
    """A namespace of keys for backends private to the test."""
    return f"m{uuid.uuid4().hex[:10]}"


class TestMemoryBackend(BackendContract):
    @pytest.fixture
    def backend(self) -> Driver:
        return Driver(MemoryBackend())


class TestAsyncMemoryBackend(BackendContract):
    @pytest.fixture
    def backend(self) -> Driver:
        return Driver(AsyncMemoryBackend(MemoryBackend()))


class TestFakeRedisBackend(BackendContract, BytesBackendContract):
    @pytest.fixture
    def client(self) -> Iterator[fakeredis.FakeRedis]:
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        yield client
        client.close()

    @pytest.fixture
    def backend(self, client: fakeredis.FakeRedis) -> Driver:
        return Driver(RedisBackend(client))

    @pytest.fixture
    def poke(self, client: fakeredis.FakeRedis) -> Poke:
        async def poke(key: str, raw: bytes) -> None:
            client.set(key, raw)

        return poke


class TestFakeAsyncRedisBackend(BackendContract, BytesBackendContract):
    @pytest.fixture
    async def client(self) -> AsyncIterator[fakeredis.FakeAsyncRedis]:
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        yield client
        await client.aclose()

    @pytest.fixture
    def backend(self, client: fakeredis.FakeAsyncRedis) -> Driver:
        return Driver(AsyncRedisBackend(client))

    @pytest.fixture
    def poke(self, client: fakeredis.FakeAsyncRedis) -> Poke:
        async def poke(key: str, raw: bytes) -> None:
            await client.set(key, raw)

        return poke


class TestRedisBackend(BackendContract, BytesBackendContract):
    @pytest.fixture
    def ns(self, prefix: str) -> str:  # swept from the server after the test
        return prefix

    @pytest.fixture
    def backend(self, redis_client: redis.Redis) -> Driver:
        return Driver(RedisBackend(redis_client))

    @pytest.fixture
    def poke(self, redis_client: redis.Redis) -> Poke:
        async def poke(key: str, raw: bytes) -> None:
            redis_client.set(key, raw)

        return poke


class TestAsyncRedisBackend(BackendContract, BytesBackendContract):
    @pytest.fixture
    def ns(self, prefix: str) -> str:
        return prefix

    @pytest.fixture
    def backend(self, aredis_client: redis.asyncio.Redis) -> Driver:
        return Driver(AsyncRedisBackend(aredis_client))

    @pytest.fixture
    def poke(self, aredis_client: redis.asyncio.Redis) -> Poke:
        async def poke(key: str, raw: bytes) -> None:
            await aredis_client.set(key, raw)

        return poke
