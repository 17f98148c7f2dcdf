"""cachedeco on a real Sentinel setup (a primary, a replica, three sentinels): the @cached flows
through ``redis+sentinel://…`` sync and async, bounded timeouts, and a failover: calls keep
answering while the primary is dead, and the cache works again on the promoted replica."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.sentinel

import cachedeco
from cachedeco import Registry
from cachedeco.backends.redis._async.single import AsyncRedisBackend
from cachedeco.backends.redis._sync.single import RedisBackend
from tests.backends.conformance import BackendContract, BytesBackendContract, Driver, Poke
from tests.integration.test_cluster import acheck_flows, check_flows
from tools.redis_servers import SentinelSetup, sentinel_hosts


@pytest.fixture
def primary(sentinel_url: str) -> Iterator[redis.Redis]:
    """A plain client of the primary the sentinels name now."""
    hosts, service, db = sentinel_hosts(sentinel_url)
    sentinel = redis.sentinel.Sentinel(hosts, socket_timeout=5.0)  # type: ignore[no-untyped-call]
    host, port = sentinel.discover_master(service)  # type: ignore[no-untyped-call]
    for client in sentinel.sentinels:
        client.close()
    client = redis.Redis(host=host, port=port, db=db, socket_timeout=5.0)
    yield client
    client.close()


def test_flows_sync(sentinel_url: str, prefix: str, primary: redis.Redis) -> None:
    reg = Registry(sentinel_url, prefix=prefix, on_error="raise")
    try:
        check_flows(reg, primary, prefix)
    finally:
        reg.close()


async def test_flows_async(sentinel_url: str, prefix: str, primary: redis.Redis) -> None:
    reg = Registry(sentinel_url, prefix=prefix, on_error="raise")
    try:
        await acheck_flows(reg, primary, prefix)
    finally:
        await reg.aclose()


def test_entries_live_on_the_primary(sentinel_url: str, prefix: str,
                                     primary: redis.Redis) -> None:
    reg = Registry(sentinel_url, prefix=prefix, on_error="raise")

    @cachedeco.cached(registry=reg)
    def f(x: int) -> int:
        return x

    try:
        f(3)
        assert primary.exists(f.key(3)) == 1
    finally:
        reg.close()


async def test_timeouts_are_bounded(sentinel_url: str) -> None:
    reg = Registry(sentinel_url, socket_timeout=0.7, socket_connect_timeout=0.3)
    try:
        backend = reg.slot("default").backend()
        abackend = reg.slot("default").abackend()
        assert isinstance(backend, RedisBackend)
        assert isinstance(abackend, AsyncRedisBackend)
        for data, sentinels in ((backend.client, backend.companions),
                                (abackend.client, abackend.companions)):
            kwargs = data.connection_pool.connection_kwargs
            assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.7, 0.3)
            for sentinel in sentinels:
                kwargs = sentinel.connection_pool.connection_kwargs
                assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.7, 0.3)
    finally:
        await reg.aclose()


class TestSentinelBackendContract(BackendContract, BytesBackendContract):
    """The shared backend suite over the Sentinel-managed primary."""

    @pytest.fixture
    def ns(self, prefix: str, sentinel_url: str) -> str:  # swept from the primary afterwards
        return prefix

    @pytest.fixture
    def backend(self, sentinel_url: str) -> Iterator[Driver]:
        reg = Registry(sentinel_url)
        yield Driver(reg.slot("default").backend())
        reg.close()

    @pytest.fixture
    def poke(self, primary: redis.Redis) -> Poke:
        async def poke(key: str, raw: bytes) -> None:
            primary.set(key, raw)

        return poke


class _Caller(threading.Thread):
    """Calls a cached function in a loop, recording every wrong answer."""

    def __init__(self, fn: Callable[[int], Any], expected: dict[int, int]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.expected = expected
        self.calls = 0
        self.wrong: list[tuple[int, object]] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for i, want in self.expected.items():
                try:
                    got = self.fn(i)
                except BaseException as exc:
                    self.errors.append(exc)
                    return
                if got != want:
                    self.wrong.append((i, got))
                self.calls += 1
            time.sleep(0.002)


def _eventually(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_failover_keeps_answering_and_recovers(fresh_sentinel: SentinelSetup,
                                               prefix: str) -> None:
    setup = fresh_sentinel
    reg = Registry(setup.url, prefix=prefix, socket_timeout=0.5, socket_connect_timeout=0.5,
                   breaker_cooldown=0.3)
    table = {i: i * 10 for i in range(8)}

    @cachedeco.cached(registry=reg, key="v:{i}", tags=["t"])
    def value(i: int) -> int:
        return table[i]

    caller = _Caller(value, table)
    try:
        for i in table:
            value(i)
        assert [value(i) for i in table] == list(table.values())
        assert value.stats().hits == len(table)
        caller.start()
        time.sleep(0.2)
        old = setup.kill_primary()
        calls_at_kill = caller.calls
        new = setup.wait_for_failover(old, timeout=20)
        assert new != old
        calls_in_outage = caller.calls - calls_at_kill
        # entries are cached again, on the promoted replica: a fresh key misses, is stored
        # on the new primary, then hits
        with redis.Redis(port=new, socket_timeout=5.0) as direct:
            def stored_and_hit() -> bool:
                hits = value.stats().hits
                value(7)  # a key the loop also reads: it may already be replicated
                table[100] = 1000
                value(100)
                return (direct.exists(value.key(100)) == 1 and value(100) == 1000
                        and value.stats().hits > hits)

            assert _eventually(stored_and_hit, timeout=15)
        caller.stop.set()
        caller.join(5)
        assert caller.errors == []
        assert caller.wrong == []
        assert calls_in_outage > 0  # calls kept answering while the primary was dead
        assert value.stats().backend_errors > 0  # ... uncached (fail-open)

        # an asyncio client made now finds the new primary too
        async def async_side() -> None:
            @cachedeco.cached(registry=reg, key="a:{i}")
            async def avalue(i: int) -> int:
                return i

            assert await avalue(1) == 1
            assert await avalue(1) == 1
            assert avalue.stats().hits == 1
            await reg.aclose()

        asyncio.run(async_side())
    finally:
        caller.stop.set()
        reg.close()
