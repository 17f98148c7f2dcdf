"""Auto-recovery: changes that could not reach their backend are kept, one per key or tag
(the latest), in memory and (``spool=``) in the spool file, and retried in the background.

A worker (:mod:`.retrying`: a daemon thread; a task on the caller's loop for an
asyncio-client backend) applies them, drops and tag invalidations ahead of the write-behind
records of other keys (:func:`~cachedeco.runtime.changes.next_run`), probing every ``RETRY``
seconds without waiting out the breaker (each try after a probe: :mod:`.reach`). This
process never serves an entry with a pending change from the backend (:meth:`Recovery.blocks`)
nor from its near cache. When an outage begins, the changes that landed in the second before
it are kept too (a failover may have lost them: :mod:`.recent`). An outage is logged when it
starts and ends, never per call, a flapping link at most once per ``LOG_INTERVAL``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import threading
from collections.abc import Callable, Sequence

from cachedeco.core.forking import redo_after_fork
from cachedeco.core.keyspace import KeySpace
from cachedeco.core.logs import say
from cachedeco.core.stats import Stats
from cachedeco.runtime.attempts import Attempts, Host
from cachedeco.runtime.bounds import Merge, bound
from cachedeco.runtime.changes import (
    DROP,
    EVERY,
    TAGS,
    Change,
    Outage,
)
from cachedeco.runtime.guard import LogLimit
from cachedeco.runtime.held import Held, unserved
from cachedeco.runtime.reach import Reach
from cachedeco.runtime.recent import RecentChanges
from cachedeco.runtime.retrying import Retrying
from cachedeco.runtime.spool import Spool
from cachedeco.runtime.spooling import (
    akeep_in_spool,
    forget,
    keep_in_spool,
    readable,
    replace_in_spool,
)

__all__ = ["Host", "Recovery"]


def _drops(backend: str, keys: Sequence[str], px: int, family: tuple[str, int] | None
           ) -> list[Change]:
    """The drops of ``keys`` (``family``: their function's tag key and its px, if any)."""
    tag, tag_px = family or ("", 0)
    return [Change(backend, DROP, key, px, family=tag, family_px=tag_px) for key in keys]


class Recovery(Attempts):
    """One registry's pending changes, their worker and their spool."""

    def __init__(self, stats: Stats, host: Callable[[], Host | None]) -> None:
        self.stats = stats
        self.spool: Spool | None = None
        self.active = True  # False: nothing is kept (a one-shot process: the CLI)
        self.pending = 0  # changes waiting + backends a move holds: read by every call
        self._host = host  # a weak reference to the registry
        self._queues: dict[str, collections.OrderedDict[str, Change]] = {}
        self._held = Held()
        #: Whether the entry at ``key`` (with ``tag_keys``) of a backend has a change pending:
        #: this process must not serve it from the backend meanwhile.
        self.blocks = self._held.blocks
        self._outages: dict[str, Outage] = {}
        self._spool_log = LogLimit()
        self.recent = RecentChanges()  # what landed lately: a failover may lose it
        self._outage_log: dict[str, LogLimit] = {}  # per backend: a flapping link is quiet
        self._worker = Retrying(self.attempt, self.aattempt, self.adopt,
                                lambda: self.spool is not None, Reach(host, self._queues.keys))
        self._reset()
        redo_after_fork(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._attempting = threading.Lock()
        self._worker.reset()
        self._adopted = False

    def after_fork(self) -> None:
        """In a child: the parent delivers what it kept; the child starts empty."""
        self._queues.clear()
        self._held.clear()
        self._outages.clear()
        self.recent.clear()
        self.pending = self.stats.recoveries_pending = 0
        self._reset()

    # -- what a call sees --------------------------------------------------------------------

    def drop(self, backend: str, keys: Sequence[str], px: int, exc: BaseException | None,
             family: tuple[str, int] | None = None, *, failed: bool = True) -> None:
        """Keep the drop of entries whose change could not reach ``backend`` (``failed``:
        see :meth:`keep`); ``family``: the tag key every entry of their function carries, and
        its px (see :mod:`.bounds`)."""
        self.keep(_drops(backend, keys, px, family), exc, failed=failed)

    async def adrop(self, backend: str, keys: Sequence[str], px: int,
                    exc: BaseException | None, family: tuple[str, int] | None = None) -> None:
        """The asyncio form of :meth:`drop` (see :meth:`akeep`)."""
        await self.akeep(_drops(backend, keys, px, family), exc)

    def invalidate(self, backend: str, tag_keys: Sequence[str], px: int,
                   exc: BaseException | None, *, failed: bool = True) -> None:
        """Keep the invalidation of tags that could not reach ``backend`` (see :meth:`keep`)."""
        self.keep([Change(backend, TAGS, tag, px) for tag in tag_keys], exc, failed=failed)

    async def ainvalidate(self, backend: str, tag_keys: Sequence[str], px: int,
                          exc: BaseException | None) -> None:
        """The asyncio form of :meth:`invalidate` (see :meth:`akeep`)."""
        await self.akeep([Change(backend, TAGS, tag, px) for tag in tag_keys], exc)

    def replay(self, backend: str, since: float | None = None) -> None:
        """The changes that reached ``backend`` lately (or since ``since``, monotonic) may be
        lost there (an outage began: it may be a failover; its primary moved while the old
        one ran, a Sentinel failover this process saw no outage in; or its counter went back,
        :mod:`.lineage`): they are applied again, and not served meanwhile."""
        self.keep([Change(backend, kind, target, px, release=release)
                   for kind, target, px, release in self.recent.take(backend, since)],
                  None, failed=False)

    def renew_all(self, backend: str) -> None:
        """``backend`` lost changes older than a replay reaches (:mod:`.lineage`): every entry
        under the prefix is invalidated (each function's tag renewed), and none is served
        from it meanwhile."""
        host = self._host()
        if host is None:
            return
        px = int(host.tag_ttl * 1000)
        self.keep([Change(backend, EVERY, KeySpace(host.prefix).fn_tags, px)], None,
                  failed=False)

    def keep(self, changes: Sequence[Change], exc: BaseException | None, *,
             failed: bool = True) -> None:
        """Keep changes to one backend (each replacing the pending one of its key or tag),
        all before the worker is woken (it would end the outage between two of them); each
        spooled first when there is a spool (for a record, a spool that fails is an error the
        caller sees: the record would be lost). ``failed``: they could not reach the backend
        (an outage begins), rather than being applied again."""
        host = self._host()
        if host is None or not self.active or not changes:
            return
        if self.spool is not None:
            keep_in_spool(self.spool, host.prefix, changes, self._spool_log)
        self._queue(host, changes, exc, failed)

    async def akeep(self, changes: Sequence[Change], exc: BaseException | None, *,
                    failed: bool = True) -> None:
        """The asyncio form of :meth:`keep`: the spool's write runs in a thread, the event
        loop going on meanwhile (:func:`~cachedeco.runtime.spooling.akeep_in_spool`)."""
        host, spool = self._host(), self.spool
        if host is None or not self.active or not changes or spool is None:
            self.keep(changes, exc, failed=failed)
            return
        await akeep_in_spool(spool, host.prefix, changes, self._spool_log,
                             functools.partial(self._queue, host, changes, exc, failed))

    def _queue(self, host: Host, changes: Sequence[Change], exc: BaseException | None,
               failed: bool) -> None:
        """Keep ``changes`` in memory (after the spool), then wake the worker."""
        backend = changes[0].backend
        theirs: list[Change] = []  # replaced changes another spool keeps
        merges: list[Merge] = []
        with self._lock:
            queue = self._queues.setdefault(backend, collections.OrderedDict())
            for change in changes:
                # held before what it replaces is let go: Held.blocks (no lock) sees no gap
                old = queue.pop(change.ident, None)
                queue[change.ident] = change
                self._held.hold(change)
                if old is not None:  # after: its key or tag stays held by the new one
                    self._held.let_go(old)
                    if old.spooled not in (None, change.spooled):
                        theirs.append(old)
                if (merge := bound(queue, self._held, change, host.prefix)) is not None:
                    merges.append(merge)
            self._count()
            hushed, began = None, failed and backend not in self._outages
            if (ongoing := self._outages.get(backend)) is not None:
                ongoing.emptied = None  # changes wait again: its end is not near
            if began:
                limit = self._outage_log.setdefault(backend, LogLimit())
                hushed = limit.allow()
                self._outages[backend] = Outage(hushed is not None, host.breaker(backend))
        unserved(host.slot, changes)
        if hushed is not None:
            Outage.began(host.prefix, backend, exc, hushed)
        if theirs:
            forget(theirs, self.spool)
        for merge in merges:
            if self.spool is not None:
                replace_in_spool(self.spool, host.prefix, merge.made, merge.gone,
                                 self._spool_log)
            merge.log(host.prefix, backend)
        if began:  # the outage may be a failover that lost them
            self.replay(backend)
        self._worker.kick("sync" in host.slot(backend).flavours)

    def hold_move(self, backend: str, epoch: int) -> None:
        """``backend``'s Sentinel primary moves (to the watch's ``epoch``), perhaps to one with
        older data: none of its entries is served, from it or the near cache, until a beat on
        the new one was judged (:meth:`end_move`, :mod:`.lineage`)."""
        host = self._host()
        if host is None or not self.active:
            return
        with self._lock:
            self._held.hold_move(backend, epoch)
            self._count()
        if (near := host.slot(backend).near) is not None:
            near.flushed()

    def end_move(self, backend: str, epoch: int) -> None:
        """A beat sent at ``epoch`` was judged: the move it followed holds nothing more."""
        if self._held.moves:
            with self._lock:
                if self._held.end_move(backend, epoch):
                    self._count()

    def _count(self) -> None:
        queued = self.stats.recoveries_pending = sum(map(len, self._queues.values()))
        self.pending = queued + self._held.moves  # what a call looks at: a move holds too

    # -- the worker and its attempts -----------------------------------------------------------

    def ensure(self) -> None:
        """The registry is in use: with a spool, start looking for changes left there (and
        note the caller's loop, if any: see :meth:`.Retrying.note_loop`)."""
        if self.spool is None:
            return
        self._worker.note_loop()
        if self._worker.thread is None and self._host() is not None:
            self._worker.start()

    def hurry(self, backend: str) -> None:
        """``backend`` answers again: its drops go now (:meth:`.Retrying.hurry`)."""
        if self.pending and backend in self._queues and (host := self._host()) is not None:
            self._worker.hurry("sync" in host.slot(backend).flavours)

    # -- the spool -----------------------------------------------------------------------------

    def adopt(self) -> None:
        """Take over the changes other processes left in the spool (gone ones only)."""
        host, spool = self._host(), self.spool
        if host is None or spool is None:
            return
        if self.stats.recoveries_pending:  # rows of ours wait: show that we live (to others)
            spool.heartbeat()
        rows = spool.adopt(host.prefix, host.backend_names())
        first = not self._adopted
        self._adopted = True
        if not rows:
            return
        changes, taken, merges = list(readable(spool, host.prefix, rows)), [], []
        with self._lock:
            for change in changes:
                queue = self._queues.setdefault(change.backend, collections.OrderedDict())
                if change.ident in queue:  # this process has a newer one
                    forget([change], spool)
                    continue
                queue[change.ident] = change
                self._held.hold(change)
                self._outages.setdefault(change.backend, Outage())
                taken.append(change)
                if (merge := bound(queue, self._held, change, host.prefix)) is not None:
                    merges.append((change.backend, merge))  # many processes' leftovers
            self._count()
        unserved(host.slot, taken)
        say(host.prefix, logging.WARNING, "took over %d change(s) left in the spool %s%s",
            len(taken), spool.path, " at start" if first else "")
        for backend, merge in merges:
            replace_in_spool(spool, host.prefix, merge.made, merge.gone, self._spool_log)
            merge.log(host.prefix, backend)
        self._worker.wake()
        if any("sync" not in host.slot(c.backend).flavours for c in taken):
            self._worker.kick_loop()

    def deliver(self) -> None:
        """Adopt and attempt now, in this thread (``reg.flush()``)."""
        self.adopt()
        self.attempt()

    async def adeliver(self) -> None:
        """The asyncio form of :meth:`deliver`."""
        await asyncio.to_thread(self.deliver)
        await self.aattempt()

    def close(self) -> None:
        """Stop the worker; what still waits stays in the spool (for the next process) or,
        without one, is given up, which is logged."""
        stopped = self._worker.close()
        if self.spool is not None:
            self.spool.release()
            if stopped:  # its connection too (a registry used again opens another)
                self.spool.close()
        elif self.stats.recoveries_pending:
            host = self._host()
            say(None if host is None else host.prefix, logging.ERROR, "the registry closes "
                "with %d change(s) that never reached their backend; entries they concern may "
                "be served until they expire", self.stats.recoveries_pending)

