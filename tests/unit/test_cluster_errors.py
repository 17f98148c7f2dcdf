"""``cluster_errors``: what redis-py's cluster clients raise from inside their own code on a
race (a node killed, the client closing itself) becomes a ClusterError the failure policy
counts as a backend fault; the same exception raised outside redis-py stays what it is."""

from __future__ import annotations

from typing import Any

import pytest
import redis.connection
from redis.exceptions import ClusterError, RedisClusterException

from cachedeco.backends.redis.twins import cluster_errors, stray


def _inside_redis_py() -> Any:
    """A ValueError raised while redis-py's code runs (as its socket reader raises one when
    the socket is closed under it: redis-py 7.0, a cluster node killed)."""
    return redis.connection.parse_url("http://127.0.0.1:6379")


class Backend:
    @cluster_errors
    def read_closed(self) -> Any:
        return _inside_redis_py()

    @cluster_errors
    def mistaken(self) -> Any:
        raise ValueError("a mistake of cachedeco's own")

    @cluster_errors
    def unreachable(self) -> Any:
        raise RedisClusterException("Redis Cluster cannot be connected")

    @cluster_errors
    async def aread_closed(self) -> Any:
        return _inside_redis_py()


def test_a_value_error_from_inside_redis_py_is_a_cluster_error() -> None:
    with pytest.raises(ClusterError, match="ValueError: Redis URL must specify") as info:
        Backend().read_closed()
    assert isinstance(info.value.__cause__, ValueError)
    assert stray(info.value.__cause__)


async def test_the_same_for_coroutine_methods() -> None:
    with pytest.raises(ClusterError, match="ValueError"):
        await Backend().aread_closed()


def test_a_value_error_outside_redis_py_is_left_alone() -> None:
    with pytest.raises(ValueError, match="own") as info:
        Backend().mistaken()
    assert not stray(info.value)


def test_redis_cluster_exception_is_a_cluster_error() -> None:
    with pytest.raises(ClusterError, match="RedisClusterException: Redis Cluster cannot"):
        Backend().unreachable()
