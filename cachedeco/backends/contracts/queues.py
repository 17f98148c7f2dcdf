"""The write-behind queue contract a backend offers beside the cache core (``backend.queue``).

A record is pushed together with its cache entry, taken by a consumer, and then acknowledged
(after ``flush`` returned), buried in the dead letters (after its retries), or released (an
interrupted delivery). A taken record stays *pending* for its consumer until one of those.
The homes: a Redis stream (durable, :mod:`cachedeco.backends.redis._async.queues`) and an
in-process queue beside ``memory://`` (:mod:`cachedeco.backends.memory.queues`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cachedeco.core.entry import Write
from cachedeco.core.keyspace import QueueNames

__all__ = [
    "AsyncQueue",
    "DeadLetter",
    "Message",
    "NotReplicated",
    "NotSettled",
    "NotStored",
    "Push",
    "Queue",
    "QueueNames",
    "Restore",
    "Taken",
    "order",
]

Taken = tuple[list["Message"], int]  # the records taken and the queue's length


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


class NotSettled(Exception):
    """The records were acknowledged but some flushed entries could not be settled (Redis
    Cluster: a node holding them did not answer): ``keys`` are to be dropped later.

    ``length`` is the queue's length after the ack; the backend's error is the cause.
    """

    def __init__(self, length: int, keys: tuple[str, ...]) -> None:
        super().__init__(f"{len(keys)} flushed write-behind entries could not be settled")
        self.length = length
        self.keys = keys


class NotReplicated(Exception):
    """The record was queued on the primary (it will be flushed) but fewer replicas than
    asked acknowledged it in time: ``acked`` of ``wanted``; ``length`` as for NotStored."""

    def __init__(self, length: int, acked: int, wanted: int) -> None:
        super().__init__(f"{acked} of {wanted} replica(s) acknowledged the record in time")
        self.length = length
        self.acked = acked
        self.wanted = wanted


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
    """After a flush, settle the entry at ``key``: while it holds ``marker`` (the flushed
    record's; "" for a record whose value is not cached) it gets the soft expiry ``soft`` and
    the TTL ``px`` under the marker ``fresh`` (or, its tags invalidated meanwhile, the
    tombstone: a miss either way); while it is held by another record, one not in
    ``older`` (the key's records this flush superseded), it is left alone (that record is
    newer); else it is replaced by the tombstone ``tomb`` for ``px``: a fill, a refresh or an
    invalidation replaced the held entry meanwhile, and what it left predates the flush."""

    key: str
    marker: str
    soft: float
    px: int
    fresh: str
    tomb: str
    older: tuple[str, ...] = ()
    tag_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that used up its retries: what it was, for which entry, and why it failed.

    Attributes:
        id: Its id in the dead-letter queue.
        record: The record the `@write_behind` function returned.
        key: The key of the entry it was stored as.
        error: Why the last flush failed (its type only for a sensitive function).
        failed_at: When it was buried, in epoch seconds.
        function: The `@write_behind` function (`module.qualname`).
        marker: The stored entry's marker (internal).
        tag_keys: The entry's tag keys (internal).
    """

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

    def push(self, item: Push, replicas: int = 0, timeout_ms: int = 0) -> int:
        """Store the entry and append the record, atomically; return the queue's length.
        With ``replicas``, wait up to ``timeout_ms`` for that many replicas to acknowledge
        them (``WAIT``), else NotReplicated."""
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

    async def push(self, item: Push, replicas: int = 0, timeout_ms: int = 0) -> int:
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
