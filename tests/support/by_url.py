"""Fixtures by URL, for tests that need a URL rather than a registry: ``url`` runs a test on
``memory://``, one Redis server and a Redis Cluster, and ``stats_client`` counts the commands
a deployment served."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from tests.support.commands import commandstats
from tests.support.deployments import hosts

__all__ = ["DEPLOYMENTS", "commands", "stats_client", "url"]

DEPLOYMENTS = ("memory", "redis", "cluster")


@pytest.fixture(params=DEPLOYMENTS)
def url(request: pytest.FixtureRequest, redis_url: str, cluster_url: str, prefix: str) -> str:
    """The test's deployment (both servers are requested so ``prefix`` sweeps them)."""
    return {"memory": "memory://", "redis": redis_url, "cluster": cluster_url}[request.param]


@pytest.fixture
def stats_client(url: str) -> Iterator[Any]:
    """A plain client of the deployment, for ``INFO commandstats`` (None on memory://)."""
    if url.startswith("memory"):
        yield None
        return
    if url.startswith("redis+cluster"):
        nodes = [ClusterNode(h, p) for h, p in hosts(url)]  # type: ignore[no-untyped-call]
        client: Any = RedisCluster(startup_nodes=nodes)
    else:
        client = redis.Redis.from_url(url)
    try:
        yield client
    finally:
        client.close()


def commands(client: Any) -> dict[str, int]:
    """Calls per command so far on the deployment (empty on memory://)."""
    return {} if client is None else commandstats(client)
