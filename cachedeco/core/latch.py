"""A latch: opened once, and every thread waiting on it wakes within a few hand-offs.

``threading.Event`` and ``concurrent.futures.Future`` make each woken thread take their
shared condition's lock again before it returns, so N waiters leave one after another, each
handing that lock to the next. Here each waiter blocks on a lock of its own. Releasing all
of them at once is no better: hundreds of runnable threads then fight for the GIL (and the
CPUs), and the last one runs late. So the opener wakes the first ``FANOUT`` waiters and each
woken waiter wakes ``FANOUT`` more before it returns, a tree of depth log(N): few threads are
runnable at a time and the wake spreads while the early ones run. What single-flight waiters
and combined reads wait on, where hundreds of threads may wait for one result.
"""

from __future__ import annotations

import threading

__all__ = ["Latch"]

#: How many waiters each woken one wakes (and the opener): 250 waiters are 7 levels deep.
FANOUT = 2
_NOBODY: dict[threading.Lock, int] = {}  # the order of a latch nobody waited on (never changed)


class Latch:
    """Closed until :meth:`open`; then every wait returns at once, and later ones at once."""

    __slots__ = ("_lock", "_order", "_waiters", "is_open")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: list[threading.Lock] = []
        self._order: dict[threading.Lock, int] = _NOBODY  # set by open: each waiter's place
        self.is_open = False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the latch opens (True) or ``timeout`` seconds pass (False)."""
        if self.is_open:
            return True
        waiter = threading.Lock()
        waiter.acquire()
        with self._lock:
            if self.is_open:
                return True
            self._waiters.append(waiter)
        if not waiter.acquire(True, -1 if timeout is None else max(timeout, 0.0)):
            with self._lock:
                if not self.is_open:
                    self._waiters.remove(waiter)
                    return False
            # opened as it timed out: its place in the tree is taken, so it wakes its share
        self._relay(self._order[waiter] + 1)
        return True

    def open(self) -> None:
        """Open it and wake every waiter (the first ones here, the rest through them)."""
        with self._lock:
            if self.is_open:
                return
            self.is_open = True  # the list is final from here on: no one joins or leaves
            if not self._waiters:  # most latches: nobody waited
                return
            self._order = {waiter: place for place, waiter in enumerate(self._waiters)}
        self._relay(0)

    def _relay(self, node: int) -> None:
        """Wake the waiters below tree node ``node`` (0 is the opener; waiter i is node i+1)."""
        waiters = self._waiters
        first = node * FANOUT
        for place in range(first, min(first + FANOUT, len(waiters))):
            waiters[place].release()
