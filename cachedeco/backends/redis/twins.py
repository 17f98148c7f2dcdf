"""The few places where redis-py's sync and asyncio clients differ by more than ``await``,
written by hand once so that everything in ``_async/`` can be generated into ``_sync/``.

- :class:`NodeLink` / :class:`AsyncNodeLink`: connections to cluster nodes, taken and given
  back around a direct write-all-then-read-all exchange (asyncio: inside one of the client's
  places and on a known topology, see :mod:`cachedeco.backends.redis.cluster_client`).
- :func:`cluster_errors`: redis-py raises ``RedisClusterException`` outside ``RedisError``
  (no reachable node, slot not covered); and its asyncio cluster client, which ``aclose()``\\ s
  itself on ``CLUSTERDOWN``, on an uncovered slot and on every fifth ``MOVED``, cuts the
  connections other tasks are using, which then fail inside redis-py with an
  ``AttributeError`` (``'NoneType' object has no attribute 'writelines'``), a ``LookupError``
  or a ``TypeError``; the sync client of redis-py 7.0, when a node is killed, a
  ``ValueError`` (``I/O operation on closed file``: a socket closed under a read). Both kinds
  are re-raised as ``ClusterError``, so that the failure policy counts them as backend faults
  rather than handing them to the caller.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from redis.exceptions import ClusterError, RedisClusterException

__all__ = ["AsyncNodeLink", "NodeLink", "cluster_errors", "stray", "translate"]

P = ParamSpec("P")
R = TypeVar("R")

#: What redis-py's own races raise from inside it (never from a caller's mistake here: the
#: exception must have passed through redis-py's code, see :func:`_inside_redis`).
_STRAY = (AttributeError, LookupError, TypeError, ValueError)


class NodeLink:
    """Connections to the nodes of a sync ``RedisCluster`` (its per-node pools, which block
    when busy: an exchange takes its nodes' connections in name order, so two exchanges never
    wait for each other)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def enter(self) -> None:
        """Nothing to wait for: each node's pool does the waiting."""

    def leave(self) -> None:
        """See :meth:`enter`."""

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

    def close(self) -> None:
        """Close the client and its nodes' pools: redis-py closes a node's client, but not a
        pool it was given (the blocking pools a URL makes). Its default node is set back, as
        the registry may be used again: redis-py forgets it on close, and a command whose
        keys it resolves on that node (``XRANGE``, ``INCR``, ``UNLINK``) then fails for good
        where the pools would just reconnect."""
        nodes = self.client.get_nodes()
        default = self.client.get_default_node()
        self.client.close()
        for node in nodes:
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()
        self.client.set_default_node(default)


class AsyncNodeLink:
    """Connections to the nodes of an asyncio ``RedisCluster``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.gate = getattr(client, "gate", None)  # a WaitingRedisCluster's; none on others

    async def enter(self) -> None:
        """Hold one of the client's places (when it has them), on a known topology: before
        its first ``initialize()`` redis-py's asyncio client has no slot map at all."""
        if self.gate is not None:
            await self.gate.enter()
        try:
            if self.client._initialize:
                await self.client.initialize()
        except BaseException:
            self.leave()
            raise

    def leave(self) -> None:
        """Give the place back."""
        if self.gate is not None:
            self.gate.leave()

    def acquire(self, node: Any) -> tuple[Any, Any]:
        """See :meth:`NodeLink.acquire`."""
        return node, node.acquire_connection()

    def release(self, owner: Any, conn: Any) -> None:
        """See :meth:`NodeLink.release`."""
        owner.release(conn)

    async def discard(self, conn: Any) -> None:
        """See :meth:`NodeLink.discard` (``nowait``: it never suspends, so a cancellation
        cannot stop it half-way and leave unread replies on a pooled connection)."""
        await conn.disconnect(nowait=True)

    async def aclose(self) -> None:
        """Close the client: every node's connections (the startup nodes' too)."""
        await self.client.aclose()


def stray(exc: BaseException) -> bool:
    """Whether ``exc`` is one of the stray errors redis-py's races raise from inside it."""
    return isinstance(exc, _STRAY) and _inside_redis(exc)


def _inside_redis(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while redis-py's code was running."""
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("redis."):
            return True
        tb = tb.tb_next
    return False


def translate(exc: BaseException) -> ClusterError:
    """A ClusterError saying what ``exc`` was (raise it ``from exc``)."""
    return ClusterError(f"{type(exc).__name__}: {exc}")


def cluster_errors(method: Callable[P, R]) -> Callable[P, R]:
    """Re-raise redis-py's RedisClusterException (not a RedisError), and the stray errors of
    its races, as a ClusterError, for a method or a coroutine method."""
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def coroutine(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except RedisClusterException as exc:
                raise translate(exc) from exc
            except _STRAY as exc:
                if not _inside_redis(exc):
                    raise
                raise translate(exc) from exc

        return cast(Callable[P, R], coroutine)

    @functools.wraps(method)
    def plain(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except RedisClusterException as exc:
            raise translate(exc) from exc
        except _STRAY as exc:
            if not _inside_redis(exc):
                raise
            raise translate(exc) from exc

    return plain
