"""Auto-recovery's probe: where a single server listens (a URL's or a ready client's; no
address for Cluster or memory; behind TLS, with the client's certificate), the primary a
Sentinel URL's watch names, and a wait that returns once a probe gets through, or after its
budget, asking where before each probe; probes that overlap, so a server farther away than
the gap between two gets through; and a server no probe reaches though a try landed, tried
unprobed from then on (TLS probes: tests/deploy/test_reach_tls.py; that guard against real
servers: tests/deploy/test_reach_blind.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import redis.asyncio

from cachedeco.runtime.reach import (
    PROBE,
    Address,
    Reach,
    Secured,
    address,
    await_reachable,
    primary,
    wait_reachable,
)


@pytest.mark.parametrize(("kind", "spec", "where"), [
    ("redis", "redis://127.0.0.1:6390/0", ("127.0.0.1", 6390)),
    ("redis", "redis://user:pw@cache.example:6380", ("cache.example", 6380)),
    ("redis", "rediss://cache.example:6380", Secured("cache.example", 6380)),  # handshakes
    ("redis", "rediss://h:6380?ssl_certfile=/c.pem&ssl_keyfile=/k.pem",
     Secured("h", 6380, "/c.pem", "/k.pem")),
    ("redis", "redis://localhost", ("localhost", 6379)),
    ("redis", "unix:///run/redis.sock?db=2", "/run/redis.sock"),
    ("cluster", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001", None),
    ("sentinel", "redis+sentinel://127.0.0.1:26379/mymaster/0", None),
    ("memory", "memory://", None),
])
def test_the_address_of_a_url(kind: str, spec: str, where: object) -> None:
    assert address(kind, spec) == where


def test_a_url_takes_the_backends_certificate_as_its_client_does() -> None:
    options = {"ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem", "socket_timeout": 1.0}
    assert address("redis", "rediss://h:6380", options) == Secured("h", 6380, "/c.pem", "/k.pem")
    assert address("redis", "rediss://h:6380?ssl_certfile=/u.pem", options) == (
        Secured("h", 6380, "/u.pem", "/k.pem"))  # the URL's own option wins, as in redis-py
    assert address("redis", "redis://h:6380", options) == ("h", 6380)


def test_the_address_of_a_ready_client() -> None:
    assert address("redis", redis.Redis(host="10.0.0.5", port=6381)) == ("10.0.0.5", 6381)
    assert address("redis", redis.asyncio.Redis(unix_socket_path="/tmp/r.sock")) == "/tmp/r.sock"
    assert address("redis", object()) is None
    assert address("redis", redis.Redis(host="10.0.0.5", ssl=True, ssl_certfile="/c.pem")) == (
        Secured("10.0.0.5", 6379, "/c.pem"))


def _slot(kind: str, named: tuple[str, int] | None, **extra: object) -> SimpleNamespace:
    """A backend slot as :func:`primary` reads it: its kind, watch and options."""
    watch = None if kind != "sentinel" else SimpleNamespace(address=named)
    return SimpleNamespace(kind=kind, watch=watch, options=SimpleNamespace(extra=extra))


def test_a_sentinel_urls_primary_is_where_its_watch_says() -> None:
    assert primary(_slot("sentinel", ("10.0.0.7", 6390))) == ("10.0.0.7", 6390)
    assert primary(_slot("sentinel", None)) is None  # the sentinels have not answered yet
    assert primary(_slot("sentinel", ("10.0.0.7", 6390), ssl=True)) == Secured("10.0.0.7", 6390)
    assert primary(_slot("redis", None)) is None  # no watch: a single server, a ready client


@pytest.fixture
def listening() -> Iterator[tuple[str, int]]:
    """A socket that takes connections (the kernel completes them)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()


def _closed_port() -> tuple[str, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()  # nothing listens there once it is closed


def test_a_wait_returns_at_once_when_the_server_takes_connections(
        listening: tuple[str, int]) -> None:
    began = time.monotonic()
    wait_reachable(listening, budget=5.0)
    assert time.monotonic() - began < 1.0


def test_a_wait_ends_after_its_budget_when_no_connect_gets_through() -> None:
    began = time.monotonic()
    wait_reachable(_closed_port(), budget=0.3)
    took = time.monotonic() - began
    assert 0.3 - PROBE <= took < 2.0


def test_a_unix_socket_is_probed_too(tmp_path: Path) -> None:
    path = str(tmp_path / "r.sock")
    began = time.monotonic()
    wait_reachable(path, budget=0.2)  # nothing there yet: the budget
    assert time.monotonic() - began >= 0.2 - PROBE
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        began = time.monotonic()
        wait_reachable(path, budget=5.0)
        assert time.monotonic() - began < 1.0


async def test_the_asyncio_wait_alike(listening: tuple[str, int]) -> None:
    began = time.monotonic()
    await await_reachable(listening, budget=5.0)
    assert time.monotonic() - began < 1.0
    began = time.monotonic()
    await await_reachable(_closed_port(), budget=0.3)
    assert 0.3 - PROBE <= time.monotonic() - began < 2.0


def test_where_is_asked_again_before_each_probe(listening: tuple[str, int]) -> None:
    asked: list[Address] = []
    closed = _closed_port()

    def where() -> list[Address]:  # a primary that moved after two probes
        asked.append(closed if len(asked) < 2 else listening)
        return [asked[-1]]

    began = time.monotonic()
    wait_reachable(where, budget=5.0)
    assert time.monotonic() - began < 1.0
    assert asked == [closed, closed, listening]


def test_a_wait_ends_once_nothing_is_left_to_probe() -> None:
    answers: list[list[Address] | None] = [[_closed_port()], None]
    began = time.monotonic()
    wait_reachable(lambda: answers.pop(0), budget=5.0)
    assert time.monotonic() - began < 1.0
    assert answers == []


async def test_the_asyncio_wait_asks_again_too(listening: tuple[str, int]) -> None:
    answers: list[list[Address] | None] = [[_closed_port()], [_closed_port(), listening]]
    began = time.monotonic()
    await await_reachable(lambda: answers.pop(0), budget=5.0)
    assert time.monotonic() - began < 1.0
    assert answers == []


def test_a_tls_probe_with_a_certificate_that_cannot_be_loaded_is_skipped(
        tmp_path: Path) -> None:
    began = time.monotonic()  # the client could not connect either: its tries go unprobed
    wait_reachable(Secured(*_closed_port(), certfile=str(tmp_path / "absent.pem")), budget=5.0)
    assert time.monotonic() - began < 1.0


def test_a_secured_address_never_shows_its_password() -> None:
    assert "hunter2" not in repr(Secured("h", 1, "/c.pem", "/k.pem", "hunter2"))


def test_a_round_ends_at_the_first_server_that_connects(listening: tuple[str, int]) -> None:
    began = time.monotonic()  # one backend's server down, another's back
    wait_reachable(lambda: [_closed_port(), listening], budget=5.0)
    assert time.monotonic() - began < 1.0


class _Host:
    """A registry as :class:`Reach` reads it: its backend slots by name."""

    def __init__(self, **slots: SimpleNamespace) -> None:
        self.slots = slots
        self.prefix = "cachedeco"

    def slot(self, name: str) -> SimpleNamespace:
        return self.slots[name]


def _backend(spec: str, kind: str = "redis") -> SimpleNamespace:
    return SimpleNamespace(kind=kind, spec=spec, flavours=("sync", "async"), watch=None,
                           options=SimpleNamespace(extra={}))


def test_every_waiting_backend_is_probed_and_an_unprobed_one_is_not_held_back() -> None:
    one, two = _closed_port(), _closed_port()  # two servers down
    host = _Host(a=_backend(f"redis://127.0.0.1:{one[1]}"),
                 b=_backend(f"redis://127.0.0.1:{two[1]}"),
                 c=_backend("redis+cluster://127.0.0.1:7000", kind="cluster"))
    waiting = ["a", "b"]
    reach = Reach(lambda: host, lambda: waiting)
    assert reach.targets(True) == [one, two]
    assert reach.targets(False) is None  # no asyncio-only backend waits
    waiting.append("c")  # a Cluster try goes without a probe, so the wait ends at once
    assert reach.targets(True) is None
    began = time.monotonic()
    reach.wait(5.0, lambda: False)
    assert time.monotonic() - began < 0.5


@pytest.fixture
def far(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every probe's connect takes 0.15 s (a server three times :data:`PROBE` away: a delay
    before each real connect, as a round trip that long would add)."""
    real = asyncio.open_connection

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.15)
        return await real(*args, **kwargs)

    monkeypatch.setattr(asyncio, "open_connection", slow)


@pytest.mark.usefixtures("far")
def test_a_server_farther_away_than_a_probe_gets_through(listening: tuple[str, int]) -> None:
    began = time.monotonic()  # probes overlap: each goes on for up to CONNECT
    wait_reachable(listening, budget=3.0)
    assert 0.15 <= time.monotonic() - began < 0.6


@pytest.mark.usefixtures("far")
async def test_the_asyncio_probe_of_a_far_server_alike(listening: tuple[str, int]) -> None:
    began = time.monotonic()
    await await_reachable(listening, budget=3.0)
    assert 0.15 <= time.monotonic() - began < 0.6


def test_a_unix_socket_with_its_queue_full_does_not_pass(tmp_path: Path) -> None:
    path = str(tmp_path / "r.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(0)
        queued = []
        for _ in range(4):  # fill the queue (a frozen server takes none)
            sock = socket.socket(socket.AF_UNIX)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(path)
            queued.append(sock)
        began = time.monotonic()
        wait_reachable(path, budget=0.3)
        assert time.monotonic() - began >= 0.3 - PROBE

        def take() -> None:
            server.accept()[0].close()

        threading.Timer(0.2, take).start()
        began = time.monotonic()  # the server takes its queue again
        wait_reachable(path, budget=5.0)
        assert 0.2 <= time.monotonic() - began < 1.0
        for sock in queued:
            sock.close()


def test_a_server_probed_in_vain_before_a_try_that_landed_is_tried_unprobed() -> None:
    where = _closed_port()
    host = _Host(a=_backend(f"redis://127.0.0.1:{where[1]}"))
    waiting = ["a"]
    reach = Reach(lambda: host, lambda: waiting)
    reach.wait(0.2, lambda: False)  # no probe got through: the budget ran out
    reach.settle()  # the try failed: the changes still wait
    assert reach.targets(True) == [where]
    reach.wait(0.2, lambda: False)
    waiting.clear()  # the try landed, yet one more probe does not get through
    reach.settle()
    waiting.append("a")
    assert reach.targets(True) is None  # its tries go unprobed
    assert reach.blind == {where}


def test_a_server_that_came_back_as_the_budget_ran_out_stays_probed() -> None:
    where = _closed_port()
    host = _Host(a=_backend(f"redis://127.0.0.1:{where[1]}"))
    waiting = ["a"]
    reach = Reach(lambda: host, lambda: waiting)
    reach.wait(0.2, lambda: False)
    with socket.socket() as server:  # up again: the try lands, and so does a probe
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(where)
        server.listen(8)
        waiting.clear()
        reach.settle()
    waiting.append("a")
    assert reach.targets(True) == [where]
    assert not reach.blind


def test_a_host_name_is_looked_up(listening: tuple[str, int]) -> None:
    began = time.monotonic()  # localhost: ::1 refused (nothing listens there), then 127.0.0.1
    wait_reachable(("localhost", listening[1]), budget=5.0)
    assert time.monotonic() - began < 1.0


def test_a_resolver_that_hangs_holds_one_lookup_not_one_per_probe(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    async def hangs(self: asyncio.AbstractEventLoop, host: str, *args: Any,
                    **kwargs: Any) -> Any:
        asked.append(host)
        await asyncio.sleep(10)

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", hangs)
    began = time.monotonic()
    wait_reachable(("cache.example", 6379), budget=0.5)
    assert time.monotonic() - began < 1.5
    assert asked == ["cache.example"]  # each probe's own lookup: one per 50 ms
