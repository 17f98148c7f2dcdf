"""Following an ``ASK`` redirect to a node that serves no slot yet, in both cluster clients.

Scaling a cluster out adds an empty primary and moves slots to it. While a slot moves, the
keys already moved are served by the new node, and the old one answers ``ASK`` for them.
redis-py (8.2 included; its bug #4015) looks the ``ASK`` target up among the nodes that
``CLUSTER SLOTS`` listed, where a node serving no slot is missing, and fails with
``AttributeError: 'NoneType' object has no attribute ...``: every command on such a key
failed until the slot's move ended, and a cache made a backend fault of each. The clients
cachedeco makes add the target to their nodes instead, as redis-py does for a ``MOVED``
target; their next topology refresh forgets it again until it serves slots. redis-py names
the target by host and port from 8.2 on, by its node name (``host:port``) before. A cluster
client handed over ready keeps redis-py's behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.cluster
from redis.cluster import PRIMARY

__all__ = ["AskingRedisCluster", "ask_target"]


def ask_target(found: Any, host: str | None, port: int | str | None,
               adopt: Callable[[str, int | str], Any], node_name: str | None = None) -> Any:
    """``found`` (what redis-py's ``get_node`` found), or, when it found nothing for a
    ``host`` and ``port`` (or a ``node_name`` ``host:port``), the node ``adopt(host, port)``
    adds to the client's nodes."""
    if found is not None:
        return found
    if host is None and port is None and node_name:
        host, _, named_port = node_name.rpartition(":")
        port = named_port if host and named_port.isdigit() else None
    if host and port is not None:
        return adopt(host, port)
    return None


class AskingRedisCluster(redis.cluster.RedisCluster):
    """redis-py's sync ``RedisCluster`` that follows ``ASK`` to a node serving no slot."""

    def get_node(self, host: str | None = None, port: int | str | None = None,
                 node_name: str | None = None) -> Any:
        """The node named so; an ``ASK`` target it does not know yet is added first."""
        found = super().get_node(host, port, node_name)  # type: ignore[no-untyped-call, unused-ignore]
        return ask_target(found, host, port, self._adopt, node_name)

    def _adopt(self, host: str, port: int | str) -> Any:
        manager: Any = self.nodes_manager
        with manager._lock:  # as redis-py's own MOVED handling takes it
            node = manager.get_node(host, port)
            if node is None:
                node = redis.cluster.ClusterNode(host, port, PRIMARY)  # type: ignore[no-untyped-call, unused-ignore]
                manager.nodes_cache[node.name] = node
            return node
