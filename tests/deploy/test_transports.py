"""The transports other than plain TCP, against a real redis-server: ``rediss://`` (TLS, a
self-signed certificate the client trusts as its CA) and ``unix://`` (a Unix socket). On
each: reads, stores and invalidations in both flavours with one command per hit, and the
near cache, whose change stream reads its socket without blocking: near hits send nothing,
changes by another client reach it (one at a time, and in bursts larger than a TLS record),
and the stream is never lost meanwhile."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from cachedeco import Registry
from tests.support.commands import commandstats
from tests.support.polling import poll
from tests.support.round_trip import reads_stores_and_invalidations
from tests.support.versioned import follow_changes, item_readers, keep_near
from tools.servers import Server, start_single

WINDOW = 1.0  # seconds a change may take to reach the near cache (loopback, loaded CI)


@pytest.fixture(params=["tls", "unix"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A private redis-server with a TLS port or a Unix socket beside its plain port (the
    tests' admin side)."""
    with start_single(tls=request.param == "tls", unix=request.param == "unix") as made:
        yield made


@pytest.fixture
def url(server: Server) -> str:
    return server.tls_url if server.tls_port is not None else server.unix_url


@pytest.fixture
def admin(server: Server) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(server.url) as client:
        yield client


def test_reads_stores_and_invalidations(make_registry: Callable[..., Registry], url: str,
                                        admin: redis.Redis) -> None:
    keys = reads_stores_and_invalidations(make_registry(url, stats_interval=0),
                                          lambda: commandstats(admin), hit={"mget": 1})
    assert admin.exists(*keys) == 2  # it is this server that holds them


@pytest.mark.parametrize("options_in", ["url", "registry"])
def test_the_near_cache_works(make_registry: Callable[..., Registry], url: str,
                              admin: redis.Redis, options_in: str) -> None:
    # the URL's options (TLS: its CA) in its query, or given to the registry
    options: dict[str, str] = {}
    if options_in == "registry":
        url, _, query = url.partition("?")
        options = dict(pair.split("=", 1) for pair in query.split("&"))
        options.pop("db", None)  # unix://: database 0 either way
    reg = make_registry(url, near_cache=1000, stats_interval=0, **options)
    other = make_registry(url, stats_interval=0, **options)  # another client
    follow_changes(reg, other, window=WINDOW, counts=lambda: commandstats(admin))
    tracker = reg.slot("default")._tracker
    assert tracker is not None and tracker.connects == 1  # the stream was never lost


def test_a_burst_of_invalidations_reaches_the_near_cache(
        make_registry: Callable[..., Registry], url: str, admin: redis.Redis) -> None:
    # 400 entries dropped by one UNLINK (one message of 400 keys, larger than a TLS record of
    # 16 KB), then by 400 commands in a pipeline (400 messages at once)
    reg = make_registry(url, near_cache=1000, stats_interval=0)
    other = make_registry(url, stats_interval=0)
    version = {"v": 0}
    f, _ = item_readers(reg, other, version)
    keys = range(400)
    for way in ("one command", "a pipeline"):
        keep_near(f, keys, version, WINDOW)
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
