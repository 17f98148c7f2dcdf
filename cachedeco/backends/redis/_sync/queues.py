# GENERATED from _async/queues.py by tools/unasync.py: do not edit.
"""Write-behind queues in Redis streams, sync flavour: durable, at least once.

Each ``@write_behind`` function has one stream read through one consumer group; every
operation is one Lua script (``queue_scripts.WB_*``), so one round trip::

    prefix:~wb:{<module.qualname>}        records: r=<payload> k=<entry key> m=<entry marker>
    prefix:~wb:{<module.qualname>}:dead   dead letters: r k m + e=<error> o=<old id> t=<ms>

On Redis Cluster the entry and its tag keys lie in other slots than the stream: a call queues
the record first (``WB_ADD``), then stores the entry through the cluster backend; an ack
restores the entries per slot first, then acknowledges. ``docs/internals/write-behind.md``
describes the windows this leaves and why they are safe.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any, Protocol, cast

import redis
import redis.cluster
from redis.exceptions import NoScriptError

from cachedeco.backends.base import BACKEND_ERRORS, Backend
from cachedeco.backends.contracts.consumers import gone_here
from cachedeco.backends.contracts.queues import (
    DeadLetter,
    NotReplicated,
    NotSettled,
    NotStored,
    Push,
    QueueNames,
    Restore,
    Taken,
)
from cachedeco.backends.redis import queue_scripts as scripts
from cachedeco.backends.redis.commands import (
    SlotCall,
    ack_args,
    add_args,
    parse_dead,
    parse_take,
    push_args,
    restore_calls,
    restore_failed,
    text,
    waits,
)
from cachedeco.core.entry import new_tombstone

__all__ = ["ClusterQueue", "NodeBackend", "RedisQueue"]


class NodeBackend(Backend, Protocol):
    """A cluster backend: it can send commands to the node holding a key, on one connection."""

    def on_node(self, key: str, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The replies of ``commands``, sent in order on one connection of ``key``'s node."""
        ...


class RedisQueue:
    """A queue in a Redis stream (one per ``@write_behind`` function), over an asyncio client."""

    durable = True

    def __init__(self, client: redis.Redis | redis.cluster.RedisCluster,
                 names: QueueNames) -> None:
        self.client = client
        self.names = names
        self._cursor = "0-0"
        self._push = client.register_script(scripts.WB_PUSH)
        self._take = client.register_script(scripts.WB_TAKE)
        self._renew = client.register_script(scripts.WB_RENEW)
        self._ack = client.register_script(scripts.WB_ACK)
        self._bury = client.register_script(scripts.WB_BURY)
        self._replay = client.register_script(scripts.WB_REPLAY)
        self._release = client.register_script(scripts.WB_RELEASE)

    def push(self, item: Push, replicas: int = 0, timeout_ms: int = 0) -> int:
        """One EVALSHA: SET the entry (and tags) + XADD; with ``replicas``, pipelined with
        ``WAIT`` on the same connection (WAIT counts that connection's writes)."""
        keys, args = push_args(item, self.names.stream)
        if not replicas:
            return int(self._push(keys=keys, args=args))
        with self.client.pipeline(transaction=False) as pipe:
            self._push(keys=keys, args=args, client=cast(Any, pipe))
            for _, wanted, ms in waits(self.client, replicas, timeout_ms):
                pipe.wait(wanted, ms)
            length, *acks = pipe.execute()
        acked = max(map(int, acks))
        if acked < replicas:
            raise NotReplicated(int(length), acked, replicas)
        return int(length)

    def push_many(self, items: Sequence[Push]) -> None:
        """Many pushes in one round trip (recovery delivering spooled records), in one
        MULTI/EXEC: all land or none, so a batch cut off midway is sent again whole, never
        half of it twice."""
        with self.client.pipeline(transaction=True) as pipe:
            for item in items:
                keys, args = push_args(item, self.names.stream)
                self._push(keys=keys, args=args, client=cast(Any, pipe))
            pipe.execute()

    def take(self, consumer: str, count: int, claim_after_ms: int) -> Taken:
        """One EVALSHA: XAUTOCLAIM, then XREADGROUP. A second one when nothing came because
        a consumer whose process is gone holds a batch (see ``contracts.consumers``): it
        claims that batch at once rather than after ``claim_after``."""
        n = self.names
        args: list[Any] = [n.group, consumer, count, claim_after_ms]
        reply = self._take(keys=[n.stream], args=[*args, self._cursor])
        messages, length, self._cursor, holders = parse_take(reply)
        gone = [name for name in holders if gone_here(name)]
        if gone and not messages:
            reply = self._take(keys=[n.stream], args=[*args, self._cursor, *gone])
            messages, length, self._cursor, _ = parse_take(reply)
        return messages, length

    def renew(self, consumer: str, ids: Sequence[str]) -> list[str]:
        """One EVALSHA: the ids still ours, their idle time reset."""
        mine = self._renew(keys=[self.names.stream],
                                 args=[self.names.group, consumer, *ids])
        return [text(i) for i in mine]

    def ack(self, ids: Sequence[str], restores: Sequence[Restore]) -> int:
        """One EVALSHA: XACK + XDEL, and the entries' expiry restored."""
        keys, args = ack_args(self.names.group, ids, restores)
        return int(self._ack(keys=[self.names.stream, *keys], args=args))

    def bury(self, ids: Sequence[str], error: str) -> int:
        """One EVALSHA: copy to the dead letters, XACK + XDEL."""
        n = self.names
        args: list[Any] = [n.group, error, int(time.time() * 1000), *ids]
        return int(self._bury(keys=[n.stream, n.dead], args=args))

    def release(self, consumer: str, ids: Sequence[str], claim_after_ms: int) -> None:
        """One EVALSHA: mark ``ids`` idle; forget the consumer when it holds nothing."""
        n = self.names
        self._release(keys=[n.stream], args=[n.group, consumer, claim_after_ms + 1, *ids])

    def dead_letters(self, count: int) -> list[DeadLetter]:
        """XRANGE of the dead letters."""
        entries: Any = self.client.xrange(self.names.dead, count=count)
        return parse_dead(entries)

    def replay(self, count: int) -> int:
        """One EVALSHA: dead letters back into the stream."""
        return int(self._replay(keys=[self.names.dead, self.names.stream], args=[count]))


class ClusterQueue(RedisQueue):
    """A queue in a Redis stream on a Redis Cluster: the call and the ack span several slots
    (see the module docstring); every other operation is on the stream's slot."""

    def __init__(self, backend: NodeBackend, client: Any, names: QueueNames) -> None:
        super().__init__(client, names)
        self.backend = backend
        self._cluster: Any = client  # redis-py's cluster pipeline is loosely typed
        self._add = client.register_script(scripts.WB_ADD)
        self._restore = client.register_script(scripts.WB_RESTORE)

    def push(self, item: Push, replicas: int = 0, timeout_ms: int = 0) -> int:
        """WB_ADD on the stream's slot (with ``replicas``: and ``WAIT``, on one connection of
        the node holding the stream), then the entry through the backend's write path;
        NotStored when only the first step succeeded, NotReplicated when too few replicas
        acknowledged the record."""
        stream = self.names.stream
        acked = replicas
        if not replicas:
            length = int(self._add(keys=[stream], args=add_args(item)))
        else:
            added, *acks = self.backend.on_node(stream, [
                ("EVAL", scripts.WB_ADD, 1, stream, *add_args(item)),
                *waits(self.client, replicas, timeout_ms)])
            length, acked = int(added), max(map(int, acks))
        try:
            if item.write is None:
                self.backend.invalidate([item.key], item.tombstone, item.tomb_px)
            else:
                self.backend.write(item.key, item.write)
        except BACKEND_ERRORS as exc:
            if item.write is not None:
                with contextlib.suppress(*BACKEND_ERRORS):
                    self.backend.invalidate([item.key], item.tombstone or new_tombstone(),
                                                  item.tomb_px or item.write.px)
            raise NotStored(length) from exc
        if acked < replicas:
            raise NotReplicated(length, acked, replicas)
        return length

    def push_many(self, items: Sequence[Push]) -> None:
        """One push after the other: the entries lie in other slots than the stream."""
        for item in items:
            with contextlib.suppress(NotStored):  # queued, its entry dropped
                self.push(item)

    def ack(self, ids: Sequence[str], restores: Sequence[Restore]) -> int:
        """WB_RESTORE per entry slot (one pipeline), then WB_ACK on the stream; when the
        entries could not all be settled, the records are acknowledged all the same (a node
        down must not have a batch delivered for ever) and NotSettled names the entries."""
        try:
            self._restore_all(restore_calls(restores))
        except BACKEND_ERRORS as exc:
            restore_failed(exc)
            length = super().ack(ids, ())
            raise NotSettled(length, tuple(r.key for r in restores)) from exc
        return super().ack(ids, ())

    def _restore_all(self, calls: list[SlotCall]) -> None:
        if len(calls) <= 1:
            for keys, args in calls:
                self._restore(keys=keys, args=args)
            return
        with self._cluster.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.execute_command("EVALSHA", self._restore.sha, len(keys), *keys, *args)
            replies = pipe.execute(raise_on_error=False)
        for (keys, args), reply in zip(calls, replies, strict=True):
            if isinstance(reply, NoScriptError):
                self._restore(keys=keys, args=args)
            elif isinstance(reply, Exception):
                raise reply
