"""The write-behind queue: a small contract of its own (DESIGN rule 2) with three homes.

A record is pushed together with its cache entry, taken by a consumer, and then acknowledged
(after ``flush`` returned), buried in the dead letters (after its retries), or released (an
interrupted delivery). A taken record stays *pending* for its consumer until one of those.

On Redis (durable; :class:`RedisQueue`, :class:`AsyncRedisQueue`, also over Sentinel's
primary) each ``@write_behind`` function has one stream read through one consumer group, every
operation being one Lua script (``_scripts.WB_*``), so one round trip::

    prefix:~wb:{<module.qualname>}        records: r=<payload> k=<entry key> m=<entry marker>
    prefix:~wb:{<module.qualname>}:dead   dead letters: r k m + e=<error> o=<old id> t=<ms>
    group "cachedeco", one consumer per process and function ("host:pid:hex")

Both names are the registry's internal keys (``Registry.internal_key("wb", …)``): they start
with ``prefix:`` (an ACL user confined to ``~prefix:*`` reaches them) and ``reg.clear()`` and
``invalidate_pattern()`` spare them, as they spare every ``prefix:~…`` key. The hash tag, the
function's name, keeps a function's two streams in one Redis Cluster slot.

``take`` first claims records idle for ``claim_after`` in anyone's pending list (XAUTOCLAIM:
their consumer died), then reads new ones (XREADGROUP ``>``); a delivery keeps its lease by
``renew`` (an owner check, then XCLAIM JUSTID, which resets the idle time) before each attempt
and while ``flush`` runs; ``ack`` is XACK + XDEL.

On Redis Cluster (:class:`ClusterQueue`, :class:`AsyncClusterQueue`) the entry and its tag keys
lie in other slots than the stream, so a call is not one script:

1. ``WB_ADD`` on the stream's slot: XADD + XLEN. If it fails the call raises BackendError and
   nothing was stored: the call did not return, and no entry shows a record that was never
   queued.
2. the entry is stored by the cluster backend's own write path (``ClusterBackend.write``:
   ``CHECK_TAGS`` on the tag slot, then ``STORE_ENTRY`` on the entry's slot), or its tombstone
   by ``ClusterBackend.invalidate``. If that fails the record is queued all the same (it will
   be flushed): the old entry is dropped if possible and :class:`NotStored` tells the caller,
   whose failure policy logs it (or raises, under ``on_error="raise"``).

So a call costs three round trips instead of one (WB_ADD, CHECK_TAGS, STORE_ENTRY; one more
per further tag slot, i.e. per tag with braces of its own). Every record of one function goes
to the stream's node, so one function's queue is as fast as one primary.

An ack restores the flushed entries first, with one ``WB_RESTORE`` per entry slot (all sent
through one cluster pipeline: one request per node; a node that lost its scripts answers
NOSCRIPT and that slot is redone through the script object, which loads it), then runs
``WB_ACK`` on the stream alone. Restoring first means a crash in between only delivers the
records again (at least once), never leaves a flushed entry held; a restore that fails (a node
down) is logged and the records are acknowledged anyway, so one bad node cannot make the queue
deliver a batch for ever.

The windows of the two steps. Two concurrent calls with one key may store their entries in
the other order than they queued their records; the flow restores the entries of superseded
records too (``_write_behind_flow``), so the older entry then expires after its ``ttl``, as a
write-through race would leave it. And a worker may take, flush and acknowledge a record
between steps 1 and 2 of its call (the calling thread stalled longer than a whole delivery):
the ack's restore then finds the previous entry, so the entry stored by step 2 keeps its hold
TTL (``HOLD``, 30 days) instead of its normal one. It holds the newest value, and the next
write, an invalidation or an eviction replaces it, but it outlives its ``ttl``.

On ``memory://`` the records live in this process (:mod:`cachedeco.backends.queues_memory`):
not durable; a warning is logged if the interpreter exits with records in it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from cachedeco._entry import Write, encode_header, new_tombstone
from cachedeco._guard import BACKEND_ERRORS
from cachedeco.backends import _scripts
from cachedeco.backends.cluster import AsyncClusterBackend, ClusterBackend
from cachedeco.backends.memory import AsyncMemoryBackend, MemoryBackend
from cachedeco.backends.redis import AsyncRedisBackend, RedisBackend
from cachedeco.errors import ConfigurationError

__all__ = [
    "AsyncClusterQueue",
    "AsyncQueue",
    "AsyncRedisQueue",
    "ClusterQueue",
    "DeadLetter",
    "Message",
    "NotStored",
    "Push",
    "Queue",
    "QueueNames",
    "RedisQueue",
    "Restore",
    "open_async_queue",
    "open_queue",
    "order",
]

GROUP: Final = "cachedeco"
Taken = tuple[list["Message"], int]  # the records taken and the queue's length
SlotCall = tuple[list[str], list[Any]]  # KEYS and ARGV of one script call on one hash slot
logger = logging.getLogger("cachedeco")


@dataclass(frozen=True, slots=True)
class QueueNames:
    """The keys of one function's queue."""

    stream: str
    dead: str
    group: str = GROUP

    @classmethod
    def of(cls, stream: str) -> QueueNames:
        """The names of the queue whose stream is ``stream``: its dead letters sit beside it
        (``stream + ":dead"``, the same hash tag, so the same Cluster slot)."""
        return cls(stream, stream + ":dead")


@dataclass(frozen=True, slots=True)
class Push:
    """A record to queue and the entry to leave in the cache with it (or a tombstone).

    With a ``write``, ``tomb_px`` (when given) is how long the tombstone that replaces the old
    entry lives should the write fail after the record was queued (Redis Cluster's two steps).
    """

    key: str
    tag_keys: tuple[str, ...]
    write: Write | None  # None: leave ``tombstone`` for ``tomb_px`` ms instead
    record: Any  # payload bytes (Redis) or the object (memory)
    tombstone: str = ""
    tomb_px: int = 0


class NotStored(Exception):
    """The record was queued (it will be flushed) but its cache entry could not be stored.

    ``length`` is the queue's length after the push; the backend's error is the cause.
    """

    def __init__(self, length: int) -> None:
        super().__init__("the write-behind record was queued but its entry was not stored")
        self.length = length


@dataclass(frozen=True, slots=True)
class Message:
    """A queued record as taken: ``claimed`` when it was another delivery's before."""

    id: str
    record: Any
    key: str
    marker: str
    claimed: bool = False
    tag_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Restore:
    """After a flush: give the entry at ``key`` its normal expiry if it still holds ``marker``."""

    key: str
    marker: str
    soft: float
    px: int
    tag_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that used up its retries: what it was, for which entry, and why it failed."""

    id: str
    record: Any
    key: str
    error: str
    failed_at: float  # epoch seconds
    function: str = ""
    marker: str = field(default="", repr=False)
    tag_keys: tuple[str, ...] = field(default=(), repr=False)


def order(message_id: str) -> tuple[int, int]:
    """The sort key of a stream id ``ms-seq``."""
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq or 0)


class Queue(Protocol):
    """A synchronous write-behind queue."""

    durable: bool

    def push(self, item: Push) -> int:
        """Store the entry and append the record, atomically; return the queue's length."""
        ...

    def take(self, consumer: str, count: int, claim_after_ms: int) -> Taken:
        """Up to ``count`` records, now pending for ``consumer``, and the queue's length."""
        ...

    def renew(self, consumer: str, ids: Sequence[str]) -> list[str]:
        """Extend the lease on ``ids``; return those still pending for ``consumer``."""
        ...

    def ack(self, ids: Sequence[str], restores: Sequence[Restore]) -> int:
        """Drop delivered records and restore their entries' expiry; return the length."""
        ...

    def bury(self, ids: Sequence[str], error: str) -> int:
        """Move records to the dead letters; return the queue's length."""
        ...

    def release(self, consumer: str, ids: Sequence[str], claim_after_ms: int) -> None:
        """Make ``ids`` available to the next take at once (an interrupted delivery)."""
        ...

    def dead_letters(self, count: int) -> list[DeadLetter]:
        """The oldest ``count`` dead letters (records still encoded)."""
        ...

    def replay(self, count: int) -> int:
        """Queue up to ``count`` dead letters again; return how many moved."""
        ...


class AsyncQueue(Protocol):
    """The asyncio twin of :class:`Queue`."""

    durable: bool

    async def push(self, item: Push) -> int:
        """See :meth:`Queue.push`."""
        ...

    async def take(self, consumer: str, count: int, claim_after_ms: int) -> Taken:
        """See :meth:`Queue.take`."""
        ...

    async def renew(self, consumer: str, ids: Sequence[str]) -> list[str]:
        """See :meth:`Queue.renew`."""
        ...

    async def ack(self, ids: Sequence[str], restores: Sequence[Restore]) -> int:
        """See :meth:`Queue.ack`."""
        ...

    async def bury(self, ids: Sequence[str], error: str) -> int:
        """See :meth:`Queue.bury`."""
        ...

    async def release(self, consumer: str, ids: Sequence[str], claim_after_ms: int) -> None:
        """See :meth:`Queue.release`."""
        ...

    async def dead_letters(self, count: int) -> list[DeadLetter]:
        """See :meth:`Queue.dead_letters`."""
        ...

    async def replay(self, count: int) -> int:
        """See :meth:`Queue.replay`."""
        ...


# --- Redis: arguments and replies, built and parsed once for both flavours -------------------


def _text(value: Any) -> str:
    """A reply's bytes as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def push_args(item: Push, stream: str) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of WB_PUSH."""
    write = item.write
    if write is None:
        args: list[Any] = [item.tombstone, "", b"", item.tomb_px, 0, "", item.record, ""]
        return [item.key, stream], args
    args = [
        "-",
        encode_header(write.marker, write.soft, write.delta),
        write.value,
        write.px,
        max(write.tag_px, write.px),
        write.new_tag,
        item.record,
        write.marker,
    ]
    return [item.key, *write.tag_keys, stream], args


def _fields(raw: Any) -> dict[str, Any]:
    """A stream entry's fields: a flat list from Lua, a dict from redis-py's XRANGE."""
    if isinstance(raw, dict):
        return {_text(k): v for k, v in raw.items()}
    return {_text(raw[i]): raw[i + 1] for i in range(0, len(raw) - 1, 2)}


def _message(entry: Sequence[Any], claimed: bool) -> Message:
    """One ``[id, fields]`` stream entry as a message."""
    fields = _fields(entry[1])
    return Message(_text(entry[0]), fields.get("r", b""), _text(fields.get("k", b"")),
                   _text(fields.get("m", b"")), claimed)


def parse_take(reply: Sequence[Any]) -> tuple[list[Message], int, str]:
    """WB_TAKE's reply: the messages (claimed first), the length and the next cursor."""
    length, cursor, claimed, fresh = reply
    messages = [_message(e, True) for e in claimed if e and e[1]]
    messages += [_message(e, False) for e in fresh]
    return messages, int(length), _text(cursor)


def ack_args(group: str, ids: Sequence[str], restores: Sequence[Restore]
             ) -> tuple[list[str], list[Any]]:
    """The entry keys (after the stream) and ARGV of WB_ACK."""
    args: list[Any] = [group, len(ids), *ids]
    for r in restores:
        args += [r.marker, int(r.soft * 1000), r.px]
    return [r.key for r in restores], args


def add_args(item: Push) -> list[Any]:
    """ARGV of WB_ADD: the record, its entry's key and marker ("" for a tombstone)."""
    return [item.record, item.key, "" if item.write is None else item.write.marker]


def restore_calls(restores: Sequence[Restore]) -> list[SlotCall]:
    """KEYS and ARGV of WB_RESTORE, one call per hash slot of the entries."""
    calls: dict[int, SlotCall] = {}
    for r in restores:
        keys, args = calls.setdefault(key_slot(r.key.encode()), ([], []))
        keys.append(r.key)
        args += [r.marker, int(r.soft * 1000), r.px]
    return list(calls.values())


def _restore_failed(exc: BaseException) -> None:
    """A cluster ack could not restore some entries: they stay held; the ack goes on."""
    logger.warning("cachedeco: flushed write-behind entries could not be given their normal "
                   "expiry (%s: %s); they stay held until overwritten", type(exc).__name__, exc)


def parse_dead(entries: Sequence[Any]) -> list[DeadLetter]:
    """XRANGE of the dead-letter stream."""
    letters = []
    for entry in entries:
        f = _fields(entry[1])
        letters.append(DeadLetter(_text(entry[0]), f.get("r", b""), _text(f.get("k", b"")),
                                  _text(f.get("e", b"")), int(f.get("t", 0)) / 1000,
                                  marker=_text(f.get("m", b""))))
    return letters


class RedisQueue:
    """A queue in a Redis stream, over a synchronous client."""

    durable = True

    def __init__(self, client: redis.Redis | redis.cluster.RedisCluster,
                 names: QueueNames) -> None:
        self.client = client
        self.names = names
        self._cursor = "0-0"
        self._push = client.register_script(_scripts.WB_PUSH)
        self._take = client.register_script(_scripts.WB_TAKE)
        self._renew = client.register_script(_scripts.WB_RENEW)
        self._ack = client.register_script(_scripts.WB_ACK)
        self._bury = client.register_script(_scripts.WB_BURY)
        self._replay = client.register_script(_scripts.WB_REPLAY)
        self._release = client.register_script(_scripts.WB_RELEASE)

    def push(self, item: Push) -> int:
        """One EVALSHA: SET the entry (and tags) + XADD."""
        keys, args = push_args(item, self.names.stream)
        return int(self._push(keys=keys, args=args))

    def take(self, consumer: str, count: int, claim_after_ms: int) -> Taken:
        """One EVALSHA: XAUTOCLAIM, then XREADGROUP."""
        n = self.names
        reply = self._take(keys=[n.stream],
                           args=[n.group, consumer, count, claim_after_ms, self._cursor])
        messages, length, self._cursor = parse_take(reply)
        return messages, length

    def renew(self, consumer: str, ids: Sequence[str]) -> list[str]:
        """One EVALSHA: the ids still ours, their idle time reset."""
        mine = self._renew(keys=[self.names.stream], args=[self.names.group, consumer, *ids])
        return [_text(i) for i in mine]

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


class AsyncRedisQueue:
    """A queue in a Redis stream, over an asyncio client; see :class:`RedisQueue`."""

    durable = True

    def __init__(self, client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster,
                 names: QueueNames) -> None:
        self.client = client
        self.names = names
        self._cursor = "0-0"
        self._push = client.register_script(_scripts.WB_PUSH)
        self._take = client.register_script(_scripts.WB_TAKE)
        self._renew = client.register_script(_scripts.WB_RENEW)
        self._ack = client.register_script(_scripts.WB_ACK)
        self._bury = client.register_script(_scripts.WB_BURY)
        self._replay = client.register_script(_scripts.WB_REPLAY)
        self._release = client.register_script(_scripts.WB_RELEASE)

    async def push(self, item: Push) -> int:
        """See :meth:`RedisQueue.push`."""
        keys, args = push_args(item, self.names.stream)
        return int(await self._push(keys=keys, args=args))

    async def take(self, consumer: str, count: int, claim_after_ms: int) -> Taken:
        """See :meth:`RedisQueue.take`."""
        n = self.names
        reply = await self._take(keys=[n.stream],
                                 args=[n.group, consumer, count, claim_after_ms, self._cursor])
        messages, length, self._cursor = parse_take(reply)
        return messages, length

    async def renew(self, consumer: str, ids: Sequence[str]) -> list[str]:
        """See :meth:`RedisQueue.renew`."""
        mine = await self._renew(keys=[self.names.stream],
                                 args=[self.names.group, consumer, *ids])
        return [_text(i) for i in mine]

    async def ack(self, ids: Sequence[str], restores: Sequence[Restore]) -> int:
        """See :meth:`RedisQueue.ack`."""
        keys, args = ack_args(self.names.group, ids, restores)
        return int(await self._ack(keys=[self.names.stream, *keys], args=args))

    async def bury(self, ids: Sequence[str], error: str) -> int:
        """See :meth:`RedisQueue.bury`."""
        n = self.names
        args: list[Any] = [n.group, error, int(time.time() * 1000), *ids]
        return int(await self._bury(keys=[n.stream, n.dead], args=args))

    async def release(self, consumer: str, ids: Sequence[str], claim_after_ms: int) -> None:
        """See :meth:`RedisQueue.release`."""
        n = self.names
        await self._release(keys=[n.stream], args=[n.group, consumer, claim_after_ms + 1, *ids])

    async def dead_letters(self, count: int) -> list[DeadLetter]:
        """See :meth:`RedisQueue.dead_letters`."""
        entries: Any = await self.client.xrange(self.names.dead, count=count)
        return parse_dead(entries)

    async def replay(self, count: int) -> int:
        """See :meth:`RedisQueue.replay`."""
        return int(await self._replay(keys=[self.names.dead, self.names.stream], args=[count]))


class ClusterQueue(RedisQueue):
    """A queue in a Redis stream on a Redis Cluster: the call and the ack span several slots
    (module docstring); every other operation is :class:`RedisQueue`'s, on the stream's slot."""

    def __init__(self, backend: ClusterBackend, names: QueueNames) -> None:
        super().__init__(backend.client, names)
        self.backend = backend
        self._cluster: Any = backend.client  # redis-py's cluster pipeline is loosely typed
        self._add = backend.client.register_script(_scripts.WB_ADD)
        self._restore = backend.client.register_script(_scripts.WB_RESTORE)

    def push(self, item: Push) -> int:
        """WB_ADD on the stream's slot, then the entry through the backend's write path;
        NotStored when only the first step succeeded."""
        length = int(self._add(keys=[self.names.stream], args=add_args(item)))
        try:
            if item.write is None:
                self.backend.invalidate([item.key], item.tombstone, item.tomb_px)
            else:
                self.backend.write(item.key, item.write)
        except BACKEND_ERRORS as exc:
            if item.write is not None:  # the old entry must not outlive the queued record
                with contextlib.suppress(*BACKEND_ERRORS):
                    self.backend.invalidate([item.key], item.tombstone or new_tombstone(),
                                            item.tomb_px or item.write.px)
            raise NotStored(length) from exc
        return length

    def ack(self, ids: Sequence[str], restores: Sequence[Restore]) -> int:
        """WB_RESTORE per entry slot (one pipeline), then WB_ACK on the stream."""
        try:
            self._restore_all(restore_calls(restores))
        except BACKEND_ERRORS as exc:
            _restore_failed(exc)
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
            if isinstance(reply, NoScriptError):  # a node lost its scripts: load them, redo
                self._restore(keys=keys, args=args)
            elif isinstance(reply, Exception):
                raise reply


class AsyncClusterQueue(AsyncRedisQueue):
    """The asyncio twin of :class:`ClusterQueue`."""

    def __init__(self, backend: AsyncClusterBackend, names: QueueNames) -> None:
        super().__init__(backend.client, names)
        self.backend = backend
        self._cluster: Any = backend.client
        self._add = backend.client.register_script(_scripts.WB_ADD)
        self._restore = backend.client.register_script(_scripts.WB_RESTORE)

    async def push(self, item: Push) -> int:
        """See :meth:`ClusterQueue.push`."""
        length = int(await self._add(keys=[self.names.stream], args=add_args(item)))
        try:
            if item.write is None:
                await self.backend.invalidate([item.key], item.tombstone, item.tomb_px)
            else:
                await self.backend.write(item.key, item.write)
        except BACKEND_ERRORS as exc:
            if item.write is not None:
                with contextlib.suppress(*BACKEND_ERRORS):
                    await self.backend.invalidate([item.key], item.tombstone or new_tombstone(),
                                                  item.tomb_px or item.write.px)
            raise NotStored(length) from exc
        return length

    async def ack(self, ids: Sequence[str], restores: Sequence[Restore]) -> int:
        """See :meth:`ClusterQueue.ack`."""
        try:
            await self._restore_all(restore_calls(restores))
        except BACKEND_ERRORS as exc:
            _restore_failed(exc)
        return await super().ack(ids, ())

    async def _restore_all(self, calls: list[SlotCall]) -> None:
        if len(calls) <= 1:
            for keys, args in calls:
                await self._restore(keys=keys, args=args)
            return
        async with self._cluster.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.execute_command("EVALSHA", self._restore.sha, len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
        for (keys, args), reply in zip(calls, replies, strict=True):
            if isinstance(reply, NoScriptError):
                await self._restore(keys=keys, args=args)
            elif isinstance(reply, Exception):
                raise reply


def open_queue(backend: object, names: QueueNames) -> Queue:
    """The synchronous queue that lives beside a cache backend."""
    from cachedeco.backends.queues_memory import memory_queue

    if isinstance(backend, MemoryBackend):
        return memory_queue(backend, names)
    if isinstance(backend, RedisBackend):  # a single server, or Sentinel's primary
        return RedisQueue(backend.client, names)
    if isinstance(backend, ClusterBackend):
        return ClusterQueue(backend, names)
    raise ConfigurationError(f"the {type(backend).__name__} backend offers no write-behind "
                             "queue (memory://, Redis, Sentinel and Redis Cluster do)")


def open_async_queue(backend: object, names: QueueNames) -> AsyncQueue:
    """The asyncio queue that lives beside a cache backend."""
    from cachedeco.backends.queues_memory import AsyncMemoryQueue, memory_queue

    if isinstance(backend, AsyncMemoryBackend):
        return AsyncMemoryQueue(memory_queue(backend.sync, names))
    if isinstance(backend, AsyncRedisBackend):
        return AsyncRedisQueue(backend.client, names)
    if isinstance(backend, AsyncClusterBackend):
        return AsyncClusterQueue(backend, names)
    raise ConfigurationError(f"the {type(backend).__name__} backend offers no write-behind "
                             "queue (memory://, Redis, Sentinel and Redis Cluster do)")
