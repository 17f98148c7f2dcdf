"""A freeze long enough to fill the server's accept queue (each process opens connections
while it waits, and the kernel queues at most ``tcp-backlog`` of them): the connection
auto-recovery's attempt opens then is one the server never takes, and its connect waits for
TCP to send it again, a second later. Meanwhile the entries its kept drops concern are
served by every other process. So each try goes only once a probe (every 50 ms: a connect,
and behind TLS its handshake) to the server, or to a Sentinel service's primary, got through,
and lands within milliseconds of the heal even when the process makes no call (its breaker
open, say); and, where no probe goes (Cluster; switched off here), the first call this
process gets answered after the heal hurries those drops out beside a try under way. Each
single-server test runs over plain TCP and over TLS. (A try on a connection the server never
took alone landed about a second after the heal.)"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cachedeco import Registry
from cachedeco.runtime import reach
from tests.support.polling import apoll, poll
from tools.servers import SentinelSetup, Server, start_sentinel, start_single
from tools.servers.process import RedisProcess

#: The stuck attempt's connect waits for TCP's second SYN, a second after the first; a
#: hurried drop lands well within this.
HURRIED = 0.5
OPTIONS = {"socket_timeout": 0.3, "socket_connect_timeout": 5.0, "stats_interval": 0}


@contextlib.contextmanager
def narrow_server(tls: bool) -> Iterator[Server]:
    """A private server whose kernel queues one connection it has not taken (``tcp-backlog
    1``: two, on Linux), with a TLS port too (``tls``), resumed and stopped on the way out."""
    server = start_single(backlog=1, tls=tls)
    try:
        yield server
    finally:
        server.resume()
        server.process.stop()


@pytest.fixture(params=["plain", "tls"])
def narrow(request: pytest.FixtureRequest) -> Iterator[Server]:
    """:func:`narrow_server`, plain then TLS."""
    with narrow_server(request.param == "tls") as server:
        yield server


def _front(server: Server) -> tuple[str, int]:
    """The URL the test's clients use, and its port: TLS when the server has it."""
    if server.tls_port is not None:
        return server.tls_url, server.tls_port
    return server.url, server.port


@pytest.fixture
def narrow_sentinel() -> Iterator[SentinelSetup]:
    """A private Sentinel setup whose servers queue one connection they have not taken, and
    whose sentinels hold the primary down only after 10 s: no failover during a freeze."""
    with start_sentinel(backlog=1, down_after=10_000) as setup:
        try:
            yield setup
        finally:
            setup.primary.resume()


@contextlib.contextmanager
def full_accept_queue(port: int) -> Iterator[None]:
    """While the server on ``port`` is frozen: connections opened until one is not taken
    (the queue is full), closed once the block ends (the server then takes and drops
    them)."""
    opened: list[socket.socket] = []
    try:
        while True:
            sock = socket.socket()
            opened.append(sock)
            sock.settimeout(0.2)
            try:
                sock.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        yield
    finally:
        for sock in opened:
            sock.close()


def _catalogue(reg: Registry, db: dict[int, int], flavour: str) -> tuple[Any, Any]:
    """A reader over ``db`` and its write-through writer, sync or asyncio."""
    if flavour == "sync":
        @reg.cached(ttl=300, key="item:{x}")
        def get(x: int) -> int:
            return db[x]

        @reg.write_through(get)
        def put(x: int) -> int:
            db[x] += 1
            return db[x]

        return get, put

    @reg.cached(ttl=300, key="item:{x}")
    async def aget(x: int) -> int:
        return db[x]

    @reg.write_through(aget)
    async def aput(x: int) -> int:
        db[x] += 1
        return db[x]

    return aget, aput


@pytest.fixture
def unprobed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recovery tries go without a probe first, as on Cluster: the hurry alone lands the
    drops before the stuck try would."""
    monkeypatch.setattr(reach, "address", lambda *where: None)


@pytest.mark.usefixtures("unprobed")
def test_a_drop_kept_in_a_freeze_lands_once_a_call_is_answered(
        narrow: Server, make_registry: Callable[..., Registry]) -> None:
    db = {1: 0, 2: 0}
    url, port = _front(narrow)
    reg = make_registry(url, **OPTIONS)
    other = make_registry(url, **OPTIONS)  # another process, in effect
    get, put = _catalogue(reg, db, "sync")
    oget, _ = _catalogue(other, db, "sync")
    assert (get(1), get(2), oget(1)) == (0, 0, 0)
    narrow.pause()
    with full_accept_queue(port):
        assert put(1) == 1  # its store times out: the drop is kept, an attempt connects
        assert reg.stats().recoveries_pending == 1
        time.sleep(0.1)  # the attempt's connect is on its way, never taken
        narrow.resume()
    assert get(2) == 0  # a hit, answered: the backend is back
    answered = time.monotonic()
    poll(lambda: reg.stats().recoveries_pending == 0, timeout=5.0)
    assert time.monotonic() - answered < HURRIED
    assert oget(1) == 1  # the other process no longer reads the old entry


@pytest.mark.usefixtures("unprobed")
async def test_an_asyncio_client_hurries_its_drops_too(
        narrow: Server, amake_registry: Callable[..., Registry]) -> None:
    db = {1: 0, 2: 0}
    url, port = _front(narrow)
    client = redis.asyncio.Redis.from_url(url, socket_timeout=0.3,
                                          socket_connect_timeout=5.0,
                                          retry=Retry(NoBackoff(), 0))
    reg = amake_registry(client, stats_interval=0)
    other = amake_registry(url, **OPTIONS)
    get, put = _catalogue(reg, db, "asyncio")
    oget, _ = _catalogue(other, db, "asyncio")
    assert (await get(1), await get(2), await oget(1)) == (0, 0, 0)
    narrow.pause()
    try:
        with full_accept_queue(port):
            assert await put(1) == 1
            assert reg.stats().recoveries_pending == 1
            await asyncio.sleep(0.1)
            narrow.resume()
        assert await get(2) == 0
        answered = time.monotonic()
        await apoll(lambda: reg.stats().recoveries_pending == 0, timeout=5.0)
        assert time.monotonic() - answered < HURRIED
        assert await oget(1) == 1
    finally:
        await client.aclose()


def _lands_without_a_call(url: str, frozen: RedisProcess, port: int,
                          make_registry: Callable[..., Registry], *, freeze: float = 0.3,
                          within: float = HURRIED) -> None:
    """A drop kept while ``frozen`` (the server ``url`` leads to) is frozen with its accept
    queue full (``freeze`` seconds after the write) lands within ``within`` seconds of the
    heal, with no call in between."""
    db = {1: 0}
    reg = make_registry(url, **OPTIONS)
    other = make_registry(url, **OPTIONS)
    get, put = _catalogue(reg, db, "sync")
    oget, _ = _catalogue(other, db, "sync")
    assert (get(1), oget(1)) == (0, 0)
    frozen.pause()
    with full_accept_queue(port):
        assert put(1) == 1
        time.sleep(freeze)  # the worker probes: none gets through
        assert reg.stats().recoveries_pending == 1
        frozen.resume()
    healed = time.monotonic()
    poll(lambda: reg.stats().recoveries_pending == 0, timeout=5.0)
    assert time.monotonic() - healed < within
    assert oget(1) == 1


def test_with_no_call_the_drop_lands_once_the_server_takes_connections(
        narrow: Server, make_registry: Callable[..., Registry]) -> None:
    url, port = _front(narrow)
    _lands_without_a_call(url, narrow.process, port, make_registry)


def test_a_freeze_longer_than_a_few_seconds_does_not_send_a_try_into_the_queue(
        make_registry: Callable[..., Registry]) -> None:
    # Probes gave way to a try after 5 s (as before): its connection, which the full queue
    # never took, landed 0.53-0.56 s after a heal at 6.5 s; milliseconds now (5-26 ms).
    with narrow_server(tls=False) as server:
        _lands_without_a_call(server.url, server.process, server.port, make_registry,
                              freeze=6.5, within=0.3)


def test_a_sentinel_services_primary_is_probed_too(
        narrow_sentinel: SentinelSetup, make_registry: Callable[..., Registry]) -> None:
    primary = narrow_sentinel.primary
    _lands_without_a_call(narrow_sentinel.url, primary, primary.port, make_registry)
