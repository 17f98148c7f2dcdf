"""Redis Cluster and Sentinel backends (filled in by the scale-out work)."""

from __future__ import annotations

from typing import Any

from cachedeco.errors import ConfigurationError

__all__ = ["make_async", "make_sync", "wrap_async_cluster", "wrap_sync_cluster"]


def make_sync(kind: str, url: str, options: Any) -> Any:
    """A sync backend for a cluster or sentinel URL."""
    raise ConfigurationError(f"{kind} backends are not supported yet")


def make_async(kind: str, url: str, options: Any) -> Any:
    """An async backend for a cluster or sentinel URL."""
    raise ConfigurationError(f"{kind} backends are not supported yet")


def wrap_sync_cluster(client: Any) -> Any:
    """A sync backend over a ready RedisCluster client."""
    raise ConfigurationError("cluster clients are not supported yet")


def wrap_async_cluster(client: Any) -> Any:
    """An async backend over a ready asyncio RedisCluster client."""
    raise ConfigurationError("cluster clients are not supported yet")
