# GENERATED from _async/backend.py by tools/unasync.py: do not edit.
"""The near cache as a backend wrapping a backend, sync flavour (``_sync/backend.py`` is
generated from this file).

Reads go to the wrapped backend (the flows serve near hits from the store before reading, and
install what a read returned); every change made through this backend drops the values it
makes old from this process's store before the call returns, without waiting for Redis to
say so, so the process that made a change never serves the old value afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

from cachedeco.backends.base import Backend, ReadResult
from cachedeco.backends.contracts.leases import Leases
from cachedeco.backends.contracts.queues import (
    Queue,
    DeadLetter,
    Push,
    Restore,
    Taken,
)
from cachedeco.backends.contracts.tally import Tally
from cachedeco.backends.near.store import NearStore
from cachedeco.backends.near.tracker import Tracker
from cachedeco.core.entry import Entry, Write
from cachedeco.core.keyspace import QueueNames

__all__ = ["NearBackend", "NearQueue"]


class NearBackend:
    """``inner`` with a near cache in front: ``store``, kept coherent by ``tracker``."""

    def __init__(self, inner: Backend, store: NearStore, tracker: Tracker) -> None:
        self.inner = inner
        self.store = store
        self.tracker = tracker
        self.stores_objects = inner.stores_objects

    def read(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        """Read ``inner`` (and have the change stream running: reads are what it serves)."""
        self.tracker.ensure()
        return self.inner.read(key, tag_keys)

    def read_many(self, reads: Sequence[tuple[str, Sequence[str]]]) -> list[ReadResult]:
        """Read ``inner``."""
        self.tracker.ensure()
        return self.inner.read_many(reads)

    def write(self, key: str, write: Write) -> bool:
        """Store in ``inner``; the value kept near for ``key`` is dropped."""
        try:
            return self.inner.write(key, write)
        finally:
            self.store.changed([key])

    def invalidate(self, keys: Sequence[str], marker: str, px: int) -> int:
        """Invalidate in ``inner``; the values kept near for ``keys`` are dropped."""
        try:
            return self.inner.invalidate(keys, marker, px)
        finally:
            self.store.changed(keys)

    def invalidate_tags(self, tag_keys: Sequence[str], token: str, px: int) -> None:
        """Invalidate the tags in ``inner``; every value kept near with one is dropped."""
        try:
            self.inner.invalidate_tags(tag_keys, token, px)
        finally:
            self.store.changed(tag_keys)

    def delete_matching(self, pattern: str, spare: str | None = None) -> int:
        """Delete in ``inner``; everything kept near is dropped (which keys matched is not
        known here)."""
        try:
            return self.inner.delete_matching(pattern, spare)
        finally:
            self.store.flushed()

    def invalidate_tags_matching(self, pattern: str, token: str, px: int) -> int:
        """Invalidate in ``inner``; everything kept near is dropped (which tags matched is
        not known here)."""
        try:
            return self.inner.invalidate_tags_matching(pattern, token, px)
        finally:
            self.store.flushed()

    def raw(self, key: str) -> bytes | Entry | None:
        """What ``inner`` holds at ``key``."""
        return self.inner.raw(key)

    def leases(self) -> Leases:
        """``inner``'s leases."""
        return self.inner.leases()

    def queue(self, names: QueueNames) -> Queue:
        """``inner``'s write-behind queue called ``names``, dropping what a push replaces."""
        return NearQueue(self.inner.queue(names), self.store)

    def tally(self, key: str) -> Tally:
        """``inner``'s table of counts at ``key``."""
        return self.inner.tally(key)

    def beat(self, key: str) -> dict[str, int] | None:
        """``inner``'s counter at ``key``, one more."""
        return self.inner.beat(key)

    def close(self) -> None:
        """Close ``inner`` (the tracker belongs to the backend slot, which closes it)."""
        self.inner.close()


class NearQueue:
    """A write-behind queue whose pushes (each stores its record's entry) and acks (each
    settles the entries flushed) drop the values kept near for those entries before they
    return."""

    def __init__(self, inner: Queue, store: NearStore) -> None:
        self.inner = inner
        self.store = store
        self.durable = inner.durable

    def push(self, item: Push, replicas: int = 0, timeout_ms: int = 0) -> int:
        """Push to ``inner``; the value kept near for the record's entry is dropped."""
        try:
            return self.inner.push(item, replicas, timeout_ms)
        finally:
            self.store.changed([item.key])

    def take(self, consumer: str, count: int, claim_after_ms: int) -> Taken:
        """See ``inner``."""
        return self.inner.take(consumer, count, claim_after_ms)

    def renew(self, consumer: str, ids: Sequence[str]) -> list[str]:
        """See ``inner``."""
        return self.inner.renew(consumer, ids)

    def ack(self, ids: Sequence[str], restores: Sequence[Restore]) -> int:
        """Ack in ``inner``; the values kept near for the entries it settles are dropped
        (each gets a new marker or a tombstone)."""
        try:
            return self.inner.ack(ids, restores)
        finally:
            self.store.changed([r.key for r in restores])

    def bury(self, ids: Sequence[str], error: str) -> int:
        """See ``inner``."""
        return self.inner.bury(ids, error)

    def release(self, consumer: str, ids: Sequence[str], claim_after_ms: int) -> None:
        """See ``inner``."""
        self.inner.release(consumer, ids, claim_after_ms)

    def dead_letters(self, count: int) -> list[DeadLetter]:
        """See ``inner``."""
        return self.inner.dead_letters(count)

    def replay(self, count: int) -> int:
        """See ``inner``."""
        return self.inner.replay(count)
