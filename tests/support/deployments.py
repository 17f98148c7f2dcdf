"""The deployments a test runs on: ``memory``, ``redis``, ``cluster`` and ``sentinel``.

A :class:`Deployment` is a name and the URL a :class:`~cachedeco.Registry` takes, plus plain
redis-py clients of it for the test to look behind the cache's back. The ``deployment`` fixture
(see :mod:`tests.support.fixtures`) is parametrized over :data:`ALL` unless a test narrows it
with ``@pytest.mark.deployments("redis", "cluster")``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.sentinel import Sentinel

__all__ = [
    "ALL",
    "BACKENDS",
    "REDIS_BACKENDS",
    "SERVERS",
    "Deployment",
    "acluster_client",
    "cluster_client",
    "hosts",
    "sentinel_primary",
]

#: Every deployment, and those with a server behind them.
ALL = ("memory", "redis", "cluster", "sentinel")
SERVERS = ("redis", "cluster", "sentinel")
#: One deployment per backend implementation: most feature tests run on these. Sentinel runs
#: the single server's backend over the primary it discovers, so a feature runs there too only
#: where discovery and its connections matter (flows, write-behind, leases, configure(), TTLs);
#: its failover is tests/deploy/test_sentinel.py.
BACKENDS = ("memory", "redis", "cluster")
REDIS_BACKENDS = ("redis", "cluster")
TIMEOUT = 5.0  # socket timeout of the clients made here


def hosts(url: str) -> list[tuple[str, int]]:
    """The ``host:port`` list of a URL: ``redis+cluster://h1:p1,h2:p2`` → ``[(h1, p1), …]``."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    return [(h, int(p)) for h, _, p in (item.rpartition(":") for item in netloc.split(","))]


@contextlib.contextmanager
def sentinel_primary(url: str) -> Iterator[redis.Redis]:
    """A plain client of the primary the sentinels of ``redis+sentinel://…/service/db`` name."""
    service, _, db = urlsplit(url).path.strip("/").partition("/")
    sentinel = Sentinel(hosts(url), socket_timeout=TIMEOUT)  # type: ignore[no-untyped-call]
    try:
        host, port = sentinel.discover_master(service)  # type: ignore[no-untyped-call]
    finally:
        for client in sentinel.sentinels:
            client.close()
    with redis.Redis(host=host, port=port, db=int(db or 0), socket_timeout=TIMEOUT) as primary:
        yield primary


def cluster_client(url: str) -> redis.cluster.RedisCluster:
    """A sync client of the cluster whose nodes ``url`` lists."""
    nodes = [redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
             for h, p in hosts(url)]
    return redis.cluster.RedisCluster(startup_nodes=nodes, socket_timeout=TIMEOUT)


def acluster_client(url: str) -> redis.asyncio.cluster.RedisCluster:
    """An asyncio client of the cluster whose nodes ``url`` lists."""
    nodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in hosts(url)]
    return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, socket_timeout=TIMEOUT)


@dataclass(eq=False)
class Deployment:
    """A deployment by name, its URL, and plain clients of it (closed by :meth:`close`)."""

    name: str
    url: str
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)
    _raw: Any = field(default=None, repr=False)

    @property
    def has_server(self) -> bool:
        return self.name != "memory"

    @property
    def raw(self) -> Any:
        """A sync client (bytes replies) of where the entries live: the server, the cluster, or
        the primary the sentinels name. ``memory://`` has none: asking is a test bug."""
        assert self.has_server, "memory:// has no server to look at"
        if self._raw is None:
            if self.name == "sentinel":
                self._raw = self._stack.enter_context(sentinel_primary(self.url))
            else:
                self._raw = self._stack.enter_context(self.client())
        return self._raw

    def client(self) -> Any:
        """A new ready sync client of the deployment (what a user may hand to a Registry)."""
        if self.name == "cluster":
            return cluster_client(self.url)
        if self.name == "redis":
            return redis.Redis.from_url(self.url, socket_timeout=TIMEOUT)
        raise AssertionError(f"no ready client for {self.name}")

    def aclient(self) -> Any:
        """A new ready asyncio client of the deployment."""
        if self.name == "cluster":
            return acluster_client(self.url)
        if self.name == "redis":
            return redis.asyncio.Redis.from_url(self.url, socket_timeout=TIMEOUT)
        raise AssertionError(f"no ready client for {self.name}")

    def close(self) -> None:
        self._stack.close()
        self._raw = None
