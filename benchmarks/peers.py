"""Peer libraries as rows: each adapter wraps a plain function with one peer's decorator.

The peers are an optional extra (``pip install -e '.[peers]'``): they are imported lazily with
:func:`importlib.import_module`, so the suite runs without them and says what is missing.
Each adapter uses the library's documented decorator with its defaults (its own serializer,
pool and key scheme), except where noted in ``Cached.note``: aiocache gets ``timeout=0`` (its
default wraps every command in ``asyncio.wait_for``), and every peer's keys are put under the
scenario's prefix so that the registry's ``clear()`` removes them.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from benchmarks.servers import Where

__all__ = [
    "INSTALL_HINT",
    "PEERS",
    "Cached",
    "aiocache_cached",
    "cachetools_async",
    "cachetools_cached",
    "cashews_cache",
    "cashews_cached",
    "close_all",
    "dogpile_cached",
    "has",
    "missing",
    "module",
]

PEERS = ("cachetools", "cashews", "aiocache", "dogpile.cache")
INSTALL_HINT = "pip install -e '.[peers]'"
TTL = 3600


def module(name: str) -> ModuleType | None:
    """The peer module ``name``, or None when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


@functools.cache
def has(name: str) -> bool:
    """Whether the peer ``name`` can be imported."""
    return module(name) is not None


def missing() -> list[str]:
    """The peers that are not installed."""
    return [name for name in PEERS if not has(name)]


@dataclass(eq=False)
class Cached:
    """A function wrapped by a peer's decorator, and how to release what the peer opened."""

    name: str
    call: Callable[..., Any]
    note: str = ""
    close: Callable[[], None] | None = None
    aclose: Callable[[], Awaitable[None]] | None = None
    tags: Sequence[str] = field(default_factory=tuple)


async def close_all(peers: Sequence[Cached]) -> None:
    """Close every peer's clients (sync and async), ignoring peers that have none."""
    for peer in peers:
        if peer.aclose is not None:
            await peer.aclose()
        if peer.close is not None:
            peer.close()


def _need(name: str) -> ModuleType:
    found = module(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: {INSTALL_HINT}")
    return found


# --- cachetools (memory, sync) ---------------------------------------------------------------


def cachetools_cached(func: Callable[..., Any], maxsize: int = 100_000, *,
                      single_flight: bool = False) -> Cached:
    """``@cachetools.cached(LRUCache(maxsize))``; with ``single_flight`` a lock and a
    ``threading.Condition`` (cachetools' own stampede protection)."""
    ct = _need("cachetools")
    if single_flight:
        lock = threading.Condition()
        try:
            wrapped = ct.cached(ct.LRUCache(maxsize), lock=lock, condition=lock)(func)
        except TypeError:  # cachetools < 6 has no condition=: a plain lock, no single-flight
            wrapped = ct.cached(ct.LRUCache(maxsize), lock=threading.Lock())(func)
            return Cached("cachetools", wrapped, note="lock only (cachetools < 6)")
        return Cached("cachetools", wrapped, note="condition=threading.Condition()")
    return Cached("cachetools.cached", ct.cached(ct.LRUCache(maxsize))(func))


def cachetools_async(func: Callable[..., Awaitable[Any]], maxsize: int = 100_000) -> Cached:
    """The idiomatic async memo over cachetools (it has no async decorator): an
    ``LRUCache`` looked up with ``cachetools.keys.hashkey`` in an ``async def``."""
    ct = _need("cachetools")
    cache = ct.LRUCache(maxsize)
    hashkey = ct.keys.hashkey

    async def wrapper(*args: Any) -> Any:
        key = hashkey(*args)
        try:
            return cache[key]
        except KeyError:
            pass
        value = await func(*args)
        cache[key] = value
        return value

    return Cached("cachetools LRUCache in async def", wrapper)


# --- dogpile.cache (sync; memory or Redis) ----------------------------------------------------


def dogpile_cached(func: Callable[..., Any], prefix: str, url: str | None, *,
                   pool: int | None = None) -> Cached:
    """``region.cache_on_arguments()`` on ``dogpile.cache.redis`` (or ``.memory``); ``pool``
    sets the client's ``max_connections`` (redis-py's default is 100)."""
    dp = _need("dogpile.cache")
    region = dp.make_region(key_mangler=lambda key: f"{prefix}:dogpile:{key}")
    if url is None:
        region.configure("dogpile.cache.memory", expiration_time=TTL)
    else:
        arguments: dict[str, Any] = {"url": url, "redis_expiration_time": TTL + 60}
        if pool is not None:
            arguments["connection_kwargs"] = {"max_connections": pool}
        region.configure("dogpile.cache.redis", expiration_time=TTL, arguments=arguments)
    wrapped = region.cache_on_arguments()(func)

    def close() -> None:
        backend = region.backend
        client = getattr(backend, "writer_client", None)
        if client is not None:
            client.close()

    note = "pickle (its default)" if url is not None else ""
    return Cached("dogpile.cache", wrapped, note=note, close=close)


# --- cashews (async; memory or Redis) ---------------------------------------------------------


def cashews_cache(url: str | None, mem_size: int = 1000, *, pool: int | None = None) -> Any:
    """A fresh ``cashews.Cache`` set up on Redis (``url``; ``pool`` sets ``max_connections``,
    cashews' default is 10) or ``mem://`` of ``mem_size`` entries (its default is 1,000)."""
    cashews = _need("cashews")
    cache = cashews.Cache()
    if url is None:
        cache.setup(f"mem://?size={mem_size}")
    elif pool is None:
        cache.setup(url)
    else:
        cache.setup(url, max_connections=pool)
    return cache


def cashews_cached(cache: Any, func: Callable[..., Awaitable[Any]], key: str,
                   tags: Sequence[str] = (), *, close: bool = True) -> Cached:
    """``@cache(ttl, key=template, tags=templates)`` of cashews; ``close`` closes ``cache``."""
    wrapped = cache(ttl=TTL, key=key, tags=tuple(tags))(func)
    name = "cashews, 3 tags" if tags else "cashews"
    return Cached(name, wrapped, aclose=cache.close if close else None, tags=tuple(tags))


# --- aiocache (async; memory or Redis) --------------------------------------------------------


def aiocache_cached(func: Callable[..., Awaitable[Any]], namespace: str, url: str | None, *,
                    pool: int | None = None) -> Cached:
    """``@aiocache.cached`` on ``RedisCache`` (JSON serializer, ``timeout=0``; ``pool`` sets
    ``pool_max_size``, else redis-py's default of 100) or ``SimpleMemoryCache``."""
    aio = _need("aiocache")
    serializers = _need("aiocache.serializers")

    def key_builder(_f: Any, *args: Any, **_kwargs: Any) -> str:
        return ":".join(map(str, args))

    options: dict[str, Any] = {"ttl": TTL, "namespace": namespace, "timeout": 0,
                               "key_builder": key_builder}
    if url is None:
        wrapped = aio.cached(cache=aio.SimpleMemoryCache, **options)(func)
    else:
        where = Where.of(url)
        if pool is not None:
            options["pool_max_size"] = pool
        wrapped = aio.cached(cache=aio.RedisCache, endpoint=where.host, port=where.port,
                             db=where.db, serializer=serializers.JsonSerializer(),
                             **options)(func)
    return Cached("aiocache", wrapped, note="timeout=0", aclose=wrapped.cache.close)
