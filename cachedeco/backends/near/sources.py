"""Where a near cache's change stream connects: one RESP3 connection per primary, made from the
backend's URL (or ready client) with the registry's timeouts and credentials.

A source names the primaries it knows now (:meth:`Source.primaries`), each with a factory for
a fresh, unconnected ``protocol=3`` connection; the tracker asks again every
:attr:`Source.check_every` seconds and starts over when the answer changes (a Sentinel
failover, a cluster primary failover or resharding onto a new node). A Sentinel source names
the primary that the backend's :class:`~cachedeco.backends.redis.primary_watch.PrimaryWatch`
follows, the one the data connections use: a stream listening to another server than the one
the data goes to would hear of none of the changes made there.
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Callable
from typing import Any, Protocol

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.connection
import redis.sentinel

from cachedeco.backends.base import ConnectionOptions
from cachedeco.backends.redis.connect import data_kwargs
from cachedeco.backends.redis.primary_watch import PrimaryWatch
from cachedeco.backends.redis.urls import parse_url
from cachedeco.core.forking import redo_after_fork

__all__ = ["ClusterSource", "SentinelSource", "SingleSource", "Source", "no_source",
           "source_for"]

#: A fresh, unconnected ``redis.connection.Connection`` (redis-py leaves it untyped).
Factory = Callable[[], Any]
Connection: Any = redis.connection.Connection
SSLConnection: Any = redis.connection.SSLConnection


def _connection(kwargs: dict[str, Any]) -> Any:
    """A connection to a cluster node or a Sentinel primary: TLS with ``ssl=True`` (the
    clients of those URLs take it as a client option, not a connection's)."""
    options = dict(kwargs)
    return (SSLConnection if options.pop("ssl", False) else Connection)(**options)


class Source(Protocol):
    """The primaries a change stream must listen to."""

    #: Seconds between two questions to :meth:`primaries` (inf: the answer cannot change).
    check_every: float

    def primaries(self) -> dict[str, Factory]:
        """``host:port`` of every primary, and how to open a tracking connection to it."""
        ...

    def close(self) -> None:
        """Release what asking for the primaries holds (connections to sentinels)."""
        ...


class SingleSource:
    """One server: the address of the data connections."""

    check_every = float("inf")

    def __init__(self, connection_class: Any, kwargs: dict[str, Any]) -> None:
        self._make = connection_class
        self._kwargs = {**kwargs, "protocol": 3}
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        self._where = str(where)

    def primaries(self) -> dict[str, Factory]:
        """The server itself."""
        return {self._where: lambda: self._make(**self._kwargs)}

    def close(self) -> None:
        """Nothing held."""


class SentinelSource:
    """The primary that the backend's watch follows: the data connections' primary."""

    check_every = 0.05  # the watch's last answer: no I/O

    def __init__(self, url: str, options: ConnectionOptions, watch: PrimaryWatch) -> None:
        target = parse_url("sentinel", url)
        self._kwargs = data_kwargs(target, options)
        self._kwargs.pop("sentinel_kwargs", None)  # the watch's, not the primary's
        self._db = target.db
        self._watch = watch

    def primaries(self) -> dict[str, Factory]:
        """The watch's primary (the sentinels asked first when it knows none yet;
        MasterNotFoundError when none names one)."""
        address = self._watch.address
        if address is None:
            self._watch.check()
            address = self._watch.address
        if address is None:
            raise redis.sentinel.MasterNotFoundError("no sentinel named a primary")
        host, port = address
        kwargs = {**self._kwargs, "host": host, "port": port, "db": self._db, "protocol": 3}
        return {f"{host}:{port}": lambda: _connection(kwargs)}

    def close(self) -> None:
        """Nothing held: the watch is the backend's."""


class ClusterSource:
    """Every primary of a cluster, from ``CLUSTER SLOTS`` of the first node that answers. The
    connection that asked is kept for the next question while its node is one of the
    primaries it named (a node taken out of the cluster would go on naming its old view),
    so a check every second opens no connection (a forked child opens its own)."""

    check_every = 1.0

    def __init__(self, seeds: list[tuple[str, int]], kwargs: dict[str, Any]) -> None:
        self._kwargs = kwargs  # a node connection's (``ssl``: TLS)
        self._seeds = seeds
        self._known: list[tuple[str, int]] = []
        self._kept: tuple[Any, str, int] | None = None  # connection, host, port
        redo_after_fork(self)

    def after_fork(self) -> None:
        """In a forked child: the parent's connection is not the child's to use."""
        self._kept = None

    def primaries(self) -> dict[str, Factory]:
        """The primaries serving slots now, asked of a known primary or a startup node."""
        error: Exception | None = None
        kept = self._kept
        candidates = dict.fromkeys(self._known + self._seeds)
        if kept is not None:
            candidates = {(kept[1], kept[2]): None, **candidates}
        for host, port in candidates:
            conn: Any = kept[0] if kept is not None and (host, port) == kept[1:] else (
                _connection({**self._kwargs, "host": host, "port": port}))
            try:
                conn.connect()  # at once when connected
                conn.send_command("CLUSTER", "SLOTS")
                reply = conn.read_response()
            except (redis.RedisError, OSError) as exc:
                conn.disconnect()
                error = exc
                continue
            found = _primaries(reply, host)
            self._known = found
            self._keep(conn, host, port, found)
            return {f"{h}:{p}": self._factory(h, p) for h, p in found}
        self._kept = None
        raise error or redis.ConnectionError("no cluster node answered")

    def _keep(self, conn: Any, host: str, port: int, found: list[tuple[str, int]]) -> None:
        """Keep ``conn`` (to ``host:port``) for the next question if that node is one of the
        primaries ``found``, else close it; close the one kept before, if another."""
        old = self._kept
        self._kept = (conn, host, port) if (_named(host), port) in found else None
        if self._kept is None:
            conn.disconnect()
        if old is not None and old[0] is not conn:
            old[0].disconnect()

    def _factory(self, host: str, port: int) -> Factory:
        kwargs = {**self._kwargs, "host": host, "port": port, "protocol": 3}
        return lambda: _connection(kwargs)

    def close(self) -> None:
        """Close the connection kept for the next question."""
        kept, self._kept = self._kept, None
        if kept is not None:
            kept[0].disconnect()


def _primaries(reply: Any, asked: str) -> list[tuple[str, int]]:
    """``(host, port)`` of the primary of each slot range of a ``CLUSTER SLOTS`` reply (an
    empty host is the node asked), each named as redis-py's cluster client names it (the
    backend compares the nodes its reads go to with these: ``localhost`` is resolved)."""
    found: dict[tuple[str, int], None] = {}
    for slot_range in reply:
        node = slot_range[2]
        host = (node[0].decode() if isinstance(node[0], bytes) else str(node[0])) or asked
        found[(_named(host), int(node[1]))] = None
    return sorted(found)


def _named(host: str) -> str:
    """``host`` as redis-py's cluster client names a node's: ``localhost`` resolved."""
    return socket.gethostbyname(host) if host == "localhost" else host


def source_for(kind: str, spec: object, options: ConnectionOptions,
               watch: PrimaryWatch | None = None) -> Source | None:
    """The source of a backend's change stream, or None where there is none to follow (a
    ready Sentinel-managed client, whose primary only its pool knows; a fake or custom
    connection). A Sentinel URL's source follows ``watch``, the backend's."""
    if isinstance(spec, str):
        if kind == "sentinel":
            if watch is None:
                raise ValueError("a Sentinel URL's change stream follows the backend's watch")
            return SentinelSource(spec, options, watch)
        if kind == "cluster":
            target = parse_url("cluster", spec)
            return ClusterSource(list(target.hosts), data_kwargs(target, options))
        pool = redis.ConnectionPool.from_url(spec, **options.redis_kwargs())
        return SingleSource(pool.connection_class, dict(pool.connection_kwargs))
    if isinstance(spec, redis.Redis) and not isinstance(
            spec.connection_pool, redis.sentinel.SentinelConnectionPool):
        pool = spec.connection_pool
        return SingleSource(pool.connection_class, dict(pool.connection_kwargs))
    if isinstance(spec, redis.asyncio.Redis):
        return _from_asyncio(spec.connection_pool)
    if isinstance(spec, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster):
        return _from_cluster_client(spec)
    return None


def no_source(spec: object) -> str:
    """Why :func:`source_for` has no change stream to follow for a ready client ``spec``,
    and what to give instead (for the registry's log line)."""
    pool = getattr(spec, "connection_pool", None)
    if isinstance(pool, redis.sentinel.SentinelConnectionPool
                  | redis.asyncio.sentinel.SentinelConnectionPool):
        return ("a ready Sentinel-managed client knows its primary in its pool alone; give a "
                "redis+sentinel:// URL")
    return (f"a ready {type(spec).__name__} client gives no settings to open its change "
            "stream with; give a URL")


#: The settings a sync connection takes from an asyncio one's as they are: its address, its
#: credentials, its timeouts (and, for TLS, those ``ssl_*`` the sync class takes). The others
#: are objects of the asyncio flavour (a Retry, an event dispatcher) or not needed here.
_PORTABLE = frozenset({
    "host", "port", "path", "db", "username", "password", "credential_provider",
    "socket_timeout", "socket_connect_timeout", "socket_keepalive", "socket_keepalive_options",
    "socket_read_size", "encoding", "encoding_errors", "decode_responses", "client_name",
    "health_check_interval"})


def _from_asyncio(pool: Any) -> SingleSource | None:
    """The source of a ready asyncio client's server: the same address, credentials and
    TLS settings on a sync connection of the same kind. None for a connection class redis-py
    does not ship (a fake, a Sentinel-managed one, a custom one): nothing to map it to."""
    cls = pool.connection_class
    sync = getattr(redis.connection, cls.__name__, None)
    if cls.__module__ != "redis.asyncio.connection" or sync is None:
        return None
    return SingleSource(sync, _portable(pool.connection_kwargs, sync))


def _from_cluster_client(client: Any) -> ClusterSource | None:
    """The source of a ready cluster client (either flavour): its startup nodes, with its
    credentials, timeouts and TLS settings. None for a connection class redis-py does not
    ship."""
    given = (client.nodes_manager.connection_kwargs
             if isinstance(client, redis.cluster.RedisCluster) else client.connection_kwargs)
    cls = given.get("connection_class", Connection)
    if cls.__module__ not in ("redis.connection", "redis.asyncio.connection") or (
            cls.__name__ not in ("Connection", "SSLConnection")):
        return None
    tls = cls.__name__ == "SSLConnection"
    kwargs = _portable(given, SSLConnection if tls else Connection)
    seeds = [(node.host, int(node.port))
             for node in client.nodes_manager.startup_nodes.values()]
    return ClusterSource(seeds, {**kwargs, "ssl": tls})


def _portable(given: dict[str, Any], sync: Any) -> dict[str, Any]:
    """What of a client's connection settings a sync connection of class ``sync`` takes."""
    takes = inspect.signature(sync.__init__).parameters
    kwargs = {name: value for name, value in given.items()
              if name in _PORTABLE or (name.startswith("ssl_") and name in takes)}
    if not isinstance(kwargs.get("socket_keepalive_options"), dict):  # an unset marker
        kwargs.pop("socket_keepalive_options", None)
    return kwargs
