"""The in-process tally: a dict of sums under a lock (one process adds to it, so the
service-wide view of ``cachedeco stats`` needs Redis)."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from cachedeco.core.forking import redo_after_fork

__all__ = ["MemoryTally"]


class MemoryTally:
    """A table of counts in this process, with the Redis tally's semantics."""

    def __init__(self) -> None:
        self._sums: dict[str, int] = {}
        self._lock = threading.Lock()
        redo_after_fork(self)  # a lock of its own in a forked child

    def add(self, counts: Mapping[str, int]) -> None:
        """Add each count to its name's sum, all at once."""
        with self._lock:
            for name, count in counts.items():
                self._sums[name] = self._sums.get(name, 0) + count

    def read(self) -> dict[str, int]:
        """Every name and its sum."""
        with self._lock:
            return dict(self._sums)
