"""A latch: opened once, and every thread waiting on it wakes at once.

``threading.Event`` and ``concurrent.futures.Future`` make each woken thread take their
shared condition's lock again before it returns, so N waiters leave one after another, each
handing that lock to the next. Here each waiter blocks on a lock of its own, which the
opener releases: a woken thread needs nothing but the GIL. What single-flight waiters and
combined reads wait on, where hundreds of threads may wait for one result.
"""

from __future__ import annotations

import threading

__all__ = ["Latch"]


class Latch:
    """Closed until :meth:`open`; then every wait returns at once, and later ones at once."""

    __slots__ = ("_lock", "_waiters", "is_open")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: list[threading.Lock] = []
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
        if waiter.acquire(True, -1 if timeout is None else max(timeout, 0.0)):
            return True
        with self._lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return self.is_open

    def open(self) -> None:
        """Open it and wake every waiter."""
        with self._lock:
            self.is_open = True
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.release()
