"""Connection pools whose callers wait when every connection is busy, for every deployment:
a burst of callers waits (up to the registry's ``pool_timeout``) instead of failing.

redis-py's plain pools raise ``MaxConnectionsError`` past ``max_connections`` (so 200
concurrent callers fail, and the failure policy falls back to the function); its asyncio
``BlockingConnectionPool`` takes a condition and arms a timer on every checkout (about 10 µs
per command here). :class:`Gate` counts free places with a semaphore instead: a caller waits
only when every place is taken. :class:`WaitingConnectionPool` is the plain asyncio pool behind
a gate; the Sentinel pools are Sentinel's own pools with that waiting (asyncio) or with
redis-py's ``BlockingConnectionPool`` (sync). The asyncio cluster client gates its commands the
same way (:mod:`cachedeco.backends.redis.cluster_client`).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.exceptions
import redis.sentinel
from redis.asyncio.connection import AbstractConnection

from cachedeco.backends.redis.primary_watch import PrimaryWatch

__all__ = ["BlockingSentinelPool", "Gate", "NoFreeConnection", "WaitingConnectionPool",
           "WaitingSentinelPool"]


class NoFreeConnection(redis.exceptions.ConnectionError):
    """Every connection stayed busy for the whole wait: a backend fault (the caller falls
    back), not worth retrying at once."""


class Gate:
    """At most ``size`` holders at once (asyncio); the others wait up to ``timeout`` seconds
    for a place, then get :class:`NoFreeConnection` (a backend fault, never a hang)."""

    __slots__ = ("_free", "size", "timeout")

    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.timeout = timeout
        self._free = asyncio.Semaphore(size)

    async def enter(self) -> None:
        """Take a place, waiting only when none is free."""
        if not self._free.locked():
            await self._free.acquire()  # a free place: taken without suspending
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self._free.acquire()
        except TimeoutError:
            raise NoFreeConnection(
                f"no free connection within {self.timeout} s ({self.size} in use)") from None

    def leave(self) -> None:
        """Give a place back and wake one waiter."""
        self._free.release()


class WaitingConnectionPool(redis.asyncio.ConnectionPool):
    """An asyncio pool whose callers queue for a free connection instead of failing."""

    def __init__(self, *, timeout: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout = timeout
        self._gate = Gate(self.max_connections, timeout)
        self._handed: set[AbstractConnection] = set()  # each holds a place until released

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        """A connection, waiting up to ``timeout`` seconds when all of them are in use."""
        await self._gate.enter()
        checkout: Callable[..., Awaitable[AbstractConnection]] = super().get_connection
        try:
            connection = await checkout(*args, **kwargs)
        except BaseException:
            # Not handed out: redis-py released any connection it failed to connect (or was
            # cancelled connecting) itself, through release(), which had no place to give.
            self._gate.leave()
            raise
        self._handed.add(connection)
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        """Return a connection and, for one handed out, give its place to a waiter."""
        try:
            await super().release(connection)
        finally:
            if connection in self._handed:
                self._handed.discard(connection)
                self._gate.leave()


class WaitingSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool, WaitingConnectionPool):
    """Sentinel's asyncio pool of the primary (it follows failovers), waiting when busy:
    ``master_for(service, connection_pool_class=WaitingSentinelPool, max_connections=N,
    timeout=T, watch=W)``. With a :class:`PrimaryWatch` it moves to the primary the
    sentinels name as soon as the watch sees it change, not only when it opens a connection:
    a connection still open to the old primary is closed when checked out, and opened again
    to the new one."""

    def __init__(self, service_name: str, sentinel_manager: Any, *,
                 watch: PrimaryWatch | None = None, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self._watch = watch
        self._epoch = 0

    async def get_master_address(self) -> Any:
        """The primary the watch follows (the sentinels' newest word), else the one the first
        sentinel to answer names (redis-py's way, before the watch has asked)."""
        watch = self._watch
        if watch is not None:
            watch.hurry()  # a connection is being opened: after a failure, say
        if watch is not None and self.master_address is None:
            # a new pool (say, after a failover): the watch's last round may be 0.5 s old
            await asyncio.to_thread(watch.check)  # a blocking question: off the event loop
        address = watch.address if watch is not None else None
        if address is None:
            return await super().get_master_address()  # type: ignore[no-untyped-call]
        if self.master_address != address:
            self.master_address = address
            await self._close_idle()
        return address

    async def _close_idle(self) -> None:
        """Close the idle connections (to the old primary), taken out of the pool meanwhile:
        redis-py's ``disconnect(inuse_connections=False)`` may close one another task took
        while it waited (see :meth:`BlockingSentinelPool.close_idle`)."""
        idle = list(self._available_connections)
        self._available_connections.clear()  # a checkout meanwhile opens a new one
        try:
            await asyncio.gather(*(c.disconnect() for c in idle), return_exceptions=True)
        finally:
            self._available_connections.extend(idle)

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        """A connection to the primary the sentinels name now."""
        watch = self._watch
        if watch is not None and watch.epoch != self._epoch:
            self._epoch = watch.epoch
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                await self.get_master_address()  # closes the idle ones to the old primary
        connection = await super().get_connection(*args, **kwargs)
        where = self.master_address  # redis-py's asyncio owns_connection() is broken
        if watch is not None and where is not None and where != (
                getattr(connection, "host", None), getattr(connection, "port", None)):
            try:  # it was in use when the primary moved
                await connection.disconnect()
                await connection.connect()  # type: ignore[no-untyped-call]
            except BaseException:
                await self.release(connection)
                raise
        return connection


class _WatchedProxy(redis.sentinel.SentinelConnectionPoolProxy):
    """What redis-py's sync Sentinel connections ask for their address (the pool's proxy, not
    the pool): the primary the watch follows, not the first sentinel's answer."""

    def __init__(self, watch: PrimaryWatch, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.watch = watch

    def get_master_address(self) -> Any:
        """The primary the watch follows (asked through it by a new pool: its last round may
        be 0.5 s old), else the one the first sentinel to answer names (redis-py's way,
        before the watch knows one); idle connections close when it changes."""
        watch = self.watch
        watch.hurry()  # a connection is being opened: after a failure, say
        if self.master_address is None:
            watch.check()
        address = watch.address
        if address is None:
            return super().get_master_address()  # type: ignore[no-untyped-call]
        if self.master_address != address:
            self.master_address = address
            pool = self.connection_pool_ref()
            if isinstance(pool, BlockingSentinelPool):
                pool.close_idle()
        return address


class BlockingSentinelPool(redis.sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """Sentinel's pool of the primary (it follows failovers), blocking when busy like
    redis-py's ``BlockingConnectionPool``: ``master_for(service,
    connection_pool_class=BlockingSentinelPool, max_connections=N, timeout=T, watch=W)``.
    With a :class:`PrimaryWatch` it moves to the primary the sentinels name as soon as the
    watch sees it change: idle connections to the old primary are closed then, busy ones
    when they come back (redis-py's ``owns_connection``), and every connection opens to the
    watch's primary."""

    def __init__(self, service_name: str, sentinel_manager: Any, *,
                 watch: PrimaryWatch | None = None, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self._watch = watch
        self._epoch = 0
        if watch is not None:
            self.proxy = _WatchedProxy(
                watch, connection_pool=self, is_master=self.is_master,
                check_connection=self.check_connection, service_name=service_name,
                sentinel_manager=sentinel_manager)
            self.connection_kwargs["connection_pool"] = self.proxy

    def close_idle(self) -> None:
        """Close the idle connections (to the old primary), each taken out of the pool
        meanwhile: redis-py's ``disconnect(inuse_connections=False)`` closes every one it
        listed, also one another thread has taken since and connected to the new primary
        (whose command then fails: ``Bad file descriptor``)."""
        taken: list[Any] = []
        with contextlib.suppress(queue.Empty):
            while True:
                taken.append(self.pool.get_nowait())
        try:
            for connection in taken:
                if connection is not None:
                    connection.disconnect()
        finally:
            for connection in taken:
                self.pool.put_nowait(connection)

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """A connection to the primary the sentinels name now.

        Each connection handed out is checked against the watch's primary: closing the idle
        ones when the primary moves is not enough, since another thread may take one of them
        while they are being closed (and send, say, auto-recovery's replay to the old
        primary, which drops it when it is demoted)."""
        watch = self._watch
        if watch is not None and watch.epoch != self._epoch:
            self._epoch = watch.epoch
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                # through the proxy: closes the idle connections to the old primary
                self.get_master_address()  # type: ignore[no-untyped-call]
        connection = super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        where = watch.address if watch is not None else None
        if where is not None and where != (connection.host, connection.port):
            try:  # connected to the old primary: connect again, to the new one
                connection.disconnect()
                connection.connect()
            except BaseException:
                self.release(connection)  # type: ignore[no-untyped-call]
                raise
        return connection
