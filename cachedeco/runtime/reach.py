"""Whether a server takes connections again, asked with a bare connect of a short timeout.

A server frozen long enough, while every process opened connections to it, has its kernel's
accept queue full: a connection opened then has its SYN dropped, and TCP sends it again only
a second later. A recovery try on such a connection waits out ``socket_connect_timeout``
although the server answers others again, and meanwhile other processes serve the entries
its kept drops concern. So before each try auto-recovery probes, every :data:`PROBE` seconds
until one connects (at once, against a server that takes connections), and the try then
goes on a connection the server takes. Probed: a single server without TLS (a URL's host
and port or Unix socket, or a ready client's) and the primary a Sentinel URL's watch last
named (asked again at each probe: a failover moves it); Cluster and TLS tries go as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, Final
from urllib.parse import urlsplit

from cachedeco.errors import CacheError

__all__ = ["PROBE", "Address", "Reach", "address", "await_reachable", "primary", "wait_reachable"]

#: Seconds between two probes, and the most one waits for its connect.
PROBE: Final = 0.05

#: Where a single server listens: (host, port), or a Unix socket's path.
Address = tuple[str, int] | str


def address(kind: str, spec: object) -> Address | None:
    """Where the single server of a backend (its URL, or a ready client) listens; None for
    other kinds, a client that does not say, and TLS (a server logs a warning for each
    connection closed before its handshake: one per try)."""
    if kind != "redis":
        return None
    if isinstance(spec, str):
        parts = urlsplit(spec)
        if parts.scheme.lower() == "unix":
            return parts.path or None
        if parts.scheme.lower() != "redis":
            return None
        return (parts.hostname or "localhost", parts.port or 6379)
    pool = getattr(spec, "connection_pool", None)
    if "SSL" in getattr(getattr(pool, "connection_class", None), "__name__", ""):
        return None
    kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", {})
    if kwargs.get("path"):
        return str(kwargs["path"])
    if kwargs.get("host"):
        return (str(kwargs["host"]), int(kwargs.get("port") or 6379))
    return None


def primary(slot: Any) -> Address | None:
    """The primary a Sentinel URL's watch last named (None before its first answer, for a
    ready client, which has no watch, and for TLS connections: see :func:`address`)."""
    watch = getattr(slot, "watch", None)
    if slot.kind != "sentinel" or watch is None or slot.options.extra.get("ssl"):
        return None
    found: Address | None = watch.address
    return found


#: Where to probe: an address, or a question asked before each probe (None: stop probing).
Where = Address | Callable[[], Address | None]


def _asker(where: Where) -> Callable[[], Address | None]:
    return where if callable(where) else (lambda: where)


def _connects(where: Address) -> bool:
    """One probe: whether a connect to ``where`` completes within :data:`PROBE`."""
    try:
        if isinstance(where, str):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(PROBE)
                sock.connect(where)
        else:
            socket.create_connection(where, timeout=PROBE).close()
    except OSError:
        return False
    return True


def wait_reachable(where: Where, budget: float,
                   stop: Callable[[], bool] = lambda: False) -> None:
    """Return once a probe of ``where`` connects, after ``budget`` seconds, once ``stop()``
    (the worker closes), or once ``where()`` says None."""
    ask, end = _asker(where), time.monotonic() + budget
    while (now := ask()) is not None:
        began = time.monotonic()
        if stop() or _connects(now) or began + PROBE >= end:
            return
        time.sleep(max(0.0, PROBE - (time.monotonic() - began)))


async def _aconnects(where: Address) -> bool:
    """The asyncio form of :func:`_connects`."""
    try:
        async with asyncio.timeout(PROBE):
            if isinstance(where, str):
                _, writer = await asyncio.open_unix_connection(where)
            else:
                _, writer = await asyncio.open_connection(*where)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def await_reachable(where: Where, budget: float,
                          stop: Callable[[], bool] = lambda: False) -> None:
    """The asyncio form of :func:`wait_reachable`."""
    ask, end = _asker(where), time.monotonic() + budget
    while (now := ask()) is not None:
        began = time.monotonic()
        if stop() or await _aconnects(now) or began + PROBE >= end:
            return
        await asyncio.sleep(max(0.0, PROBE - (time.monotonic() - began)))


class Reach:
    """The probes of auto-recovery's worker: where the first backend with changes waiting
    for this flavour of worker listens (``host()``: the registry, or None once it is gone;
    ``waiting()``: the backends with changes waiting)."""

    def __init__(self, host: Callable[[], Any], waiting: Callable[[], Iterable[str]]) -> None:
        self._host = host
        self._waiting = waiting

    def where(self, sync: bool) -> Address | None:
        """The address to probe for the ``sync`` (thread) or asyncio worker, if any."""
        host = self._host()
        for name in list(self._waiting()) if host is not None else ():
            try:
                slot = host.slot(name)
            except CacheError:  # the backend is gone after configure()
                continue
            if ("sync" in slot.flavours) == sync and (
                    where := address(slot.kind, slot.spec) or primary(slot)):
                return where
        return None

    def wait(self, budget: float, stop: Callable[[], bool]) -> None:
        """The thread's wait (:func:`wait_reachable`; where is asked before each probe), at
        once when nothing is probed."""
        wait_reachable(lambda: self.where(True), budget, stop)

    async def await_(self, budget: float, stop: Callable[[], bool]) -> None:
        """The asyncio worker's wait (:func:`await_reachable`)."""
        await await_reachable(lambda: self.where(False), budget, stop)
