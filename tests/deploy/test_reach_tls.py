"""Auto-recovery's probe of a server behind TLS (:mod:`cachedeco.runtime.reach`): it completes
the handshake before it closes, so the server logs nothing (a connection closed before its
handshake is a warning there, one per probe), and a frozen server, which the kernel still
connects to, is not taken for one that answers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import redis
import uvloop

from cachedeco.runtime.reach import (
    HANDSHAKE,
    PROBE,
    Secured,
    address,
    await_reachable,
    wait_reachable,
)
from tools.servers import Server, start_single

#: The line a server logs for a TLS connection closed before its handshake.
WARNING = "Error accepting a client connection"


@pytest.fixture
def tls_server() -> Iterator[Server]:
    """A private server with a TLS port (clients need no certificate), stopped after."""
    with start_single(tls=True) as server:
        try:
            yield server
        finally:
            server.resume()


def _where(server: Server) -> Secured:
    where = address("redis", server.tls_url)
    assert isinstance(where, Secured)
    return where


def test_a_tls_url_and_a_tls_client_are_probed_with_a_handshake(tls_server: Server) -> None:
    where = _where(tls_server)
    assert (where.host, where.port) == ("127.0.0.1", tls_server.tls_port)
    client = redis.Redis.from_url(tls_server.tls_url)
    assert address("redis", client) == where
    client.close()


def test_probes_of_a_tls_server_leave_no_warning_in_its_log(tls_server: Server) -> None:
    began = time.monotonic()
    for _ in range(5):
        wait_reachable(_where(tls_server), budget=5.0)
    assert time.monotonic() - began < 2.0
    time.sleep(0.2)  # the server reads each connection's end
    assert WARNING not in tls_server.process.log_tail(50)


async def test_asyncio_probes_alike(tls_server: Server) -> None:
    began = time.monotonic()
    for _ in range(5):
        await await_reachable(_where(tls_server), budget=5.0)
    assert time.monotonic() - began < 2.0
    time.sleep(0.2)
    assert WARNING not in tls_server.process.log_tail(50)


def test_probes_under_uvloop_leave_no_warning_either(tls_server: Server) -> None:
    # uvloop may still hold the handshake's last message when start_tls returns: a probe
    # that cut the connection then left an "unexpected eof" warning, one per probe.
    async def probes() -> None:
        for _ in range(5):
            assert await await_reachable(_where(tls_server), budget=5.0)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(probes())
    time.sleep(0.2)
    assert WARNING not in tls_server.process.log_tail(50)


def test_a_frozen_tls_server_is_not_taken_for_one_that_answers(tls_server: Server) -> None:
    tls_server.pause()  # the kernel still completes connects: the handshake does not
    began = time.monotonic()
    assert not wait_reachable(_where(tls_server), budget=0.3)
    # its handshake waits up to HANDSHAKE; the budget ends with it (it took 2 s, a second
    # round going after the budget had run out)
    assert 0.3 - PROBE <= time.monotonic() - began < HANDSHAKE + 0.5


async def test_the_asyncio_probe_of_a_frozen_tls_server_alike(tls_server: Server) -> None:
    tls_server.pause()
    began = time.monotonic()
    assert not await await_reachable(_where(tls_server), budget=0.3)
    assert 0.3 - PROBE <= time.monotonic() - began < HANDSHAKE + 0.5


def test_a_probe_taken_while_frozen_handshakes_in_its_turn_after_the_heal(
        tls_server: Server) -> None:
    tls_server.pause()
    done: list[float] = []
    waiter = threading.Thread(target=lambda: (wait_reachable(_where(tls_server), budget=5.0),
                                              done.append(time.monotonic())))
    waiter.start()
    time.sleep(0.3)  # a probe that gave up on its handshake here would leave a warning
    tls_server.resume()
    healed = time.monotonic()
    waiter.join(5.0)
    assert done and done[0] - healed < 0.5
    time.sleep(0.2)
    assert WARNING not in tls_server.process.log_tail(50)
