"""Applying what auto-recovery keeps: its worker's attempts, backend by backend, and what
happens to the changes that landed (a base of :class:`.recovery.Recovery`, which keeps them:
each file holds one idea)."""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Final, Protocol

from cachedeco.backends.base import BACKEND_ERRORS
from cachedeco.backends.open import BackendSlot
from cachedeco.core.logs import say
from cachedeco.core.stats import Stats
from cachedeco.errors import CacheError
from cachedeco.runtime.changes import RECORD, Change, Outage, aapply, apply, next_run
from cachedeco.runtime.guard import Breaker
from cachedeco.runtime.held import Held
from cachedeco.runtime.recent import RecentChanges
from cachedeco.runtime.spool import Spool
from cachedeco.runtime.spooling import forget

__all__ = ["RUN", "Attempts", "Host"]

RUN: Final = 500  # the most drops and tags, or records, sent in one round trip


class Host(Protocol):
    """What recovery needs of its registry."""
    prefix: str
    tag_ttl: float

    def slot(self, name: str) -> BackendSlot: ...
    def breaker(self, name: str) -> Breaker: ...
    def backend_names(self) -> list[str]: ...
    def wake(self, function: str) -> None: ...


class Attempts:
    """The attempts of a :class:`.recovery.Recovery`, over the state it keeps."""

    stats: Stats
    spool: Spool | None
    recent: RecentChanges
    _host: Callable[[], Host | None]
    _queues: dict[str, collections.OrderedDict[str, Change]]
    _held: Held
    _outages: dict[str, Outage]
    _lock: threading.Lock
    _attempting: threading.Lock

    def replay(self, backend: str, since: float | None = None) -> None:
        """Apply again what reached ``backend`` lately (the recovery's)."""
        raise NotImplementedError

    def _count(self) -> None:
        """Count what waits (the recovery's)."""
        raise NotImplementedError

    def _runs(self, host: Host, sync: bool) -> Iterator[tuple[str, BackendSlot]]:
        """The backends with changes waiting that this flavour of worker serves."""
        for name in list(self._queues):
            try:
                slot = host.slot(name)
            except CacheError:  # the backend is gone after configure(): nothing to reach
                self._forget(name, host.prefix)
                continue
            if ("sync" in slot.flavours) == sync:
                yield name, slot

    def attempt(self, urgent: bool = False) -> int:
        """Apply what waits, backend by backend, until one fails; return how many changes
        wait, an outage whose end is not said yet counting one (``urgent``: drops and tag
        invalidations only, :meth:`hurry`)."""
        host = self._host()
        if host is None:
            return 0
        with contextlib.nullcontext() if urgent else self._attempting:
            for name, slot in self._runs(host, sync=True):
                backend = slot.backend()
                while run := self._head(name, urgent):
                    moves = slot.moves
                    try:
                        apply(backend, run)
                    except BACKEND_ERRORS:
                        break
                    self._landed(host, name, run, slot, moves)
                self._ended(host, name)
        return sum(len(q) or 1 for q in list(self._queues.values()))

    async def aattempt(self, urgent: bool = False) -> int:
        """The asyncio form of :meth:`attempt`, for backends given an asyncio client only."""
        host = self._host()
        if host is None:
            return 0
        mine = list(self._runs(host, sync=False))
        for name, slot in mine:
            backend = slot.abackend()
            while run := self._head(name, urgent):
                moves = slot.moves
                try:
                    await aapply(backend, run)
                except BACKEND_ERRORS:
                    break
                self._landed(host, name, run, slot, moves)
            self._ended(host, name)
        return sum(len(q) or 1 for name, _ in mine  # empty: its outage's end is not said yet
                   if (q := self._queues.get(name)) is not None)

    def _head(self, name: str, urgent: bool = False) -> list[Change]:
        """What goes out next to a backend (:func:`~cachedeco.runtime.changes.next_run`):
        drops and tag invalidations first, then records (not when ``urgent``), many at once."""
        with self._lock:
            queue = self._queues.get(name)
            run = next_run(queue.values(), RUN) if queue else []
        return [] if urgent and run and run[0].kind == RECORD else run

    def _landed(self, host: Host, name: str, run: list[Change], slot: BackendSlot,
                moves: int) -> None:
        """Forget changes that landed (unless a newer one replaced them meanwhile). If the
        primary moved while they were sent (``moves``: the slot's count before), they may
        have reached the old one (restarted empty, say, before its REPLICAOF): noted first,
        then looked at, so that either the move's replay takes them or this one does."""
        with self._lock:
            queue = self._queues.get(name) or collections.OrderedDict()
            done = [c for c in run if queue.get(c.ident) is c]
            for change in done:
                del queue[change.ident]
                self._held.let_go(change)
            self._count()
            outage = self._outages.get(name)
            if outage is not None:
                outage.landed.update(c.kind for c in done)
        self.stats.recoveries_done += len(done)
        for change in done:  # landed now: a failover right after may lose them again
            if change.kind != RECORD:
                self.recent.note(name, change.kind, (change.target,), change.px,
                                 change.release)
        forget(run, self.spool)
        if slot.moves != moves:
            self.replay(name)
        host.breaker(name).success()
        for function in {c.function for c in run if c.kind == RECORD}:
            host.wake(function)

    def _ended(self, host: Host, name: str) -> None:
        """An empty queue: its outage ends once Outage.over (the queue stays till then)."""
        with self._lock:
            outage = self._outages.get(name)
            if self._queues.get(name) or (outage and not outage.over(host.breaker(name))):
                return
            self._queues.pop(name, None)
            self._outages.pop(name, None)
        if outage is not None:
            outage.end(host.prefix, name)

    def _forget(self, name: str, prefix: str) -> None:
        with self._lock:
            queue = self._queues.pop(name, None) or collections.OrderedDict()
            for change in queue.values():
                self._held.let_go(change)
            self._outages.pop(name, None)
            self._count()
        if queue:
            say(prefix, logging.ERROR, "%d change(s) for backend %r are dropped: the registry "
                "no longer has that backend", len(queue), name)
