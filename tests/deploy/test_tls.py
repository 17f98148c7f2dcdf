"""A ``rediss://`` URL against a redis-server speaking TLS (a self-signed certificate the
client trusts as its CA): reads, stores and invalidations in both flavours with one command
per hit, and the near cache, whose change stream reads its TLS socket without blocking: near
hits send nothing, changes by another client reach it (one at a time and in bursts larger
than a TLS record), and the stream is never lost meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
import redis

from cachedeco import Registry
from tests.support.commands import commandstats, ran
from tests.support.near import TRACKER, warm
from tests.support.polling import poll
from tests.support.versioned import item_readers
from tools.servers import Server, start_single

WINDOW = 1.0  # seconds a change may take to reach the near cache (loopback, loaded CI)


@pytest.fixture
def tls_redis() -> Iterator[Server]:
    """A private redis-server with a TLS port beside its plain one (the tests' admin side)."""
    server = start_single(tls=True)
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture
def admin(tls_redis: Server) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(tls_redis.url) as client:
        yield client


def test_reads_stores_and_invalidations_over_tls(make_registry: Callable[..., Registry],
                                                 tls_redis: Server, admin: redis.Redis) -> None:
    reg = make_registry(tls_redis.tls_url, stats_interval=0)
    loads: list[int] = []

    @reg.cached(ttl=60, tags=["t:{x}"])
    def f(x: int) -> dict[str, int]:
        loads.append(x)
        return {"x": x}

    @reg.cached(ttl=60, tags=["t:{x}"])
    async def af(x: int) -> dict[str, int]:
        loads.append(-x)
        return {"x": -x}

    async def async_side() -> list[dict[str, int]]:
        got = [await af(1), await af(1)]
        await reg.ainvalidate_tags("t:1")
        return [*got, await af(1)]

    assert [f(1), f(1)] == [{"x": 1}] * 2
    before = commandstats(admin)
    assert f(1) == {"x": 1}
    assert sum(ran(before, commandstats(admin)).values()) == 1  # a hit: one command
    reg.invalidate_tags("t:1")
    assert f(1) == {"x": 1}
    assert asyncio.run(async_side()) == [{"x": -1}] * 3
    assert loads == [1, 1, -1, -1]
    assert admin.dbsize() > 0  # it is this server that holds them


@pytest.mark.parametrize("ca_in", ["url", "option"])
def test_the_near_cache_works_over_tls(make_registry: Callable[..., Registry],
                                       tls_redis: Server, admin: redis.Redis,
                                       ca_in: str) -> None:
    # the CA in the URL's query, or as a registry option beside a rediss:// URL
    url, options = tls_redis.tls_url, {}
    if ca_in == "option":
        url, _, query = url.partition("?")
        options = dict(pair.split("=", 1) for pair in query.split("&"))
    reg = make_registry(url, near_cache=1000, stats_interval=0, **options)
    other = make_registry(url, stats_interval=0, **options)  # another client
    version = {"v": 0}
    f, g = item_readers(reg, other, version)
    warm(lambda: f(1), f.stats)
    before = commandstats(admin)
    assert [f(1) for _ in range(200)] == [0] * 200
    assert ran(before, commandstats(admin), ignore=TRACKER) == {}  # near hits send nothing
    for round_ in range(10):
        version["v"] += 1
        (other.invalidate_tags if round_ % 2 else g.invalidate)(*(("item:1",) if round_ % 2
                                                                 else (1,)))
        poll(lambda: f(1) == version["v"], timeout=WINDOW)
        warm(lambda: f(1), f.stats)
    tracker = reg.slot("default")._tracker
    assert tracker is not None and tracker.connects == 1  # the stream was never lost


def test_a_burst_of_invalidations_reaches_the_near_cache_over_tls(
        make_registry: Callable[..., Registry], tls_redis: Server, admin: redis.Redis) -> None:
    # 400 entries dropped by one UNLINK (one message of 400 keys, larger than a TLS record of
    # 16 KB), then by 400 commands in a pipeline (400 messages at once)
    reg = make_registry(tls_redis.tls_url, near_cache=1000, stats_interval=0)
    other = make_registry(tls_redis.tls_url, stats_interval=0)
    version = {"v": 0}
    f, _ = item_readers(reg, other, version)
    keys = range(400)
    for way in ("one command", "a pipeline"):
        for x in keys:
            f(x)
        warm(lambda: f(399), f.stats)
        poll(lambda: all(f(x) == version["v"] for x in keys), timeout=WINDOW)
        hits = f.stats().near_hits
        assert [f(x) for x in keys] == [version["v"]] * 400
        assert f.stats().near_hits - hits == 400  # all 400 kept near
        version["v"] += 1
        names = [f.key(x) for x in keys]
        if way == "one command":
            admin.unlink(*names)
        else:
            with admin.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.unlink(name)
                pipe.execute()
        poll(lambda: all(f(x) == version["v"] for x in keys), timeout=WINDOW)
    tracker = reg.slot("default")._tracker
    assert tracker is not None and tracker.connects == 1
