"""The near cache as a backend wrapping a backend, asyncio flavour (``_sync/backend.py`` is
generated from this file).

Reads go to the wrapped backend (the flows serve near hits from the store before reading, and
install what a read returned); every change made through this backend drops the values it
makes old from this process's store before the call returns, without waiting for Redis to
say so, so the process that made a change never serves the old value afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

from cachedeco.backends.base import AsyncBackend, ReadResult
from cachedeco.backends.contracts.leases import AsyncLeases
from cachedeco.backends.contracts.queues import (
    AsyncQueue,
    DeadLetter,
    Push,
    Restore,
    Taken,
)
from cachedeco.backends.contracts.tally import AsyncTally
from cachedeco.backends.near.store import NearStore
from cachedeco.backends.near.tracker import Tracker
from cachedeco.core.entry import Entry, Write
from cachedeco.core.keyspace import QueueNames

__all__ = ["AsyncNearBackend", "AsyncNearQueue"]


class AsyncNearBackend:
    """``inner`` with a near cache in front: ``store``, kept coherent by ``tracker``."""

    def __init__(self, inner: AsyncBackend, store: NearStore, tracker: Tracker) -> None:
        self.inner = inner
        self.store = store
        self.tracker = tracker
        self.stores_objects = inner.stores_objects

    async def read(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        """Read ``inner`` (and have the change stream running: reads are what it serves)."""
        self.tracker.ensure()
        return await self.inner.read(key, tag_keys)

    async def read_many(self, reads: Sequence[tuple[str, Sequence[str]]]) -> list[ReadResult]:
        """Read ``inner``."""
        self.tracker.ensure()
        return await self.inner.read_many(reads)

    async def write(self, key: str, write: Write) -> bool:
        """Store in ``inner``; the value kept near for ``key`` is dropped."""
        try:
            return await self.inner.write(key, write)
        finally:
            self.store.changed([key])

    async def invalidate(self, keys: Sequence[str], marker: str, px: int) -> int:
        """Invalidate in ``inner``; the values kept near for ``keys`` are dropped."""
        try:
            return await self.inner.invalidate(keys, marker, px)
        finally:
            self.store.changed(keys)

    async def invalidate_tags(self, tag_keys: Sequence[str], token: str, px: int) -> None:
        """Invalidate the tags in ``inner``; every value kept near with one is dropped."""
        try:
            await self.inner.invalidate_tags(tag_keys, token, px)
        finally:
            self.store.changed(tag_keys)

    async def delete_matching(self, pattern: str, spare: str | None = None) -> int:
        """Delete in ``inner``; everything kept near is dropped (which keys matched is not
        known here)."""
        try:
            return await self.inner.delete_matching(pattern, spare)
        finally:
            self.store.flushed()

    async def invalidate_tags_matching(self, pattern: str, token: str, px: int) -> int:
        """Invalidate in ``inner``; everything kept near is dropped (which tags matched is
        not known here)."""
        try:
            return await self.inner.invalidate_tags_matching(pattern, token, px)
        finally:
            self.store.flushed()

    async def raw(self, key: str) -> bytes | Entry | None:
        """What ``inner`` holds at ``key``."""
        return await self.inner.raw(key)

    def leases(self) -> AsyncLeases:
        """``inner``'s leases."""
        return self.inner.leases()

    def queue(self, names: QueueNames) -> AsyncQueue:
        """``inner``'s write-behind queue called ``names``, dropping what a push replaces."""
        return AsyncNearQueue(self.inner.queue(names), self.store)

    def tally(self, key: str) -> AsyncTally:
        """``inner``'s table of counts at ``key``."""
        return self.inner.tally(key)

    async def beat(self, key: str) -> dict[str, int] | None:
        """``inner``'s counter at ``key``, one more."""
        return await self.inner.beat(key)

    async def close(self) -> None:
        """Close ``inner`` (the tracker belongs to the backend slot, which closes it)."""
        await self.inner.close()


class AsyncNearQueue:
    """A write-behind queue whose pushes (each stores its record's entry) and acks (each
    settles the entries flushed) drop the values kept near for those entries before they
    return."""

    def __init__(self, inner: AsyncQueue, store: NearStore) -> None:
        self.inner = inner
        self.store = store
        self.durable = inner.durable

    async def push(self, item: Push, replicas: int = 0, timeout_ms: int = 0) -> int:
        """Push to ``inner``; the value kept near for the record's entry is dropped."""
        try:
            return await self.inner.push(item, replicas, timeout_ms)
        finally:
            self.store.changed([item.key])

    async def take(self, consumer: str, count: int, claim_after_ms: int) -> Taken:
        """See ``inner``."""
        return await self.inner.take(consumer, count, claim_after_ms)

    async def renew(self, consumer: str, ids: Sequence[str]) -> list[str]:
        """See ``inner``."""
        return await self.inner.renew(consumer, ids)

    async def ack(self, ids: Sequence[str], restores: Sequence[Restore]) -> int:
        """Ack in ``inner``; the values kept near for the entries it settles are dropped
        (each gets a new marker or a tombstone)."""
        try:
            return await self.inner.ack(ids, restores)
        finally:
            self.store.changed([r.key for r in restores])

    async def bury(self, ids: Sequence[str], error: str) -> int:
        """See ``inner``."""
        return await self.inner.bury(ids, error)

    async def release(self, consumer: str, ids: Sequence[str], claim_after_ms: int) -> None:
        """See ``inner``."""
        await self.inner.release(consumer, ids, claim_after_ms)

    async def dead_letters(self, count: int) -> list[DeadLetter]:
        """See ``inner``."""
        return await self.inner.dead_letters(count)

    async def replay(self, count: int) -> int:
        """See ``inner``."""
        return await self.inner.replay(count)
