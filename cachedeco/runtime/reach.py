"""Whether a server takes connections again, asked with a bare connect every 50 ms.

A server frozen long enough, while every process opened connections to it, has its kernel's
accept queue full: a connection opened then has its SYN dropped, and TCP sends it again only
a second later. A recovery try on such a connection waits out ``socket_connect_timeout``
although the server answers others again, and meanwhile other processes serve the entries
its kept drops concern. So before each try auto-recovery probes, starting a connect every
:data:`PROBE` seconds until one connects (at once, against a server that takes connections;
each goes on for up to :data:`CONNECT`, so a server farther away than :data:`PROBE` gets
through too), and the try then goes on a connection the server takes. Probed: a single
server (a URL's host and port or Unix socket, or a ready client's) and the primary a
Sentinel URL's watch last named (asked again at each probe: a failover moves it); Cluster
tries go as before. Behind TLS a probe completes the handshake (with the client's
certificate, if it has one) before it closes: a connection closed before its handshake is a
warning in the server's log, and a frozen server, which takes connections but answers
nothing, does not complete one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import redis.connection

from cachedeco.core.logs import say
from cachedeco.errors import CacheError

__all__ = [
    "CONNECT", "HANDSHAKE", "PROBE", "Address", "Reach", "Secured", "address",
    "await_reachable", "primary", "wait_reachable",
]

#: Seconds between two probes.
PROBE: Final = 0.05
#: The most a probe's connect goes on. Probes overlap (a new one every :data:`PROBE`), so a
#: server more than 50 ms away still gets through, while a frozen server whose full queue
#: dropped a connect's first packet (TCP sends it again only a second later) gets a fresh
#: one every :data:`PROBE`.
CONNECT: Final = 1.0
#: The most a probe behind TLS waits for its handshake once connected: a connection the
#: server's queue took is in line, and a server that heals, busy with the connections queued
#: while it was frozen, handshakes with it in its turn (a short wait would give up, and
#: queue another, each time).
HANDSHAKE: Final = 1.0


@dataclass(frozen=True, slots=True)
class Secured:
    """A server behind TLS, and the client certificate the client presents (if any)."""

    host: str
    port: int
    certfile: str | None = None
    keyfile: str | None = None
    password: str | None = field(default=None, repr=False)


#: Where a single server listens: (host, port), a Unix socket's path, or a TLS server.
Address = tuple[str, int] | str | Secured


def _secured(host: str, port: int, options: Mapping[str, Any]) -> Secured:
    """``host:port`` behind TLS, with the client certificate among redis-py's ``options``."""
    def option(name: str) -> str | None:
        value = options.get(name)
        return value if isinstance(value, str) and value else None

    return Secured(host, port, option("ssl_certfile"), option("ssl_keyfile"),
                   option("ssl_password"))


def address(kind: str, spec: object, options: Mapping[str, Any] | None = None
            ) -> Address | None:
    """Where the single server of a backend (its URL with the backend's connection
    ``options``, as redis-py merges them, or a ready client) listens; None for other kinds
    and a client that does not say."""
    if kind != "redis":
        return None
    if isinstance(spec, str):
        # the URL's own options win over the backend's, as in redis-py's from_url
        parsed: dict[str, Any] = redis.connection.parse_url(  # type: ignore[no-untyped-call, unused-ignore]
            spec)
        kwargs: Mapping[str, Any] = {**(options or {}), **parsed}
        connection_class = parsed.get("connection_class")
    else:
        pool = getattr(spec, "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", {})
        connection_class = getattr(pool, "connection_class", None)
    if kwargs.get("path"):
        return str(kwargs["path"])
    if kwargs.get("host"):
        host, port = str(kwargs["host"]), int(kwargs.get("port") or 6379)
        tls = "SSL" in getattr(connection_class, "__name__", "")
        return _secured(host, port, kwargs) if tls else (host, port)
    return None


def primary(slot: Any) -> Address | None:
    """The primary a Sentinel URL's watch last named (None before its first answer, and for
    a ready client, which has no watch)."""
    watch = getattr(slot, "watch", None)
    named = watch.address if watch is not None and slot.kind == "sentinel" else None
    if named is None:
        return None
    host, port = named
    return _secured(host, port, slot.options.extra) if slot.options.extra.get("ssl") else (
        host, port)


@functools.lru_cache(maxsize=8)
def _context(certfile: str | None, keyfile: str | None,
             password: str | None) -> ssl.SSLContext | None:
    """A TLS context for probes (None when the certificate cannot be loaded: the probe is
    then skipped). The server is not verified: a probe only completes a handshake and
    sends nothing else."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if certfile:
        try:
            context.load_cert_chain(certfile, keyfile, password)
        except (OSError, ValueError):
            return None
    return context


#: Where to probe: an address, or a question asked before each round of probes, whose
#: answer is the addresses of the round (it ends at the first that connects; None or none:
#: stop probing).
Where = Address | Callable[[], list[Address] | None]


def _asker(where: Where) -> Callable[[], list[Address]]:
    if callable(where):
        return lambda: where() or []
    return lambda: [where]


def _unix(path: str) -> bool:
    """A probe of a Unix socket: it connects at once, or not at all (its queue full)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.setblocking(False)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def _literal(host: str) -> bool:
    """Whether ``host`` is an IP address (no lookup needed)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close a probe's connection: what it still holds goes out first (after a handshake
    uvloop may still hold its last message: cut off, the server logs an unexpected EOF),
    and the server's end is waited for only briefly (a server that just healed answers the
    connections queued before it)."""
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(PROBE):
            await writer.wait_closed()
    writer.transport.abort()


async def _handshakes(where: Secured, writer: asyncio.StreamWriter) -> bool:
    """Whether the server behind ``writer`` completes a TLS handshake within
    :data:`HANDSHAKE` (one it refused was answered: it takes connections)."""
    context = _context(where.certfile, where.keyfile, where.password)
    assert context is not None  # a target without one is not probed
    try:
        async with asyncio.timeout(HANDSHAKE):
            await writer.start_tls(context, server_hostname=where.host)
    except ssl.SSLError:  # refused, so answered
        writer.transport.abort()
        return True
    except (OSError, TimeoutError):
        writer.transport.abort()
        return False
    await _close(writer)
    return True


class _Probes:
    """The probes in flight: TCP connects started one round after another, each going on
    for up to :data:`CONNECT`; behind TLS the first that connects handshakes alone (the
    others are dropped before they connect: a connection closed before its handshake is a
    warning in the server's log)."""

    def __init__(self) -> None:
        self._flying: dict[asyncio.Task[asyncio.StreamWriter | None],
                           tuple[str, int] | Secured] = {}
        #: Each host name's lookup under way, shared by the probes that need it: a resolver
        #: that hangs holds one lookup, not one per probe (a lookup runs in a thread that
        #: cannot be stopped, and the loop waits for it as it closes).
        self._lookups: dict[str, asyncio.Future[list[Any]]] = {}

    async def _addresses(self, host: str, port: int) -> list[str]:
        """``host`` itself when it is an IP address, else the answer of the lookup under
        way or of a new one (so a server whose name now leads elsewhere is followed)."""
        if _literal(host):
            return [host]
        lookup = self._lookups.get(host)
        if lookup is None or lookup.done():
            lookup = self._lookups[host] = asyncio.ensure_future(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM))
        answer = await asyncio.shield(lookup)
        return list(dict.fromkeys(str(info[4][0]) for info in answer))

    async def _connect(self, where: tuple[str, int] | Secured) -> asyncio.StreamWriter | None:
        """One probe's TCP connect (to each of the host's addresses in turn), given up after
        :data:`CONNECT` (None: not connected)."""
        host, port = (where.host, where.port) if isinstance(where, Secured) else where
        with contextlib.suppress(OSError, TimeoutError):  # a failed lookup is an OSError
            async with asyncio.timeout(CONNECT):
                for ip in await self._addresses(host, port):
                    with contextlib.suppress(OSError):
                        _, writer = await asyncio.open_connection(ip, port)
                        return writer
        return None

    async def round(self, targets: list[Address], until: float) -> bool:
        """Start a probe of each target, then wait until ``until`` for one to get through;
        whether one did."""
        for target in targets:
            if isinstance(target, str):
                if _unix(target):
                    return True
            elif isinstance(target, Secured) and _context(
                    target.certfile, target.keyfile, target.password) is None:
                return True  # a certificate the probe cannot load: the try goes unprobed
            else:
                self._flying[asyncio.create_task(self._connect(target))] = target
        while (left := until - time.monotonic()) > 0 and self._flying:
            done, _ = await asyncio.wait(self._flying, timeout=left,
                                         return_when=asyncio.FIRST_COMPLETED)
            connected = [(self._flying.pop(task), task.result()) for task in done]
            for target, writer in connected:
                if writer is None:
                    continue
                if not isinstance(target, Secured):
                    await self.drop(connected)
                    return True
                await self.drop(connected, keep=writer)  # it handshakes alone
                if await _handshakes(target, writer):
                    return True
                break  # the others are dropped: the next round starts anew
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        return False

    async def drop(self, connected: Iterable[tuple[Address, asyncio.StreamWriter | None]] = (),
                   keep: asyncio.StreamWriter | None = None) -> None:
        """Give up the probes in flight, and close ``connected``'s but ``keep``."""
        for task in self._flying:
            task.cancel()
        if self._flying:
            await asyncio.wait(self._flying)
        late = [task.result() for task in self._flying if not task.cancelled()]
        self._flying.clear()
        for lookup in self._lookups.values():  # none left running, no failure unread
            if not lookup.done():
                lookup.cancel()
            elif not lookup.cancelled():
                lookup.exception()
        self._lookups.clear()
        for writer in [writer for _, writer in connected] + late:
            if writer is not None and writer is not keep:
                await _close(writer)


async def await_reachable(where: Where, budget: float,
                          stop: Callable[[], bool] = lambda: False) -> bool:
    """Return once a probe of ``where`` gets through, after ``budget`` seconds, once
    ``stop()`` (the worker closes), or once ``where()`` names nothing to probe; False when
    the budget ran out."""
    ask, end, probes = _asker(where), time.monotonic() + budget, _Probes()
    try:
        while targets := ask():
            began = time.monotonic()
            if stop() or await probes.round(targets, began + PROBE):
                return True
            if max(time.monotonic(), began + PROBE) >= end:  # a handshake may take a second
                return False
        return True
    finally:
        await probes.drop()


def wait_reachable(where: Where, budget: float,
                   stop: Callable[[], bool] = lambda: False) -> bool:
    """The thread's form of :func:`await_reachable`: the same probes, on a loop of its own
    (auto-recovery's thread runs none)."""
    return asyncio.run(await_reachable(where, budget, stop))


class Host(Protocol):
    """What the probes need of their registry: its backends, and its prefix (log lines)."""

    prefix: str

    def slot(self, name: str) -> Any: ...


class Reach:
    """The probes of auto-recovery's worker: where the backends with changes waiting for
    this flavour of worker listen (``host()``: the registry, or None once it is gone;
    ``waiting()``: the backends with changes waiting)."""

    def __init__(self, host: Callable[[], Host | None], waiting: Callable[[], Iterable[str]]
                 ) -> None:
        self._host = host
        self._waiting = waiting
        #: Addresses a bare connect does not reach though their clients do: not probed.
        self.blind: set[Address] = set()
        #: Per flavour (sync?), the backends whose probes ran out of budget before a try.
        self._unmet: dict[bool, dict[str, Address]] = {}

    def _targets(self, sync: bool) -> dict[str, Address] | None:
        host = self._host()
        if host is None:
            return None
        found: dict[str, Address] = {}
        for name in list(self._waiting()):
            try:
                slot = host.slot(name)
            except CacheError:  # the backend is gone after configure()
                continue
            if ("sync" in slot.flavours) != sync:
                continue
            where = address(slot.kind, slot.spec, slot.options.extra) or primary(slot)
            if where is None or where in self.blind:
                return None
            found[name] = where
        return found or None

    def targets(self, sync: bool) -> list[Address] | None:
        """The addresses to probe for the ``sync`` (thread) or asyncio worker: one per
        backend with changes waiting (a try goes once one of them connects); None when one
        of those is not probed (Cluster, a client that does not say where it connects, a
        server its probes do not reach: see :meth:`asettle`): its tries go at once, as they
        would without probes."""
        found = self._targets(sync)
        return None if found is None else list(found.values())

    async def await_(self, budget: float, stop: Callable[[], bool], sync: bool = False) -> None:
        """The worker's wait (:func:`await_reachable`; the targets are asked before each
        round), at once when nothing is probed."""
        if not await await_reachable(lambda: self.targets(sync), budget, stop):
            self._unmet[sync] = self._targets(sync) or {}

    def wait(self, budget: float, stop: Callable[[], bool]) -> None:
        """The thread's wait, on a loop of its own."""
        asyncio.run(self.await_(budget, stop, sync=True))

    async def asettle(self, sync: bool = False) -> None:
        """After a try. A backend whose changes landed although no probe got through before
        it, and which one more probe does not reach either, is behind something that treats
        a bare connect apart from its client's (a proxy, a firewall): its tries go unprobed
        from then on, each one else waiting out the probes' budget."""
        unmet, self._unmet[sync] = self._unmet.get(sync, {}), {}
        waiting = set(self._waiting())
        for name, where in unmet.items():
            if name not in waiting and not await await_reachable(where, CONNECT):
                self.blind.add(where)
                host = self._host()
                say(None if host is None else host.prefix, logging.WARNING, "backend %r: its "
                    "recovery tries land but a bare connect to its server does not get "
                    "through; they go without a probe from now on", name)

    def settle(self) -> None:
        """The thread's :meth:`asettle` (on a loop of its own, only when it has a probe to
        make)."""
        if self._unmet.get(True):
            asyncio.run(self.asettle(sync=True))
