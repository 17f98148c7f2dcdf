"""Wires the contract's backends: every test of this suite runs on every backend cachedeco
ships, sync and asyncio (``backend``, a :class:`~tests.support.backends.Driver`); a test that
also takes ``poke`` (bytes written behind the backend's back) runs on those storing bytes."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio

from cachedeco import Registry
from cachedeco.backends.cluster import AsyncClusterBackend, ClusterBackend
from cachedeco.backends.memory import AsyncMemoryBackend, MemoryBackend
from cachedeco.backends.redis import AsyncRedisBackend, RedisBackend
from tests.support.backends import Driver, Poke
from tests.support.deployments import TIMEOUT, acluster_client, cluster_client, sentinel_primary

OBJECTS = ("memory", "async-memory")
BYTES = ("fakeredis", "async-fakeredis", "redis", "async-redis", "cluster", "async-cluster",
         "sentinel")  # the asyncio sentinel face is the asyncio Redis backend: async-redis


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        names = BYTES if "poke" in metafunc.fixturenames else OBJECTS + BYTES
        metafunc.parametrize("store", names, indirect=True)


class Store:
    """A backend under test and a raw client of what it stores in (none for memory)."""

    def __init__(self, driver: Driver, raw: Any = None) -> None:
        self.driver = driver
        self.raw = raw

    async def poke(self, key: str, value: bytes) -> None:
        done = self.raw.set(key, value)
        if inspect.isawaitable(done):
            await done


async def _open(name: str, request: pytest.FixtureRequest,
                stack: contextlib.AsyncExitStack) -> Store:
    kind = name.removeprefix("async-")
    asyncio_face = name.startswith("async-")
    if kind == "memory":
        memory = MemoryBackend()
        return Store(Driver(AsyncMemoryBackend(memory) if asyncio_face else memory))
    if kind == "fakeredis":
        server = fakeredis.FakeServer()
        if asyncio_face:
            fake = fakeredis.FakeAsyncRedis(server=server)
            stack.push_async_callback(fake.aclose)
            return Store(Driver(AsyncRedisBackend(fake)), fake)
        sync_fake = stack.enter_context(fakeredis.FakeRedis(server=server))
        return Store(Driver(RedisBackend(sync_fake)), sync_fake)
    url = request.getfixturevalue(f"{kind}_url")  # the prefix is swept from it afterwards
    if kind == "redis":
        if asyncio_face:
            client = redis.asyncio.Redis.from_url(url, socket_timeout=TIMEOUT)
            stack.push_async_callback(client.aclose)
            return Store(Driver(AsyncRedisBackend(client)), client)
        sync_client = stack.enter_context(redis.Redis.from_url(url, socket_timeout=TIMEOUT))
        return Store(Driver(RedisBackend(sync_client)), sync_client)
    if kind == "cluster":
        raw = stack.enter_context(cluster_client(url))
        if asyncio_face:
            aclient = acluster_client(url)
            stack.push_async_callback(aclient.aclose)
            return Store(Driver(AsyncClusterBackend(aclient), two_step=True), raw)
        return Store(Driver(ClusterBackend(raw), two_step=True), raw)
    registry = Registry(url)  # sentinel: the backend a URL makes, over the primary it finds
    stack.push_async_callback(registry.aclose)
    primary = stack.enter_context(sentinel_primary(url))
    slot = registry.slot("default")
    return Store(Driver(slot.abackend() if asyncio_face else slot.backend()), primary)


@pytest.fixture
async def store(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Store]:
    async with contextlib.AsyncExitStack() as stack:
        yield await _open(request.param, request, stack)


@pytest.fixture
def backend(store: Store) -> Driver:
    """The backend under test."""
    return store.driver


@pytest.fixture
def poke(store: Store) -> Poke:
    """``await poke(key, raw)``: write ``raw`` bytes at ``key`` behind the backend's back."""
    return store.poke


@pytest.fixture
def ns(prefix: str) -> str:
    """The test's key namespace (its prefix: swept from the server afterwards)."""
    return prefix
