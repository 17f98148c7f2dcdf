"""Backend specs: URLs and ready clients turned into backends, lazily and once.

A URL is checked when the registry is built (an unknown scheme or a malformed URL is a
ConfigurationError then, never a silent fallback); the clients are made on first use. From a
URL both flavours are made: the sync client once, the async client once per event loop (an
asyncio connection belongs to the loop that opened it). A ready client gives one flavour only.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from cachedeco.backends.base import AsyncBackend, Backend
from cachedeco.backends.memory import AsyncMemoryBackend, MemoryBackend
from cachedeco.backends.pools import WaitingConnectionPool
from cachedeco.backends.redis import AsyncRedisBackend, RedisBackend
from cachedeco.errors import ConfigurationError

__all__ = ["BackendSlot", "Options"]

SCHEMES = ("memory", "redis", "rediss", "unix", "redis+cluster", "redis+sentinel")


@dataclass(frozen=True, slots=True)
class Options:
    """Connection settings shared by every client a registry makes; timeouts are bounded."""

    socket_timeout: float = 1.0
    socket_connect_timeout: float = 1.0
    max_connections: int = 64
    pool_timeout: float = 5.0
    maxsize: int = 10_000
    extra: dict[str, Any] = field(default_factory=dict)

    def redis_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for redis-py clients and pools: bounded, no retry storms."""
        return {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            "retry": Retry(NoBackoff(), 0),
            **self.extra,
        }


def _kind_of_url(name: str, url: str) -> str:
    """Validate a backend URL and return its kind (memory, redis, cluster, sentinel)."""
    try:
        parts = urlsplit(url)
        # Cluster and sentinel URLs list several host:port pairs; only one-host URLs have a port.
        port = parts.port if parts.scheme.lower() in ("redis", "rediss") else None
    except ValueError as exc:
        raise ConfigurationError(f"backend {name!r}: malformed URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"backend {name!r}: unknown scheme {scheme!r} in {_redact(url)!r}; "
            f"expected one of {', '.join(s + '://' for s in SCHEMES)}")
    if scheme == "memory":
        return "memory"
    if scheme in ("redis", "rediss"):
        if not parts.hostname:
            raise ConfigurationError(f"backend {name!r}: no host in {_redact(url)!r}")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ConfigurationError(f"backend {name!r}: database {db!r} is not a number")
        if port is not None and not 0 < port < 65536:
            raise ConfigurationError(f"backend {name!r}: bad port in {_redact(url)!r}")
        return "redis"
    if scheme == "unix":
        return "redis"
    if not parts.netloc:
        raise ConfigurationError(f"backend {name!r}: no hosts in {_redact(url)!r}")
    return "cluster" if scheme == "redis+cluster" else "sentinel"


def _redact(url: str) -> str:
    """The URL without its password, for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _memory_size(url: str, default: int) -> int:
    """``memory://?maxsize=N``."""
    query = parse_qs(urlsplit(url).query)
    try:
        return int(query.get("maxsize", [default])[0])
    except ValueError as exc:
        raise ConfigurationError(f"memory backend: bad maxsize in {url!r}") from exc


def _client_flavour(client: object) -> str:
    """Which flavour a ready client is, or ConfigurationError."""
    import redis.asyncio.cluster
    import redis.cluster

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


class BackendSlot:
    """One named backend: its spec, and the sync and async backends made from it on demand."""

    def __init__(self, name: str, spec: object, options: Options) -> None:
        self.name = name
        self.spec = spec
        self.options = options
        self._lock = threading.Lock()
        self._sync: Backend | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncBackend] = (
            weakref.WeakKeyDictionary())
        self._ready_async: AsyncBackend | None = None
        if isinstance(spec, str):
            self.kind = _kind_of_url(name, spec)
            self.flavours: tuple[str, ...] = ("sync", "async")
        else:
            flavour = _client_flavour(spec)
            self.kind = "cluster" if "Cluster" in type(spec).__name__ else "redis"
            self.flavours = (flavour,)
        if self.kind == "memory":
            memory = MemoryBackend(_memory_size(str(spec), options.maxsize))
            self._sync, self._ready_async = memory, AsyncMemoryBackend(memory)

    @property
    def stores_objects(self) -> bool:
        """Whether values are kept as objects (memory) rather than encoded payloads."""
        return self.kind == "memory"

    def backend(self) -> Backend:
        """The synchronous backend, made on first use."""
        if self._sync is not None:
            return self._sync
        if "sync" not in self.flavours:
            raise ConfigurationError(
                f"backend {self.name!r} was given an asyncio client only: a sync function "
                "cannot use it; give a URL or a redis.Redis client too")
        with self._lock:
            if self._sync is None:
                self._sync = self._make_sync()
            return self._sync

    def abackend(self) -> AsyncBackend:
        """The asyncio backend for the running event loop, made on first use."""
        if self._ready_async is not None:
            return self._ready_async
        if "async" not in self.flavours:
            raise ConfigurationError(
                f"backend {self.name!r} was given a sync client only: an async function "
                "cannot use it; give a URL or a redis.asyncio.Redis client too")
        if not isinstance(self.spec, str):
            with self._lock:
                if self._ready_async is None:
                    self._ready_async = self._make_async()
                return self._ready_async
        loop = asyncio.get_running_loop()
        backend = self._async.get(loop)
        if backend is None:
            backend = self._async[loop] = self._make_async()
        return backend

    def _make_sync(self) -> Backend:
        spec = self.spec
        if not isinstance(spec, str):
            return _wrap_sync(spec, self.kind)
        if self.kind == "redis":
            pool = redis.BlockingConnectionPool.from_url(
                spec, max_connections=self.options.max_connections,
                timeout=self.options.pool_timeout, **self.options.redis_kwargs())
            return RedisBackend(redis.Redis.from_pool(pool))  # owns the pool: close() frees it
        from cachedeco.backends import scaleout

        backend: Backend = scaleout.make_sync(self.kind, spec, self.options)
        return backend

    def _make_async(self) -> AsyncBackend:
        spec = self.spec
        if not isinstance(spec, str):
            return _wrap_async(spec, self.kind)
        if self.kind == "redis":
            pool = WaitingConnectionPool.from_url(
                spec, max_connections=self.options.max_connections,
                timeout=self.options.pool_timeout, **self.options.redis_kwargs())
            return AsyncRedisBackend(redis.asyncio.Redis.from_pool(pool))
        from cachedeco.backends import scaleout

        backend: AsyncBackend = scaleout.make_async(self.kind, spec, self.options)
        return backend

    def made_here(self) -> list[AsyncBackend]:
        """The asyncio backends usable on the running loop (to close them there)."""
        here = [] if self._ready_async is None else [self._ready_async]
        backend = self._async.get(asyncio.get_running_loop())
        return here if backend is None else [*here, backend]

    def made(self) -> list[Backend | AsyncBackend]:
        """Every backend made so far (to close them)."""
        made: list[Backend | AsyncBackend] = [*self._async.values()]
        if self._sync is not None:
            made.append(self._sync)
        if self._ready_async is not None:
            made.append(self._ready_async)
        return made


def _wrap_sync(client: Any, kind: str) -> Backend:
    if kind == "cluster":
        from cachedeco.backends import scaleout

        backend: Backend = scaleout.wrap_sync_cluster(client)
        return backend
    return RedisBackend(client)


def _wrap_async(client: Any, kind: str) -> AsyncBackend:
    if kind == "cluster":
        from cachedeco.backends import scaleout

        backend: AsyncBackend = scaleout.wrap_async_cluster(client)
        return backend
    return AsyncRedisBackend(client)
