"""Following an ``ASK`` redirect to a node that serves no slot yet, in both cluster clients.

Scaling a cluster out adds an empty primary and moves slots to it. While a slot moves, the
keys already moved are served by the new node, and the old one answers ``ASK`` for them.
redis-py (8.2 included; its bug #4015) looks the ``ASK`` target up among the nodes that
``CLUSTER SLOTS`` listed, where a node serving no slot is missing, and fails with
``AttributeError: 'NoneType' object has no attribute ...``: every command on such a key
failed until the slot's move ended, and a cache made a backend fault of each. The clients
cachedeco makes add the target to their nodes instead, as redis-py does for a ``MOVED``
target; their next topology refresh forgets it again until it serves slots. The sync
client's pipelines do so too: a pipeline retries a redirected command through a
``get_node`` of its own, which failed alike once a topology refresh had forgotten the target
(an invalidation of several keys then waited for auto-recovery). redis-py names
the target by host and port from 8.2 on, by its node name (``host:port``) before. A cluster
client handed over ready keeps redis-py's behaviour.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

import redis.cluster
from redis.cluster import PRIMARY

__all__ = ["AskingClusterPipeline", "AskingRedisCluster", "ask_target"]


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


def _adopt(manager: Any, host: str, port: int | str) -> Any:
    """The node at ``host``:``port`` among ``manager``'s nodes, added as a primary if new."""
    with manager._lock:  # as redis-py's own MOVED handling takes it
        node = manager.get_node(host, port)
        if node is None:
            node = redis.cluster.ClusterNode(host, port, PRIMARY)  # type: ignore[no-untyped-call, unused-ignore]
            manager.nodes_cache[node.name] = node
        return node


class _FollowsAsk:
    """``get_node`` that adds an ``ASK`` target it does not know yet first: for the client and
    for its pipelines (a pipeline is a client of its own, with its own ``get_node``)."""

    nodes_manager: Any

    def get_node(self, host: str | None = None, port: int | str | None = None,
                 node_name: str | None = None) -> Any:
        """The node named so; an ``ASK`` target it does not know yet is added first."""
        found = super().get_node(host, port, node_name)  # type: ignore[misc]
        return ask_target(found, host, port, functools.partial(_adopt, self.nodes_manager),
                          node_name)


class AskingRedisCluster(_FollowsAsk, redis.cluster.RedisCluster):
    """redis-py's sync ``RedisCluster`` that follows ``ASK`` to a node serving no slot, and
    whose pipelines do too."""

    def pipeline(self, transaction: Any | None = None,
                 shard_hint: Any | None = None) -> redis.cluster.ClusterPipeline:
        """redis-py's pipeline, following ``ASK`` as this client does: it retries a redirected
        command through its own ``get_node`` (a pipeline is a client of its own), which
        found no node serving no slot and failed with ``AttributeError``. Made by redis-py
        (whose constructor's arguments change between versions), then given the class."""
        pipe = super().pipeline(transaction, shard_hint)  # type: ignore[no-untyped-call, unused-ignore]
        pipe.__class__ = AskingClusterPipeline
        return cast(redis.cluster.ClusterPipeline, pipe)


class AskingClusterPipeline(_FollowsAsk, redis.cluster.ClusterPipeline):
    """redis-py's sync ``ClusterPipeline`` that follows ``ASK`` to a node serving no slot."""
