"""The set-up every scenario shares: a registry under a fresh prefix, raw Redis clients, one
event loop for the async rows, the peers opened, and a clean-up that leaves nothing behind.

Clean-up uses the registry's ``clear()`` (SCAN + UNLINK within the prefix, never KEYS or
FLUSH*): raw and peer keys are put under the same prefix so that it removes them too; then a
sweep (SCAN + UNLINK within the prefix) removes cachedeco's own keys that ``clear()`` spares
(``prefix:~…``: tags, leases); what a peer keeps elsewhere (cashews' tag sets) is removed
with that peer's own API by a registered async clean-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import redis
import redis.asyncio
import redis.cluster

import cachedeco
from benchmarks import peers
from benchmarks.servers import new_prefix, sweep

__all__ = ["Rig"]


def _raw_client(url: str) -> Any:
    """A raw sync client for a ``redis://`` URL, or a RedisCluster for ``redis+cluster://``."""
    if url.startswith("redis+cluster://"):
        host, port = url.split("://", 1)[1].split(",", maxsplit=1)[0].rsplit(":", 1)
        return redis.cluster.RedisCluster(host=host, port=int(port))
    return redis.Redis.from_url(url)


class Rig:
    """A scenario's registry (``memory://`` when ``url`` is None), clients, loop and peers."""

    def __init__(self, url: str | None, scenario: str, **settings: Any) -> None:
        self.url = url
        self.prefix = new_prefix(scenario)
        # no report of the service-wide counters (a background thread, every 5 s): it would
        # land in the commands a scenario counts per operation now and then
        settings.setdefault("stats_interval", 0)
        self.reg = cachedeco.Registry(url if url is not None else "memory://",
                                      prefix=self.prefix, **settings)
        self.loop = asyncio.new_event_loop()
        self.peers: list[peers.Cached] = []
        self.cleanups: list[Callable[[], Awaitable[object]]] = []
        self._sync: Any = None
        self._async: redis.asyncio.Redis | None = None

    @property
    def client(self) -> Any:
        """A raw sync client (the baseline's), made on first use."""
        if self.url is None:
            raise RuntimeError("this scenario runs without Redis")
        if self._sync is None:
            self._sync = _raw_client(self.url)
        return self._sync

    @property
    def aclient(self) -> redis.asyncio.Redis:
        """A raw asyncio client for :attr:`loop` (the baseline's), made on first use."""
        if self.url is None:
            raise RuntimeError("this scenario runs without Redis")
        if self._async is None:
            self._async = redis.asyncio.Redis.from_url(self.url)
        return self._async

    def key(self, *parts: object) -> str:
        """A raw key under the prefix: ``prefix:part:part``."""
        return ":".join([self.prefix, *map(str, parts)])

    def peer(self, cached: peers.Cached) -> peers.Cached:
        """Remember a peer to close at the end; returns it."""
        self.peers.append(cached)
        return cached

    def run(self, coro: Awaitable[Any]) -> Any:
        """Run a coroutine on the scenario's loop."""
        async def wrap() -> Any:
            return await coro

        return self.loop.run_until_complete(wrap())

    def close(self) -> None:
        """Remove every key of the scenario and close clients, peers and the loop."""
        try:
            for cleanup in self.cleanups:
                self.run(cleanup())
            self.run(peers.close_all(self.peers))
            self.reg.clear()
            if self.url is not None:
                sweep(self.client, self.prefix)  # clear() spares prefix:~… (tags, leases)
            self.run(self.reg.aclose())
            if self._async is not None:
                self.run(self._async.aclose())
        finally:
            self.loop.close()
            if self._sync is not None:
                self._sync.close()

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
