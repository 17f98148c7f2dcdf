"""The asyncio faces of the memory backend and its queue: no I/O, so each call runs inline.

Each method of a face is the sync method wrapped by :func:`inline`, so the two flavours
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from cachedeco.backends.memory.leases import AsyncMemoryLeases
from cachedeco.backends.memory.queues import MemoryQueue
from cachedeco.backends.memory.store import MemoryBackend
from cachedeco.backends.memory.tally import MemoryTally
from cachedeco.core.keyspace import QueueNames

__all__ = ["AsyncMemoryBackend", "AsyncMemoryQueue", "AsyncMemoryTally", "inline"]

S = TypeVar("S")
P = ParamSpec("P")
R = TypeVar("R")


def inline(method: Callable[Concatenate[S, P], R]
           ) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]:
    """An ``async def`` method that runs ``method`` on the face's ``sync`` object."""

    async def face(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(self.sync, *args, **kwargs)

    face.__name__ = method.__name__
    face.__doc__ = f"The asyncio face of :meth:`{method.__qualname__}`."
    return face


class AsyncMemoryQueue:
    """The asyncio face of a :class:`MemoryQueue`."""

    durable = False

    def __init__(self, sync: MemoryQueue) -> None:
        self.sync = sync

    push = inline(MemoryQueue.push)
    take = inline(MemoryQueue.take)
    renew = inline(MemoryQueue.renew)
    ack = inline(MemoryQueue.ack)
    bury = inline(MemoryQueue.bury)
    release = inline(MemoryQueue.release)
    dead_letters = inline(MemoryQueue.dead_letters)
    replay = inline(MemoryQueue.replay)


class AsyncMemoryTally:
    """The asyncio face of a :class:`MemoryTally`."""

    def __init__(self, sync: MemoryTally) -> None:
        self.sync = sync

    add = inline(MemoryTally.add)
    read = inline(MemoryTally.read)


class AsyncMemoryBackend:
    """The asyncio face of a :class:`MemoryBackend` (one store shared by both flavours)."""

    stores_objects = True

    def __init__(self, sync: MemoryBackend) -> None:
        self.sync = sync
        self._leases = AsyncMemoryLeases(sync.leases())

    read = inline(MemoryBackend.read)
    read_many = inline(MemoryBackend.read_many)
    write = inline(MemoryBackend.write)
    invalidate = inline(MemoryBackend.invalidate)
    invalidate_tags = inline(MemoryBackend.invalidate_tags)
    delete_matching = inline(MemoryBackend.delete_matching)
    invalidate_tags_matching = inline(MemoryBackend.invalidate_tags_matching)
    raw = inline(MemoryBackend.raw)
    close = inline(MemoryBackend.close)

    def leases(self) -> AsyncMemoryLeases:
        """The in-process leases, waited on without blocking the event loop."""
        return self._leases

    def queue(self, names: QueueNames) -> AsyncMemoryQueue:
        """The asyncio face of the in-process queue called ``names``."""
        return AsyncMemoryQueue(self.sync.queue(names))

    def tally(self, key: str) -> AsyncMemoryTally:
        """The asyncio face of the in-process table of counts at ``key``."""
        return AsyncMemoryTally(self.sync.tally(key))

    async def beat(self, key: str) -> None:
        """See :meth:`MemoryBackend.beat`."""
        return None
