"""Sentinel-managed Redis: the single-server backend over the client of the current primary.

``Sentinel(...).master_for(service, db=…)`` gives a client whose pool asks the sentinels for
the primary's address whenever it opens a connection, and drops its connections when that
address changes. So during a failover a call fails fast (connection refused, or a bounded
timeout) and the registry's guard answers it uncached; once the sentinels name the promoted
replica, the next connection goes there and the cache works again, with no restart. The
sentinels themselves are asked with the same bounded timeouts.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

from cachedeco.backends.redis import AsyncRedisBackend, RedisBackend

__all__ = ["AsyncSentinelBackend", "SentinelBackend", "sentinel_settings"]


def sentinel_settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The settings of the connections to the sentinels: the data connections' timeouts and
    retry, updated by the backend option ``sentinel_kwargs`` (popped from ``kwargs``)."""
    keep = ("socket_timeout", "socket_connect_timeout", "retry")
    settings = {name: kwargs[name] for name in keep if name in kwargs}
    settings.update(kwargs.pop("sentinel_kwargs", None) or {})
    return settings


class SentinelBackend(RedisBackend):
    """:class:`RedisBackend` over ``master_for``; closing it closes the sentinel connections too."""

    def __init__(self, sentinel: redis.sentinel.Sentinel, client: redis.Redis) -> None:
        super().__init__(client)
        self.sentinel = sentinel

    def close(self) -> None:
        """Close the primary's connections and the sentinels'."""
        super().close()
        for client in self.sentinel.sentinels:
            client.close()


class AsyncSentinelBackend(AsyncRedisBackend):
    """The asyncio twin of :class:`SentinelBackend`."""

    def __init__(self, sentinel: redis.asyncio.sentinel.Sentinel,
                 client: redis.asyncio.Redis) -> None:
        super().__init__(client)
        self.sentinel = sentinel

    async def close(self) -> None:
        """Close the primary's connections and the sentinels'."""
        await super().close()
        for client in self.sentinel.sentinels:
            await client.aclose()
