"""In-process single-flight: concurrent calls with one key share one load.

Threads and asyncio tasks on any number of event loops can wait on a flight: threads on its
latch, tasks on a future of their own loop. Each flight remembers what its leader read (the
entry's marker and the tags' tokens): a caller that read something else (an invalidation or
a write happened in between) does not join it but starts a new flight, so no call is served
by a load that began before a change it has seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import OrderedDict
from typing import Any, Final

from cachedeco.backends.near.store import Ticket
from cachedeco.core.forking import redo_after_fork
from cachedeco.core.latch import Latch

__all__ = ["STARTING", "Flight", "Flights", "LeaderGone", "Read", "WaitTimeout", "generation"]

State = tuple[str, tuple[str | None, ...]]
#: Seconds a spawned background refresh holds others of its key back before its load starts
#: (then its flight does); one that never starts holds nothing back for longer.
STARTING: Final = 2.0


class LeaderGone(Exception):
    """The leader was cancelled or interrupted: its waiters join a new load (the first one
    leads it); a near-cached read's waiters read for themselves."""


class WaitTimeout(Exception):
    """A waiter gave up on a flight (``lock_timeout``); unlike a TimeoutError raised by the
    function itself, which every waiter must receive."""


def generation(state: State) -> State:
    """What makes two read states one generation: the entry's marker and the tokens that
    invalidations left. A tag token a store created ("c…") where another caller saw none is
    the same generation (stores adopt it too), so such callers share one load."""
    marker, tokens = state
    if all(t is None or t[0] == "i" for t in tokens):
        return state
    return marker, tuple(t if t is not None and t[0] == "i" else None for t in tokens)


class _Landing:
    """What waiters of a load or a read share: its value or error, a latch for threads, and
    for tasks one list of futures per event loop. The landing wakes a loop's tasks together:
    directly on that loop's own thread, else with one ``call_soon_threadsafe`` for all of
    them (one per task cost a wake-up of the loop's self-pipe each: 250 tasks waiting on one
    load took ~3 ms to wake before the first of them ran)."""

    __slots__ = ("_lock", "_tasks", "error", "latch", "value")

    def __init__(self) -> None:
        #: What threads wait on: opened once ``value`` or ``error`` is set, it wakes every
        #: waiting thread at once.
        self.latch = Latch()
        self.value: Any = None
        self.error: BaseException | None = None
        self._tasks: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] | None = None
        self._lock = threading.Lock()

    def waiter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None] | None:
        """A future of ``loop`` that the landing completes, or None once landed. Each task
        has its own: cancelling one leaves the others waiting."""
        waiter = loop.create_future()
        with self._lock:
            if self.latch.is_open:
                return None
            if self._tasks is None:
                self._tasks = {}
            self._tasks.setdefault(loop, []).append(waiter)
        return waiter

    def land(self, value: Any, exc: BaseException | None) -> None:
        """The value (or the error) for every waiter."""
        with self._lock:
            self.value, self.error = value, exc
            self.latch.open()
            tasks, self._tasks = self._tasks, None
        if tasks:
            _wake(tasks)


def _wake(tasks: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]]) -> None:
    """Complete every loop's waiters: at once on the running loop, else from inside it."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for loop, waiters in tasks.items():
        if loop is running:
            _settle_all(waiters)
        else:
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody left to wake
                loop.call_soon_threadsafe(_settle_all, waiters)


def _settle_all(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():  # a task cancelled or timed out meanwhile
            waiter.set_result(None)


class Flight(_Landing):
    """One load in progress, with the read state it started from."""

    __slots__ = ("landed", "state", "stored", "ticket")

    def __init__(self, state: State, ticket: Ticket | None = None) -> None:
        super().__init__()
        self.state = state
        self.landed = 0  # the Flights.landings count when it landed
        self.stored = ""  # the marker of the entry its load stores (set before the store)
        #: The near cache's ticket taken before the leader's read, if any: while nothing the
        #: entry depends on is reported changed since, a caller may join without reading.
        self.ticket = ticket

    def wrote(self, state: State) -> bool:
        """Whether ``state`` read the entry this load stores, with the tag tokens the load
        started from: a Redis Cluster read whose tag read came before the store and whose
        entry read came after it (two nodes, two replies, see docs/internals/cluster.md)."""
        return bool(self.stored) and state == (self.stored, self.state[1])


class Read(_Landing):
    """One near-cached read in progress: a caller of the same key and tag keys, whose near
    cache reports nothing they depend on changed since the read's ticket, waits for its reply
    rather than sending the same read (a hot key's callers, between a store and the read that
    keeps its value near). Waited on as a :class:`Flight` is."""

    __slots__ = ("tag_keys", "ticket")

    def __init__(self, ticket: Ticket, tag_keys: tuple[str, ...]) -> None:
        super().__init__()
        self.ticket = ticket
        self.tag_keys = tag_keys


class Flights:
    """The loads in progress by cache key, and the last one landed per key.

    A caller whose read was under way when a load landed (it read the state the load started
    from, before the load's store, or the entry that store wrote) joins that landed load
    rather than starting another: it notes ``landings`` before its read and passes it as
    ``since``.
    """

    RECENT = 1024  # landed flights remembered for such late joiners

    def __init__(self) -> None:
        self._recent: OrderedDict[str, Flight] = OrderedDict()
        self.landings = 0
        self._lock = threading.Lock()
        self.after_fork()
        redo_after_fork(self)

    def after_fork(self) -> None:
        """Empty, as in a forked child: the loads and reads under way were the parent's
        threads', which would never land there (its callers would wait ``lock_timeout``)."""
        self._flights: dict[str, Flight] = {}
        self._reads: dict[str, Read] = {}
        #: background refreshes spawned and not ended, by key: when (monotonic)
        self._starting: dict[str, float] = {}

    def join(self, key: str, state: State, since: int,
             ticket: Ticket | None = None) -> tuple[Flight, bool]:
        """The flight to wait on and whether this caller leads it (runs the load; a new
        flight carries ``ticket``, see :attr:`Flight.ticket`)."""
        state = generation(state)
        with self._lock:
            flight = self._flights.get(key)
            if (flight is not None and (flight.state == state or flight.wrote(state))
                    and not flight.latch.is_open):
                return flight, False
            recent = self._recent.get(key)
            if (recent is not None and (recent.state == state or recent.wrote(state))
                    and recent.landed > since and recent.error is None):
                return recent, False
            flight = self._flights[key] = Flight(state, ticket)
            return flight, True

    def reading(self, key: str, tag_keys: tuple[str, ...]) -> Read | None:
        """The near-cached read of ``key`` with ``tag_keys`` under way, if any."""
        read = self._reads.get(key)
        return None if read is None or read.latch.is_open or read.tag_keys != tag_keys else read

    def read(self, key: str, ticket: Ticket, tag_keys: tuple[str, ...]) -> Read:
        """A near-cached read of ``key`` begins (it takes the place of any other's)."""
        read = self._reads[key] = Read(ticket, tag_keys)
        return read

    def read_landed(self, key: str, read: Read, value: Any = None,
                    exc: BaseException | None = None) -> None:
        """A near-cached read replied (``value``) or failed (``exc``)."""
        with self._lock:
            if self._reads.get(key) is read:
                del self._reads[key]
        read.land(value, exc)

    def airborne(self, key: str) -> Flight | None:
        """The load of ``key`` under way in this process, if any."""
        flight = self._flights.get(key)
        return None if flight is None or flight.latch.is_open else flight

    def running(self, key: str, state: State) -> bool:
        """Whether a load from this read state is already under way (for background refresh)."""
        state = generation(state)
        flight = self._flights.get(key)
        return flight is not None and flight.state == state and not flight.latch.is_open

    def start_refresh(self, key: str, state: State) -> bool:
        """Whether a background refresh of ``key`` from ``state`` is to start now: none runs
        and none was spawned in the last ``STARTING`` seconds that has not ended (a spawned
        task joins its load only once it runs; hits meanwhile would each spawn another; one
        that never ran, cancelled or on a closed loop, holds nothing back for longer). Call
        :meth:`refreshed` when it ends."""
        now = time.monotonic()
        with self._lock:
            if now - self._starting.get(key, -STARTING) < STARTING or self.running(key, state):
                return False
            self._starting[key] = now
            return True

    def refreshed(self, key: str) -> None:
        """A background refresh started by :meth:`start_refresh` ended."""
        with self._lock:
            self._starting.pop(key, None)

    def land(self, key: str, flight: Flight, value: Any = None,
             exc: BaseException | None = None) -> None:
        """Finish a flight: later callers start afresh, waiters get the value or the error."""
        flight.error = exc  # before a late joiner may find it among the landed (see join)
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            self.landings += 1
            flight.landed = self.landings
            self._recent[key] = flight
            self._recent.move_to_end(key)
            if len(self._recent) > self.RECENT:
                self._recent.popitem(last=False)
        flight.land(value, exc)

    def forget(self, key: str) -> None:
        """A local write or invalidation: callers from now on never join the current flight."""
        with self._lock:
            self._flights.pop(key, None)
            self._recent.pop(key, None)
