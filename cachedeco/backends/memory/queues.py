"""The in-process write-behind queue of ``memory://``: the records live beside the memory
backend's entries, in this process only (not durable), so ``close()`` drains it and a warning
is logged if the interpreter exits with records still in it.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

from cachedeco.backends.base import Backend
from cachedeco.backends.contracts.queues import (
    DeadLetter,
    Message,
    Push,
    QueueNames,
    Restore,
    Taken,
    order,
)
from cachedeco.core.entry import NO_VALUE, Write
from cachedeco.core.forking import redo_after_fork
from cachedeco.core.logs import say

__all__ = ["MemoryQueue"]

_holding: set[MemoryQueue] = set()  # queues with records: kept alive until they are delivered
_exit_hook: list[bool] = []  # the exit warning is registered once, with the first held record
_SETTLE_TRIES = 8  # compare-and-set attempts to settle an entry that other writes keep changing


def _tombstone(r: Restore, expect: str) -> Write:
    """The ack's tombstone in place of what ``expect`` names ("" nothing)."""
    return Write(marker=r.tomb, value=NO_VALUE, soft=0.0, delta=0.0, px=r.px, expect=expect)


class MemoryQueue:
    """An in-process queue beside a :class:`MemoryBackend`: not durable, thread-safe."""

    durable = False

    def __init__(self, backend: Backend, names: QueueNames) -> None:
        self._backend = backend
        self.names = names
        self._lock = threading.Lock()
        self._ready: deque[Message] = deque()
        self._taken: dict[str, Message] = {}
        self._dead: list[DeadLetter] = []
        self._ids = itertools.count(1)
        redo_after_fork(self)

    def after_fork(self) -> None:
        """Empty in a forked child: the records queued so far are the parent's to deliver
        (a copy in every child would be delivered once by each)."""
        self._ready, self._taken, self._dead = deque(), {}, []

    @property
    def pending(self) -> int:
        """Records queued or being delivered."""
        return len(self._ready) + len(self._taken)

    @property
    def dead(self) -> int:
        """Dead letters held."""
        return len(self._dead)

    def _count(self) -> int:
        """The pending count; a queue holding records stays reachable (for the exit warning)."""
        pending = self.pending
        if pending or self._dead:
            if not _exit_hook:
                atexit.register(_warn_pending_at_exit)
                _exit_hook.append(True)
            _holding.add(self)
        else:
            _holding.discard(self)
        return pending

    def push(self, item: Push, replicas: int = 0, timeout_ms: int = 0) -> int:
        """Store the entry and append the record under one lock (so both keep call order);
        ``replicas`` has no meaning here (write-behind refuses it on memory://)."""
        backend = self._backend
        with self._lock:
            if item.write is None:
                backend.invalidate([item.key], item.tombstone, item.tomb_px)
            else:
                backend.write(item.key, item.write)
            marker = "" if item.write is None else item.write.marker
            self._ready.append(Message(f"{next(self._ids)}-0", item.record, item.key, marker,
                                       tag_keys=item.tag_keys))
            return self._count()

    def take(self, consumer: str, count: int, claim_after_ms: int) -> Taken:
        """The oldest ``count`` records."""
        with self._lock:
            batch = [self._ready.popleft() for _ in range(min(count, len(self._ready)))]
            self._taken.update((m.id, m) for m in batch)
            return batch, self._count()

    def renew(self, consumer: str, ids: Sequence[str]) -> list[str]:
        """The ids still being delivered (one process: nobody else takes them)."""
        with self._lock:
            return [i for i in ids if i in self._taken]

    def ack(self, ids: Sequence[str], restores: Sequence[Restore]) -> int:
        """Forget delivered records; restore entries by a compare-and-set on their marker."""
        with self._lock:
            for i in ids:
                self._taken.pop(i, None)
            length = self._count()
        for restore in restores:
            self._restore(restore)
        return length

    def _restore(self, r: Restore) -> None:
        """Settle one flushed entry as the Redis queue's script does (see ``Restore``), by
        compare-and-set writes: one that another write beats reads again."""
        backend = self._backend
        for _ in range(_SETTLE_TRIES):
            entry, tokens = backend.read(r.key, r.tag_keys)
            if entry is not None and r.marker and entry.marker == r.marker:
                if entry.tags == tokens:  # valid: its normal expiry, under a new marker
                    write = Write(marker=r.fresh, value=entry.value, soft=r.soft, delta=0.0,
                                  px=r.px, tag_keys=r.tag_keys, expect=r.marker,
                                  expect_tags=tokens)
                else:  # its tags were invalidated: rewritten, it would pass for current
                    write = _tombstone(r, r.marker)
            elif entry is not None and entry.is_held and entry.marker not in r.older:
                return  # a newer record's entry
            else:
                write = _tombstone(r, "" if entry is None else entry.marker)
            if backend.write(r.key, write):
                return

    def bury(self, ids: Sequence[str], error: str) -> int:
        """Move records to the in-process dead letters."""
        now = time.time()
        with self._lock:
            for i in ids:
                m = self._taken.pop(i, None)
                if m is not None:
                    self._dead.append(DeadLetter(m.id, m.record, m.key, error, now,
                                                 marker=m.marker, tag_keys=m.tag_keys))
            return self._count()

    def release(self, consumer: str, ids: Sequence[str], claim_after_ms: int) -> None:
        """Put records back at the head of the queue, in their order."""
        with self._lock:
            back = [self._taken.pop(i) for i in ids if i in self._taken]
            self._ready.extendleft(sorted(back, key=lambda m: order(m.id), reverse=True))

    def dead_letters(self, count: int) -> list[DeadLetter]:
        """The oldest ``count`` dead letters."""
        with self._lock:
            return self._dead[:count]

    def replay(self, count: int) -> int:
        """Queue up to ``count`` dead letters again."""
        with self._lock:
            moved, self._dead = self._dead[:count], self._dead[count:]
            for d in moved:
                self._ready.append(Message(f"{next(self._ids)}-0", d.record, d.key, d.marker,
                                           tag_keys=d.tag_keys))
            self._count()
            return len(moved)


def _warn_pending_at_exit() -> None:
    """Log the records an exiting interpreter leaves in memory queues (they are lost)."""
    for queue in list(_holding):
        if queue.pending:
            say(None, logging.WARNING, "the interpreter exits with %d write-behind record(s) "
                "of %s queued in memory: they are lost; close the registry (reg.close(), "
                "`with reg:`) to flush them first", queue.pending, queue.names.stream)
        if queue.dead:
            say(None, logging.WARNING, "the interpreter exits with %d write-behind dead "
                "letter(s) of %s in memory: they are lost", queue.dead, queue.names.stream)


