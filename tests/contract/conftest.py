"""Wires the contract's backends: every test of this suite runs on every backend cachedeco
ships, sync and asyncio (``backend``, a :class:`~tests.support.backends.Driver`); a test that
also takes ``poke`` (bytes written behind the backend's back) runs on those storing bytes."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio

from cachedeco import Registry
from cachedeco.backends.memory.faces import AsyncMemoryBackend
from cachedeco.backends.memory.store import MemoryBackend
from cachedeco.backends.redis._async.cluster import AsyncClusterBackend
from cachedeco.backends.redis._sync.cluster import ClusterBackend
from cachedeco.backends.redis._sync.single import RedisBackend
from cachedeco.backends.redis.batching import CoalescingRedisBackend as AsyncRedisBackend
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


class _SyncClients:
    """Sync clients shared by the whole session (opening a cluster client costs ~15 ms a test;
    every key a test touches is under its own prefix). asyncio clients belong to a test's loop."""

    def __init__(self) -> None:
        self.stack = contextlib.ExitStack()
        self._clients: dict[str, Any] = {}

    def get(self, kind: str, where: Any = "") -> Any:
        """The client of ``kind`` for ``where`` (a URL; for "fakeredis", the FakeServer)."""
        if kind not in self._clients:
            self._clients[kind] = self.stack.enter_context(self._open(kind, where))
        return self._clients[kind]

    @staticmethod
    def _open(kind: str, where: Any) -> Any:
        if kind == "fakeserver":
            return contextlib.nullcontext(fakeredis.FakeServer())
        if kind == "fakeredis":
            return fakeredis.FakeRedis(server=where)
        if kind == "redis":
            return redis.Redis.from_url(where, socket_timeout=TIMEOUT)
        if kind == "cluster":
            return cluster_client(where)
        if kind == "sentinel-primary":
            return sentinel_primary(where)
        return Registry(where)  # sentinel: the backend a URL makes


@pytest.fixture
def shared_threads() -> frozenset[str]:
    """The Sentinel registry of :class:`_SyncClients` lives for the session, watching."""
    return frozenset({"cachedeco-primary-watch", "cachedeco-sentinel-push"})


@pytest.fixture(scope="session")
def _sync_clients() -> Iterator[_SyncClients]:
    clients = _SyncClients()
    with clients.stack:
        yield clients


async def _open(name: str, request: pytest.FixtureRequest, clients: _SyncClients,
                stack: contextlib.AsyncExitStack) -> Store:
    kind = name.removeprefix("async-")
    asyncio_face = name.startswith("async-")
    if kind == "memory":
        memory = MemoryBackend()
        return Store(Driver(AsyncMemoryBackend(memory) if asyncio_face else memory))
    if kind == "fakeredis":
        server = clients.get("fakeserver")
        if asyncio_face:
            afake = fakeredis.FakeAsyncRedis(server=server)
            stack.push_async_callback(afake.aclose)
            return Store(Driver(AsyncRedisBackend(afake)), afake)
        fake = clients.get("fakeredis", server)
        return Store(Driver(RedisBackend(fake)), fake)
    url = request.getfixturevalue(f"{kind}_url")  # the prefix is swept from it afterwards
    if kind == "redis":
        if asyncio_face:
            client = redis.asyncio.Redis.from_url(url, socket_timeout=TIMEOUT)
            stack.push_async_callback(client.aclose)
            return Store(Driver(AsyncRedisBackend(client)), client)
        return Store(Driver(RedisBackend(clients.get("redis", url))), clients.get("redis"))
    if kind == "cluster":
        raw = clients.get("cluster", url)
        if asyncio_face:
            aclient = acluster_client(url)
            stack.push_async_callback(aclient.aclose)
            return Store(Driver(AsyncClusterBackend(aclient), two_step=True), raw)
        return Store(Driver(ClusterBackend(raw), two_step=True), raw)
    backend = clients.get("sentinel", url).slot("default").backend()
    return Store(Driver(backend), clients.get("sentinel-primary", url))


@pytest.fixture
async def store(request: pytest.FixtureRequest, prefix: str,
                _sync_clients: _SyncClients) -> AsyncIterator[Store]:
    async with contextlib.AsyncExitStack() as stack:
        yield await _open(request.param, request, _sync_clients, stack)


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
