"""Redis clients and backends made from URLs and ready clients: single server, Cluster and
Sentinel, sync and asyncio.

Every client takes the registry's bounded timeouts and no client-side retries (cluster
redirects are still followed); other backend options pass through to the connections.
``max_connections`` and ``pool_timeout`` bound every deployment's connections the same way: at
most ``max_connections`` to the server, to Sentinel's primary, and to each cluster node, and a
burst of callers waits up to ``pool_timeout`` for one (:mod:`~cachedeco.backends.redis.pools`,
:mod:`~cachedeco.backends.redis.cluster_client`) rather than failing. The sentinels
themselves are asked with the same bounded timeouts.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.exceptions import ClusterError, RedisClusterException

from cachedeco.backends.base import AsyncBackend, Backend, ConnectionOptions
from cachedeco.backends.redis._async.cluster import AsyncClusterBackend
from cachedeco.backends.redis._sync.cluster import ClusterBackend
from cachedeco.backends.redis.asking import AskingRedisCluster
from cachedeco.backends.redis.batching import CoalescingRedisBackend
from cachedeco.backends.redis.cluster_client import WaitingRedisCluster
from cachedeco.backends.redis.combining import CombiningRedisBackend
from cachedeco.backends.redis.pools import (
    BlockingSentinelPool,
    WaitingConnectionPool,
    WaitingSentinelPool,
)
from cachedeco.backends.redis.primary_watch import PrimaryWatch
from cachedeco.backends.redis.urls import Target, parse_url, redact, sentinel_settings
from cachedeco.errors import ConfigurationError

__all__ = ["client_flavour", "data_kwargs", "make_async", "make_sync", "wrap_async", "wrap_sync"]


def client_flavour(client: object) -> str:
    """Which flavour a ready client is, or ConfigurationError."""
    if isinstance(client, redis.Redis | redis.cluster.RedisCluster):
        flavour = "sync"
    elif isinstance(client, redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster):
        flavour = "async"
    else:
        raise ConfigurationError(
            f"unsupported backend {type(client).__name__}: give a URL, a redis.Redis, "
            "a redis.asyncio.Redis or a cluster client")
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if kwargs.get("decode_responses"):
        raise ConfigurationError("a client with decode_responses=True cannot hold cache entries")
    return flavour


def make_sync(kind: str, url: str, options: ConnectionOptions,
              watch: PrimaryWatch | None = None) -> Backend:
    """A sync backend for a ``redis``, ``cluster`` or ``sentinel`` URL (a cluster client
    connects now); on Sentinel, ``watch`` moves its pool to a new primary at once."""
    if kind == "redis":
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=options.max_connections, timeout=options.pool_timeout,
            **options.redis_kwargs())
        # owns the pool: close() frees it
        return CombiningRedisBackend(redis.Redis.from_pool(pool), direct=True)
    target = parse_url(kind, url)
    kwargs = data_kwargs(target, options)
    if kind == "sentinel":
        settings = sentinel_settings(kwargs)
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(target.hosts), sentinel_kwargs=settings, **kwargs)
        client = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
            target.service, db=target.db, connection_pool_class=BlockingSentinelPool,
            max_connections=options.max_connections, timeout=options.pool_timeout, watch=watch)
        return CombiningRedisBackend(client, companions=sentinel.sentinels, direct=True)
    retry = kwargs.pop("retry")
    (host, port), *others = target.hosts
    nodes = [redis.cluster.ClusterNode(h, p) for h, p in others]  # type: ignore[no-untyped-call, unused-ignore]
    # Given a URL, redis-py makes each node's pool of connection_pool_class; its scheme, not
    # ssl=True (which it would hand to every connection), says TLS.
    scheme = "rediss" if kwargs.pop("ssl", False) else "redis"
    try:
        cluster = AskingRedisCluster(
            url=f"{scheme}://{_netloc(host, port)}", startup_nodes=nodes, retry=retry,
            connection_pool_class=redis.BlockingConnectionPool,
            max_connections=options.max_connections, timeout=options.pool_timeout, **kwargs)
    except RedisClusterException as exc:
        raise ClusterError(f"cannot reach the cluster at {redact(url)!r}: {exc}") from exc
    return ClusterBackend(cluster)


def make_async(kind: str, url: str, options: ConnectionOptions,
               watch: PrimaryWatch | None = None) -> AsyncBackend:
    """An asyncio backend for a ``redis``, ``cluster`` or ``sentinel`` URL (it connects on
    first use); on Sentinel, ``watch`` as for :func:`make_sync`."""
    if kind == "redis":
        pool = WaitingConnectionPool.from_url(
            url, max_connections=options.max_connections, timeout=options.pool_timeout,
            **options.redis_kwargs(asyncio=True))
        return CoalescingRedisBackend(redis.asyncio.Redis.from_pool(pool), direct=True)
    target = parse_url(kind, url)
    kwargs = data_kwargs(target, options, asyncio=True)
    if kind == "sentinel":
        settings = sentinel_settings(kwargs)
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(target.hosts), sentinel_kwargs=settings, **kwargs)
        client = sentinel.master_for(
            target.service, db=target.db, connection_pool_class=WaitingSentinelPool,
            max_connections=options.max_connections, timeout=options.pool_timeout, watch=watch)
        return CoalescingRedisBackend(client, companions=sentinel.sentinels, direct=True)
    retry = kwargs.pop("retry")
    nodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in target.hosts]
    return AsyncClusterBackend(WaitingRedisCluster(
        startup_nodes=nodes, retry=retry, max_connections=options.max_connections,
        pool_timeout=options.pool_timeout, **kwargs))


def wrap_sync(client: Any) -> Backend:
    """A sync backend over a ready ``redis.Redis`` or ``RedisCluster``."""
    if isinstance(client, redis.cluster.RedisCluster):
        _check_bytes(client)
        return ClusterBackend(client)
    return CombiningRedisBackend(client)


def wrap_async(client: Any) -> AsyncBackend:
    """An asyncio backend over a ready ``redis.asyncio`` client."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        _check_bytes(client)
        return AsyncClusterBackend(client)
    return CoalescingRedisBackend(client)


def data_kwargs(target: Target, options: ConnectionOptions,
                asyncio: bool = False) -> dict[str, Any]:
    """Keyword arguments for connections to the data nodes (of an asyncio client if so)."""
    kwargs = options.redis_kwargs(asyncio)
    if target.username is not None:
        kwargs["username"] = target.username
    if target.password is not None:
        kwargs["password"] = target.password
    return kwargs


def _netloc(host: str, port: int) -> str:
    """``host:port`` for a URL (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_bytes(client: Any) -> None:
    encoder = getattr(client, "encoder", None)
    if getattr(encoder, "decode_responses", False):
        raise ConfigurationError("a client with decode_responses=True cannot hold cache entries")
