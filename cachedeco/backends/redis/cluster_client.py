"""The asyncio Redis Cluster client the registry makes from a ``redis+cluster://`` URL: redis-py's,
with the two things its asyncio client lacks under many concurrent tasks.

- It waits for a place instead of failing. redis-py's asyncio ``ClusterNode`` raises
  ``MaxConnectionsError`` past ``max_connections`` (it cannot wait: its checkout is not a
  coroutine), so a burst of callers turned into backend errors. Here every command, pipeline
  and direct exchange holds one place of a :class:`~cachedeco.backends.redis.pools.Gate` of
  ``max_connections`` places while it runs, and uses at most one connection per node: no node
  ever runs out, and a burst waits up to ``pool_timeout``.
- It learns the topology before it routes anything. Until its first ``initialize()``,
  redis-py's ``RedisCluster.execute_command`` picks a command's policy *before* initializing
  and, finding no default node, sends keyed commands to whichever node becomes the default:
  ``MOVED`` for two keys in three. Many tasks doing so at once pile up ``MOVED`` replies, and
  every fifth one (``reinitialize_steps``) makes the client ``aclose()`` itself, cutting the
  connections other tasks are using: ``AttributeError: 'NoneType' object has no attribute
  'writelines'``, "Connection closed by server", or ``KeyError`` from ``get_node_from_slot``
  (redis-py 8.1; its maintainers' advice is to ``await initialize()`` first, redis-py issues
  #2437 and #3032). So the client initializes before its first command, under its own lock.

It also follows ``ASK`` to a node serving no slot yet (:mod:`.asking`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio.cluster
from redis.cluster import PRIMARY

from cachedeco.backends.redis.asking import ask_target
from cachedeco.backends.redis.pools import Gate
from cachedeco.backends.redis.twins import stray, translate

__all__ = ["WaitingRedisCluster"]

#: Whether this task already holds a place: a command that runs inside a pipeline or another
#: command (redirects, scripts loading themselves) takes no second one, so it never waits on
#: itself. Tasks spawned meanwhile (one per node) inherit it: they use other nodes.
_HOLDING: contextvars.ContextVar[bool] = contextvars.ContextVar("cachedeco_gate", default=False)


class WaitingRedisCluster(redis.asyncio.cluster.RedisCluster):
    """``redis.asyncio.cluster.RedisCluster`` whose callers wait for one of ``max_connections``
    places (up to ``pool_timeout`` seconds), and which initializes before its first command.

    Each node may open twice ``max_connections`` connections: room for the ones redis-py
    recycles in the background after a topology change, so that a place always finds one."""

    def __init__(self, *, max_connections: int, pool_timeout: float, **kwargs: Any) -> None:
        super().__init__(max_connections=2 * max_connections, **kwargs)
        self.gate = Gate(max_connections, pool_timeout)

    def get_node(self, host: str | None = None, port: int | None = None,
                 node_name: str | None = None) -> Any:
        """The node named so; an ``ASK`` target it does not know yet is added first."""
        return ask_target(super().get_node(host, port, node_name), host, port, self._adopt,
                          node_name)

    def _adopt(self, host: str, port: int | str) -> Any:
        manager: Any = self.nodes_manager
        node = manager.get_node(host, port)
        if node is None:
            node = redis.asyncio.cluster.ClusterNode(host, port, PRIMARY,
                                                     **manager.connection_kwargs)
            manager.set_nodes(manager.nodes_cache, {node.name: node})
        return node

    async def ready(self) -> None:
        """Learn the topology unless it is known (redis-py re-learns it after a node fails)."""
        if self._initialize:
            await self.initialize()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """redis-py's ``execute_command``, holding a place, on a known topology."""
        return await self.holding(super().execute_command, *args, **kwargs)

    def pipeline(self, transaction: Any | None = None,
                 shard_hint: Any | None = None) -> redis.asyncio.cluster.ClusterPipeline:
        """A pipeline whose ``execute()`` holds a place (one connection per node it uses)."""
        if transaction or shard_hint:  # let redis-py refuse or run what it supports
            return super().pipeline(transaction, shard_hint)
        return _WaitingPipeline(self)  # type: ignore[abstract]  # as redis-py makes its own

    async def holding(self, call: Callable[..., Awaitable[Any]], *args: Any,
                      **kwargs: Any) -> Any:
        """``await call(*args, **kwargs)`` holding a place (unless this task holds one); the
        stray errors of redis-py's races come out as ``ClusterError``."""
        if _HOLDING.get():
            return await call(*args, **kwargs)
        await self.gate.enter()
        token = _HOLDING.set(True)
        try:
            await self.ready()
            return await call(*args, **kwargs)
        except Exception as exc:
            if stray(exc):
                raise translate(exc) from exc
            raise
        finally:
            _HOLDING.reset(token)
            self.gate.leave()


class _WaitingPipeline(redis.asyncio.cluster.ClusterPipeline):
    """A cluster pipeline that holds one of its client's places while it executes."""

    async def execute(self, raise_on_error: bool = True,
                      allow_redirections: bool = True) -> list[Any]:
        client: WaitingRedisCluster = self.cluster_client  # type: ignore[assignment]
        result: list[Any] = await client.holding(super().execute, raise_on_error,
                                                 allow_redirections)
        return result
