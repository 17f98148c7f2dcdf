"""Scale-out backends from URLs and ready clients: Redis Cluster and Sentinel.

``redis+cluster://[user[:password]@]host:port[,host:port…]`` — any reachable nodes; the rest of
the cluster is discovered. ``redis+sentinel://[user[:password]@]host:port[,…]/service[/db]`` —
the sentinels; credentials apply to the primary (a sentinel's own password goes in the backend
option ``sentinel_kwargs={"password": …}``). Both take the registry's bounded timeouts and no
client-side retries (redirects are still followed); other backend options pass through to the
connections. ``max_connections`` and ``pool_timeout`` shape the single server's blocking pool
only: redis-py's cluster and sentinel pools do not block, and a cap there would turn a burst of
callers into backend errors (and an open breaker) rather than a short wait. A malformed URL is
a ConfigurationError when the backend is first used. The backends live in :mod:`.cluster` and
:mod:`.sentinel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.exceptions import ClusterError, RedisClusterException

from cachedeco.backends.cluster import AsyncClusterBackend, ClusterBackend
from cachedeco.backends.sentinel import AsyncSentinelBackend, SentinelBackend, sentinel_settings
from cachedeco.errors import ConfigurationError

if TYPE_CHECKING:
    from cachedeco._connect import Options

__all__ = ["Target", "make_async", "make_sync", "parse_url", "wrap_async_cluster",
           "wrap_sync_cluster"]

DEFAULT_PORTS = {"cluster": 6379, "sentinel": 26379}


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed scale-out URL."""

    hosts: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    service: str = ""
    db: int = 0


def parse_url(kind: str, url: str) -> Target:
    """Hosts, credentials and (for sentinel) the service and db of a scale-out URL."""
    parts = urlsplit(url)
    userinfo, _, netloc = parts.netloc.rpartition("@")
    username, has_password, password = userinfo.partition(":")
    hosts = tuple(_host(item, DEFAULT_PORTS[kind], url) for item in netloc.split(","))
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{kind} URL {_safe(url)!r}: query options are not supported; "
                                 "pass them as backend options")
    creds = (unquote(username) or None, unquote(password) if has_password else None)
    path = parts.path.strip("/")
    if kind == "cluster":
        if path not in ("", "0"):
            raise ConfigurationError(f"cluster URL {_safe(url)!r}: a cluster has only db 0")
        return Target(hosts, *creds)
    service, _, db = path.partition("/")
    if not service or (db and not db.isdigit()) or "/" in db:
        raise ConfigurationError(
            f"sentinel URL {_safe(url)!r}: expected redis+sentinel://host:port[,…]/service[/db]")
    return Target(hosts, *creds, service=unquote(service), db=int(db or 0))


def _host(item: str, default_port: int, url: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port``."""
    item = item.strip()
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not host or (port and not port.isdigit()) or not 0 < int(port or default_port) < 65536:
        raise ConfigurationError(f"bad host {item!r} in {_safe(url)!r}")
    return host, int(port or default_port)


def _safe(url: str) -> str:
    """The URL without its password."""
    userinfo, at, _ = url.partition("://")[2].rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return url.replace(userinfo, userinfo.partition(":")[0] + ":***", 1)


def _data_kwargs(target: Target, options: Options) -> dict[str, Any]:
    """Keyword arguments for connections to the data nodes."""
    kwargs = options.redis_kwargs()
    if target.username is not None:
        kwargs["username"] = target.username
    if target.password is not None:
        kwargs["password"] = target.password
    return kwargs


def make_sync(kind: str, url: str, options: Options) -> ClusterBackend | SentinelBackend:
    """A sync backend for a cluster or sentinel URL (the cluster client connects now)."""
    target = parse_url(kind, url)
    kwargs = _data_kwargs(target, options)
    if kind == "sentinel":
        settings = sentinel_settings(kwargs)
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(target.hosts), sentinel_kwargs=settings, **kwargs)
        client = sentinel.master_for(  # type: ignore[no-untyped-call]
            target.service, db=target.db)
        return SentinelBackend(sentinel, client)
    retry = kwargs.pop("retry")
    nodes = [redis.cluster.ClusterNode(h, p) for h, p in target.hosts]  # type: ignore[no-untyped-call]
    try:
        client = redis.cluster.RedisCluster(startup_nodes=nodes, retry=retry, **kwargs)
    except RedisClusterException as exc:
        raise ClusterError(f"cannot reach the cluster at {_safe(url)!r}: {exc}") from exc
    return ClusterBackend(client)


def make_async(kind: str, url: str, options: Options) -> AsyncClusterBackend | AsyncSentinelBackend:
    """An async backend for a cluster or sentinel URL (it connects on first use)."""
    target = parse_url(kind, url)
    kwargs = _data_kwargs(target, options)
    if kind == "sentinel":
        settings = sentinel_settings(kwargs)
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(target.hosts), sentinel_kwargs=settings, **kwargs)
        client = sentinel.master_for(target.service, db=target.db)
        return AsyncSentinelBackend(sentinel, client)
    retry = kwargs.pop("retry")
    nodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in target.hosts]
    return AsyncClusterBackend(
        redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, retry=retry, **kwargs))


def _check_bytes(client: Any) -> None:
    encoder = getattr(client, "encoder", None)
    if getattr(encoder, "decode_responses", False):
        raise ConfigurationError("a client with decode_responses=True cannot hold cache entries")


def wrap_sync_cluster(client: redis.cluster.RedisCluster) -> ClusterBackend:
    """A sync backend over a ready RedisCluster client."""
    _check_bytes(client)
    return ClusterBackend(client)


def wrap_async_cluster(client: redis.asyncio.cluster.RedisCluster) -> AsyncClusterBackend:
    """An async backend over a ready asyncio RedisCluster client."""
    _check_bytes(client)
    return AsyncClusterBackend(client)
