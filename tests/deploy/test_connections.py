"""A registry's connections on the single server: closing it, sync or asyncio, releases every
connection it opened, on whatever loop (named with ``client_name``, counted with CLIENT LIST),
a short-lived loop's shutdown closes what was opened for it, and its asyncio pool stays
bounded through failed connects."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from cachedeco import BackendError, Registry, cached
from cachedeco.runtime.lineage import Lineage
from tests.support.polling import apoll, poll
from tools.servers import Server


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
    poll(lambda: redis_client.exists(reg.keyspace.lineage) == 1)  # the beat thread's too
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


async def test_failed_connects_leave_the_waiting_pool_bounded(
        amake_registry: Callable[..., Registry], fresh_redis: Server, prefix: str) -> None:
    """A caller whose connection cannot be set up gives its place back once: after an outage
    the pool still hands out max_connections connections, a burst waits for them (it does not
    get MaxConnectionsError from a pool that counts more places than connections)."""
    reg = amake_registry(fresh_redis.url, max_connections=2, pool_timeout=60,
                         socket_connect_timeout=0.5, breaker_threshold=1_000_000,
                         on_error="raise", client_name=prefix)

    @cached(registry=reg)
    async def f(x: int) -> int:
        return x

    assert await f(-1) == -1
    fresh_redis.kill()
    for x in range(10):
        with pytest.raises(BackendError):
            await f(x)
    fresh_redis.restart()
    assert await asyncio.gather(*(f(x) for x in range(200))) == list(range(200))
    with fresh_redis.process.client() as admin:
        assert sum(1 for c in admin.client_list() if c.get("name") == prefix) <= 2


def test_close_reaches_a_loop_running_in_another_thread(
        make_registry: Callable[..., Registry], redis_url: str, prefix: str,
        redis_client: redis.Redis) -> None:
    reg = make_registry(redis_url, client_name=prefix)

    @cached(registry=reg)
    async def f(x: int) -> int:
        return x

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        assert asyncio.run_coroutine_threadsafe(f(1), loop).result(10) == 1
        assert _connections_named(redis_client, prefix) >= 1
        reg.close()  # from this thread, while that loop runs
        assert _connections_named(redis_client, prefix) == 0
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def _echo(reg: Registry) -> Callable[[int], Awaitable[int]]:
    @cached(registry=reg)
    async def echo(x: int) -> int:
        return x

    return echo


@pytest.fixture
def no_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lineage's beat thread holds a sync connection of its own, named like the others:
    the tests that count the asyncio loops' clients while the registry runs go without it
    (closing releases it too: test_close_releases_every_connection)."""
    monkeypatch.setattr(Lineage, "ensure", lambda self: None)


@pytest.mark.usefixtures("no_beats")
def test_each_asyncio_run_closes_the_clients_made_for_its_loop(
        make_registry: Callable[..., Registry], redis_url: str, prefix: str,
        redis_client: redis.Redis) -> None:
    # asyncio.run() per job (a worker's task, a script): each loop gets its own clients,
    # closed as the loop shuts down, and nothing keeps the loop alive afterwards
    reg = make_registry(redis_url, client_name=prefix)
    f = _echo(reg)

    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def job(n: int) -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        assert [await f(n), await f(n)] == [n, n]
        assert sum(1 for c in redis_client.client_list() if c.get("name") == prefix) >= 1

    for n in range(8):
        asyncio.run(job(n))
        assert _connections_named(redis_client, prefix) == 0
    gc.collect()
    assert [ref() for ref in loops] == [None] * 8


@pytest.mark.usefixtures("no_beats")
def test_loops_in_many_threads_each_close_their_clients(
        make_registry: Callable[..., Registry], redis_url: str, prefix: str,
        redis_client: redis.Redis) -> None:
    # threads running asyncio.run() at once (a thread pool's jobs): loops come and go
    # concurrently on one registry
    reg = make_registry(redis_url, client_name=prefix)
    f = _echo(reg)

    def jobs(n: int) -> list[int]:
        return [asyncio.run(f(n * 100 + i)) for i in range(10)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(jobs, range(4)))
    assert results == [[n * 100 + i for i in range(10)] for n in range(4)]
    assert _connections_named(redis_client, prefix) == 0


@pytest.mark.usefixtures("no_beats")
def test_async_to_sync_closes_the_clients_made_for_its_loop(
        make_registry: Callable[..., Registry], redis_url: str, prefix: str,
        redis_client: redis.Redis) -> None:
    # asgiref's async_to_sync (a Django sync view calling async code) runs each call on a
    # new loop that it shuts down as asyncio.run() does
    from asgiref.sync import async_to_sync

    reg = make_registry(redis_url, client_name=prefix)
    f = _echo(reg)

    for n in range(5):
        assert async_to_sync(f)(n) == n
        assert _connections_named(redis_client, prefix) == 0


@pytest.mark.usefixtures("no_beats")
@pytest.mark.filterwarnings("ignore::ResourceWarning")  # the collector closes their sockets
def test_loops_closed_without_shutdown_leave_their_clients_to_the_collector(
        make_registry: Callable[..., Registry], redis_url: str, prefix: str,
        redis_client: redis.Redis) -> None:
    # A loop closed without shutdown_asyncgens() cannot close its clients any more: the
    # registry lets go of them when another loop comes, or at close, so that they do not
    # pile up for good (one per loop, as before)
    reg = make_registry(redis_url, client_name=prefix)
    f = _echo(reg)

    for n in range(5):
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(f(n)) == n
        finally:
            loop.close()
    gc.collect()
    assert _connections_named(redis_client, prefix) <= 1  # the last loop's, until close
    reg.close()
    gc.collect()
    assert _connections_named(redis_client, prefix) == 0


async def test_configure_closes_the_old_clients_of_the_running_loop(
        amake_registry: Callable[..., Registry], redis_url: str, prefix: str,
        redis_client: redis.Redis) -> None:
    reg = amake_registry(redis_url, client_name=prefix)

    @cached(registry=reg)
    async def f(x: int) -> int:
        return x

    assert await f(1) == 1
    reg.configure("memory://", prefix=prefix)
    await apoll(lambda: not any(c.get("name") == prefix for c in redis_client.client_list()))
    assert await f(1) == 1


DIRECT = {"max_connections": 1, "pool_timeout": 0.5, "socket_timeout": 0.3,
          "socket_connect_timeout": 0.3, "breaker_threshold": 100, "stats_interval": 0}


def test_a_read_that_fails_mid_reply_drops_its_connection_and_frees_the_pool(
        make_registry: Callable[..., Registry], fresh_redis: Server) -> None:
    # Reads go straight on a pooled connection (not through redis-py's command path): one
    # that times out leaves a late reply on its connection, which must not answer the next
    # read (the read drops the connection, and the pool checks for unread data too), and
    # must give the connection back (the pool holds one).
    reg = make_registry(fresh_redis.url, **DIRECT)

    @cached(registry=reg)
    def f(x: int) -> int:
        return x

    assert (f(1), f(1)) == (1, 1)  # a miss, then a hit
    fresh_redis.pause()
    try:
        assert f(1) == 1  # the read times out: the function answers
    finally:
        fresh_redis.resume()
    errors, hits = reg.stats().backend_errors, reg.stats().hits
    assert errors >= 1
    assert f(2) == 2  # a miss on the one connection, not the late reply of the read of 1
    assert f(1) == 1
    assert (reg.stats().hits, reg.stats().backend_errors) == (hits + 1, errors)


def test_a_reply_error_keeps_the_connection(make_registry: Callable[..., Registry],
                                            fresh_redis: Server, prefix: str) -> None:
    reg = make_registry(fresh_redis.url, **DIRECT)
    backend = reg.slot("default").backend()
    with redis.Redis.from_url(fresh_redis.url) as raw:
        raw.rpush(f"{prefix}:a-list", "x")
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        backend.read(f"{prefix}:a-list", ())
    assert backend.read(f"{prefix}:absent", ()) == (None, ())


@pytest.mark.parametrize("cut", ["socket timeout", "caller's timeout"])
async def test_an_asyncio_read_that_fails_mid_reply_drops_its_connection(
        amake_registry: Callable[..., Registry], fresh_redis: Server, cut: str) -> None:
    # The read times out, or the caller's own timeout (asyncio.wait_for) cancels it, while
    # Redis is silent.
    timeout = 0.3 if cut == "socket timeout" else 5.0
    reg = amake_registry(fresh_redis.url, **{**DIRECT, "socket_timeout": timeout})

    @cached(registry=reg)
    async def f(x: int) -> int:
        return x

    assert (await f(1), await f(1)) == (1, 1)
    fresh_redis.pause()
    try:
        if cut == "socket timeout":
            assert await f(1) == 1
        else:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(f(1), 0.2)
    finally:
        fresh_redis.resume()
    errors, hits = reg.stats().backend_errors, reg.stats().hits
    if cut == "socket timeout":
        assert errors >= 1
    assert await f(2) == 2  # not the late reply of the read that failed
    assert await f(1) == 1
    assert (reg.stats().hits, reg.stats().backend_errors) == (hits + 1, errors)


def test_a_store_loads_its_script_again_when_the_server_forgot_it(
        make_registry: Callable[..., Registry], fresh_redis: Server) -> None:
    # Stores go straight on a pooled connection too (EVALSHA, not redis-py's Script): a
    # server that lost its scripts (restarted, SCRIPT FLUSH) answers NOSCRIPT, and the store
    # loads the script and lands all the same.
    reg = make_registry(fresh_redis.url, **DIRECT)
    loads: list[int] = []

    @cached(registry=reg)
    def f(x: int) -> int:
        loads.append(x)
        return x

    assert f(1) == 1
    with redis.Redis.from_url(fresh_redis.url) as raw:
        raw.script_flush()
        assert f(2) == 2
        assert (raw.get(f.key(2)) or b"").startswith(b"cd1:")  # the entry was stored
    assert (f(1), f(2)) == (1, 2) and loads == [1, 2]  # both hits
    assert reg.stats().backend_errors == 0


async def test_an_asyncio_store_loads_its_script_again_when_the_server_forgot_it(
        amake_registry: Callable[..., Registry], fresh_redis: Server) -> None:
    reg = amake_registry(fresh_redis.url, **DIRECT)
    loads: list[int] = []

    @cached(registry=reg)
    async def f(x: int) -> int:
        loads.append(x)
        return x

    assert await f(1) == 1
    with redis.Redis.from_url(fresh_redis.url) as raw:
        raw.script_flush()
        assert await f(2) == 2
        assert (raw.get(f.key(2)) or b"").startswith(b"cd1:")
    assert (await f(1), await f(2)) == (1, 2) and loads == [1, 2]
    assert reg.stats().backend_errors == 0


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_direct_commands_encode_as_the_connection_would(
        make_registry: Callable[..., Registry], redis_url: str, redis_client: redis.Redis,
        prefix: str, encoding: str) -> None:
    # Direct commands are packed by hiredis when it encodes as the connections would (UTF-8),
    # else by the connection: a client made with ?encoding=latin-1 writes latin-1 key names.
    reg = make_registry(f"{redis_url}?encoding={encoding}", prefix=prefix, stats_interval=0)

    @cached(registry=reg)
    def f(name: str) -> str:
        return name.upper()

    assert (f("café"), f("café")) == ("CAFÉ", "CAFÉ")
    assert redis_client.exists(f.key("café").encode(encoding)) == 1
    assert f.stats().hits == 1


async def test_an_asyncio_send_that_cannot_finish_times_out_and_keeps_the_timeout(
        amake_registry: Callable[..., Registry], fresh_redis: Server) -> None:
    # An asyncio send is bounded by asyncio.timeout, not redis-py's wait_for (a task per
    # command on Python 3.11), with the connection's socket timeout lifted meanwhile: a
    # store too big for the socket buffers of a paused server must time out within the
    # socket timeout, and the reads after it must still time out.
    reg = amake_registry(fresh_redis.url, **DIRECT)  # socket_timeout 0.3 s, one connection
    big = "x" * (64 << 20)  # more than loopback's socket buffers hold

    @cached(registry=reg)
    async def f(x: int) -> str:
        if x == 1:
            fresh_redis.pause()  # after the read, before the store
        return big if x == 1 else "small"

    try:
        started = time.monotonic()
        assert await asyncio.wait_for(f(1), 10) == big  # the store could not finish
        assert time.monotonic() - started < 3
        assert reg.stats().backend_errors == 1
        started = time.monotonic()
        assert await asyncio.wait_for(f(2), 10) == "small"  # its read timed out too
        assert time.monotonic() - started < 3
        assert reg.stats().backend_errors == 2
    finally:
        fresh_redis.resume()
    assert (await f(2), await f(2)) == ("small", "small")  # a miss and a store, then a hit
    assert f.stats().hits == 1 and reg.stats().backend_errors == 2
