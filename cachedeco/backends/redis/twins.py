"""The few places where redis-py's sync and asyncio clients differ by more than ``await``,
written by hand once so that everything in ``_async/`` can be generated into ``_sync/``.

- :class:`NodeLink` / :class:`AsyncNodeLink`: a connection to one cluster node, taken and
  given back around a direct write-all-then-read-all exchange.
- :func:`cluster_errors`: redis-py raises ``RedisClusterException`` outside ``RedisError``
  (no reachable node, slot not covered); re-raised as ``ClusterError`` so the failure policy
  counts it as a backend fault.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from redis.exceptions import ClusterError, RedisClusterException

__all__ = ["AsyncNodeLink", "NodeLink", "cluster_errors"]

P = ParamSpec("P")
R = TypeVar("R")


class NodeLink:
    """Connections to the nodes of a sync ``RedisCluster`` (its per-node pools)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def acquire(self, node: Any) -> tuple[Any, Any]:
        """A connection to ``node`` and what to give it back to."""
        pool = (node.redis_connection or self.client.get_redis_connection(node)).connection_pool
        return pool, pool.get_connection()

    def release(self, owner: Any, conn: Any) -> None:
        """Give a connection back."""
        owner.release(conn)

    def discard(self, conn: Any) -> None:
        """Drop a connection whose replies may be left unread."""
        conn.disconnect()


class AsyncNodeLink:
    """Connections to the nodes of an asyncio ``RedisCluster``."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def acquire(self, node: Any) -> tuple[Any, Any]:
        """See :meth:`NodeLink.acquire`."""
        return node, node.acquire_connection()

    def release(self, owner: Any, conn: Any) -> None:
        """See :meth:`NodeLink.release`."""
        owner.release(conn)

    async def discard(self, conn: Any) -> None:
        """See :meth:`NodeLink.discard`."""
        await conn.disconnect(nowait=True)


def _translate(exc: RedisClusterException) -> ClusterError:
    return ClusterError(f"{type(exc).__name__}: {exc}")


def cluster_errors(method: Callable[P, R]) -> Callable[P, R]:
    """Re-raise redis-py's RedisClusterException (not a RedisError) as a ClusterError, for a
    method or a coroutine method."""
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def coroutine(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except RedisClusterException as exc:
                raise _translate(exc) from exc

        return cast(Callable[P, R], coroutine)

    @functools.wraps(method)
    def plain(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except RedisClusterException as exc:
            raise _translate(exc) from exc

    return plain
