"""The Sentinel deployment's mechanics (a primary, a replica, three sentinels): entries live on
the primary the sentinels name, timeouts are bounded for data and sentinel connections alike,
and through a failover calls keep answering (uncached) and the cache works again on the
promoted replica (a registry used again after ``close()`` too)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import cachedeco
from cachedeco import Registry
from cachedeco.backends.redis._async.single import AsyncRedisBackend
from cachedeco.backends.redis._sync.single import RedisBackend
from tools.servers import SentinelSetup


def test_entries_live_on_the_primary(make_registry: Callable[..., Registry], sentinel_url: str,
                                     sentinel_primary: redis.Redis) -> None:
    reg = make_registry(sentinel_url, on_error="raise")

    @cachedeco.cached(registry=reg)
    def f(x: int) -> int:
        return x

    f(3)
    assert sentinel_primary.exists(f.key(3)) == 1


def test_sentinel_kwargs_reach_the_connections_to_the_sentinels(
        make_registry: Callable[..., Registry], sentinel_url: str,
        sentinel_primary: redis.Redis, prefix: str) -> None:
    # the documented way to give the sentinels' connections their own settings (a password,
    # TLS): here a client name, seen by the sentinels and not by the primary
    name = f"{prefix}-sentinels"
    reg = make_registry(sentinel_url, on_error="raise", near_cache=100,
                        sentinel_kwargs={"client_name": name})

    @cachedeco.cached(registry=reg)
    def f(x: int) -> int:
        return x

    assert [f(3), f(3)] == [3, 3]
    hosts = sentinel_url.split("//", 1)[1].split("/", 1)[0].split(",")
    named = 0
    for host in hosts:
        address, port = host.rsplit(":", 1)
        with redis.Redis(host=address, port=int(port)) as sentinel:
            named += sum(c.get("name") == name for c in sentinel.client_list())
    assert named >= 1
    assert not any(c.get("name") == name for c in sentinel_primary.client_list())


async def test_timeouts_are_bounded(amake_registry: Callable[..., Registry],
                                    sentinel_url: str) -> None:
    reg = amake_registry(sentinel_url, socket_timeout=0.7, socket_connect_timeout=0.3)
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
            for i, want in list(self.expected.items()):
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


@pytest.mark.parametrize("closed_first", [False, True], ids=["fresh", "used-after-close"])
def test_failover_keeps_answering_and_recovers(fresh_sentinel: SentinelSetup, prefix: str,
                                               closed_first: bool) -> None:
    # used-after-close: the registry was closed and is used again (its watch on the
    # sentinels starts again with the first new connection)
    setup = fresh_sentinel
    reg = Registry(setup.url, prefix=prefix, socket_timeout=0.5, socket_connect_timeout=0.5,
                   breaker_cooldown=0.3)
    table = {i: i * 10 for i in range(8)}

    @cachedeco.cached(registry=reg, key="v:{i}", tags=["t"])
    def value(i: int) -> int:
        return table[i]

    caller = _Caller(value, table)
    try:
        if closed_first:
            assert value(0) == 0
            reg.close()
            value.invalidate(0)
            hits = value.stats().hits
        else:
            hits = 0
        for i in table:
            value(i)
        assert [value(i) for i in table] == list(table.values())
        assert value.stats().hits == hits + len(table)
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
