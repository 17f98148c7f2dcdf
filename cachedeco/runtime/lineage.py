"""Whether a backend's data went back in time, and what is done then.

A Redis restarted from an older snapshot (an RDB file; an AOF not yet fsynced), or promoted
while it lagged behind (a second failover before the old primary had resynced), serves the
entries and tag tokens that later changes had replaced, until they expire. Auto-recovery
applies again only the changes of the last moments (:mod:`.recent`), which covers a
replica's usual lag and nothing older. So every ``BEAT`` seconds each process adds one to a
counter on each Redis backend (``INCR prefix:~lineage``: a daemon thread, or a task on the
running loop for a backend given an asyncio client only; every ``AGAIN`` seconds while they
fail, and at once when a Sentinel watch follows a new primary) and remembers what it got
lately. From the moment a watch sees its primary move until a beat sent to the new one was
judged, none of that backend's entries is served (calls load instead, for a round trip).

A value not above the last one it got means the server lost that increment, so perhaps the
changes made since. The changes this process landed since the newest of its beats that is
``WINDOW - BEAT`` seconds older than that last one are applied again; when the server lost
that older beat too, it lost changes older than any replay reaches: every entry under the
prefix is invalidated (each function's tag renewed, none served from the backend meanwhile),
and that is logged. A process that has beaten only once replays and no more (a failover's
usual lag loses the last beat, not one a second older). On Cluster each primary serving
slots has a counter of its own (its data can go back alone: a primary restarted from its
snapshot before a replica took over), named with a hash tag of one of its slots. Memory
backends have none.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Final, Protocol

import redis.exceptions

from cachedeco.backends.base import BACKEND_ERRORS
from cachedeco.backends.open import BackendSlot
from cachedeco.core.forking import redo_after_fork
from cachedeco.core.logs import say
from cachedeco.errors import CacheError
from cachedeco.runtime.recent import WINDOW
from cachedeco.runtime.workers import Periodic

__all__ = ["BEAT", "Lineage"]

BEAT: Final = 1.0  # seconds between two beats of one process
#: Seconds between two beats while the last one failed: the server is noticed soon after it
#: answers again (a restart).
AGAIN: Final = 0.1
KEEP: Final = 16  # beats remembered per backend (only the last WINDOW + BEAT seconds matter)
Beat = tuple[float, int]  # when (monotonic) the reply came, and the counter it gave


class Host(Protocol):
    """What the lineage needs of its registry."""

    @property
    def lineage_key(self) -> str: ...
    def slot(self, name: str) -> BackendSlot: ...
    def backend_names(self) -> list[str]: ...


class Losses(Protocol):
    """What is done when a backend lost changes (:class:`~.recovery.Recovery`)."""

    def replay(self, backend: str, since: float | None = None) -> None: ...
    def renew_all(self, backend: str) -> None: ...
    def hold_move(self, backend: str, epoch: int) -> None: ...
    def end_move(self, backend: str, epoch: int) -> None: ...


def verdict(beats: collections.deque[Beat], value: int) -> tuple[float, bool] | None:
    """None when ``value`` follows the beats; else (replay the changes landed since then,
    whether changes older than that may be lost too)."""
    if not beats or value > beats[-1][1]:
        return None
    last = beats[-1][0]
    older = [beat for beat in beats if beat[0] <= last - (WINDOW - BEAT)]
    since, counted = older[-1] if older else beats[0]
    return since, len(beats) > 1 and value - 1 < counted


class Lineage(Periodic):
    """One registry's beats on its Redis backends, and what a counter gone back means."""

    def __init__(self, losses: Losses, host: Callable[[], Host | None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__("lineage", "lineage")
        self._losses = losses
        self._host = host  # a weak reference to the registry
        self._clock = clock
        #: The beats remembered, by backend slot and counter (one per primary on Cluster): a
        #: slot of its own per configuration, so another server is never compared with the
        #: last one's counter.
        self._beats: dict[tuple[int, str], collections.deque[Beat]] = {}
        self._mute: set[int] = set()  # slots whose counter cannot be used (ACL, memory)
        #: The task beating on the backends given an asyncio client only (this worker is the
        #: thread beating on those with a sync client: a registry may have both).
        self._on_loop = _OnLoop(self)
        redo_after_fork(self)

    def ensure(self) -> None:
        """Start beating where it does not: a thread for the Redis backends with a sync
        client, a task on the running loop for those given an asyncio client only."""
        if self.running and self._on_loop.running:
            return
        slots = self._slots()
        if not self.running and any("sync" in slot.flavours for slot in slots):
            self._launch(True, BEAT)
        if not self._on_loop.running and any("sync" not in slot.flavours for slot in slots):
            self._on_loop.start()

    def _slots(self) -> list[BackendSlot]:
        host = self._host()
        if host is None:
            return []
        slots = [host.slot(name) for name in host.backend_names()]
        return [slot for slot in slots
                if not slot.stores_objects and id(slot) not in self._mute]

    def tick(self) -> None:
        self.beat()

    async def atick(self) -> None:
        await self.abeat()

    def beat(self) -> None:
        """One beat on every Redis backend with a sync client."""
        host = self._host()
        if host is None:  # collected without close(): the worker ends
            self._end()
            return
        for slot in self._slots():
            if "sync" in slot.flavours:
                moves = slot.moves  # before: a beat sent after a move goes to the new primary
                try:
                    values = slot.backend().beat(host.lineage_key)
                except BACKEND_ERRORS as exc:
                    self._failed(slot, exc)
                    continue
                self._seen(slot, values, moves)

    async def abeat(self) -> None:
        """One beat on every Redis backend given an asyncio client only."""
        host = self._host()
        if host is None:
            self._on_loop.end()
            return
        for slot in self._slots():
            if "sync" not in slot.flavours:
                moves = slot.moves
                try:
                    values = await slot.abackend().beat(host.lineage_key)
                except BACKEND_ERRORS as exc:
                    self._failed(slot, exc)
                    continue
                self._seen(slot, values, moves)

    def moving(self, name: str, epoch: int) -> None:
        """Backend ``name``'s Sentinel primary moves (to the watch's ``epoch``), before any
        connection follows: none of its entries is served until a beat sent there was judged
        (the new primary may hold older data), unless no such beat will come."""
        host = self._host()
        if host is None or not self.running:
            return
        try:
            slot = host.slot(name)
        except CacheError:  # replaced by configure() meanwhile
            return
        if id(slot) not in self._mute:
            self._losses.hold_move(name, epoch)

    def kick(self) -> None:
        """Beat now: the backend's primary moved (:meth:`BackendSlot.on_switch`), and the new
        one may hold older data."""
        worker = self._worker
        if worker is not None:
            worker.notify()

    def _pace(self, slot: BackendSlot, interval: float) -> None:
        """The next beats on ``slot``'s kind of client come ``interval`` seconds apart."""
        worker = (self if "sync" in slot.flavours else self._on_loop).worker
        if worker is not None:
            worker.interval = interval

    def _failed(self, slot: BackendSlot, exc: BaseException) -> None:
        """A beat that failed tells nothing (the outage is the calls' to report), but the
        next comes sooner; one the server refuses for good (an ACL without INCR) is given up,
        once, loudly."""
        self._pace(slot, AGAIN)
        if isinstance(exc, redis.exceptions.NoPermissionError):
            self._mute.add(id(slot))
            say(slot.prefix, logging.WARNING, "backend %r refuses INCR on the lineage counter "
                "(%s): a restart from an older snapshot will not be noticed", slot.name, exc)

    def _seen(self, slot: BackendSlot, values: dict[str, int] | None, moves: int) -> None:
        """Note a beat's replies (a counter per primary on Cluster), sent when the Sentinel
        watch had seen ``moves`` moves; act when one went back."""
        if values is None:
            self._mute.add(id(slot))
            return
        self._pace(slot, BEAT)
        now = self._clock()
        since: float | None = None
        older = emptied = False
        for name, value in values.items():
            beats = self._beats.setdefault((id(slot), name), collections.deque(maxlen=KEEP))
            found = verdict(beats, value)
            if found is not None:
                beats.clear()
                since = found[0] if since is None else min(since, found[0])
                older = older or found[1]
                emptied = emptied or value == 1  # no counter at all: flushed, or empty
            beats.append((now, value))
        if older:
            say(slot.prefix, logging.WARNING,
                "backend %r %s: every entry under the prefix is invalidated",
                slot.name, "holds no lineage counter any more (FLUSHDB, or a restart without "
                "its data)" if emptied else "lost changes (its lineage counter went back: a "
                "restart without its data or from an older snapshot, FLUSHDB, or a failover "
                "to a replica that lagged; another process may have counted from 1 again "
                "first)")
            self._losses.renew_all(slot.name)
        if since is not None:
            self._losses.replay(slot.name, since)
        self._losses.end_move(slot.name, moves)  # what was lost is held now: serve the rest

    def forget(self) -> None:
        """The registry's backends were replaced (``configure()``): what was learnt of the
        old ones is dropped."""
        self._beats.clear()
        self._mute.clear()

    def stop(self) -> None:
        """Stop beating (the thread, and the task)."""
        super().stop()
        self._on_loop.stop()

    async def astop(self) -> None:
        """The asyncio form of :meth:`stop`."""
        await super().astop()
        await self._on_loop.astop()

    def after_fork(self) -> None:
        """In a child: its own beats from its own thread (the parent's are not its own)."""
        self._beats.clear()
        self._on_loop.after_fork()
        super().after_fork()


class _OnLoop(Periodic):
    """The lineage's beats on the backends given an asyncio client only: a task on the
    running loop (such a client serves only its loop)."""

    def __init__(self, lineage: Lineage) -> None:
        super().__init__("lineage", "lineage")
        self._lineage = lineage

    async def atick(self) -> None:
        await self._lineage.abeat()

    def start(self) -> None:
        """Start the task on the running loop, if one runs (else the next call on one)."""
        self._launch(False, BEAT)

    def end(self) -> None:
        """The registry is gone: the task ends after this round."""
        self._end()
