"""The changes that landed in the last moments, per backend: what a failover may have lost.

Redis replicates asynchronously, so a change a primary acknowledged just before it died (a
write-through's store, a drop, a tag invalidation) may be missing from the replica promoted in
its place, and the value it replaced would be served again until it expires. When an outage
begins, or when the sentinels name another primary while the old one still runs (it drops
what it accepted since once they demote it), :class:`~cachedeco.runtime.recovery.Recovery`
takes the changes that landed in the last ``WINDOW`` seconds and applies them again, as drops
and invalidations, once the backend answers: one more miss for each, at worst, instead of a
stale value. The ``lock=True`` leases released lately are released again too, by their
tokens: a lease replicated before the failover and released on the old primary would keep
the key's callers waiting until it expires. What recovery itself applies counts as landed
too: it may have reached a server that loses it as well (a killed primary restarted empty, a
primary for a moment before its ``REPLICAOF``), and the next replay, the sentinels naming the
new primary, applies it again.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable
from typing import Final

from cachedeco.core.entry import Release
from cachedeco.runtime.changes import RELEASE

__all__ = ["WINDOW", "RecentChanges"]

#: Seconds: far beyond a replica's lag on a healthy link, and beyond the time from a
#: promotion to the sentinels naming the new primary plus the watch's interval
#: (:mod:`~cachedeco.backends.redis.primary_watch`).
WINDOW: Final = 3.0
LIMIT: Final = 4096  # changes remembered per backend at the most (the oldest go first)
#: Lease releases remembered per backend at the most, apart: a burst of ``lock=True`` loads
#: never pushes a drop or an invalidation out (a release forgotten costs a wait, at worst
#: until the lease expires; a drop forgotten, a stale value).
RELEASE_LIMIT: Final = 1024

#: One landed change: when (monotonic), its kind (``drop``, ``tags``, ``every`` or
#: ``release``), its key, its px, and for a release the lease and its token.
Landed = tuple[float, str, str, int, Release | None]
#: A change to apply again: its kind, key, px and release.
Again = tuple[str, str, int, Release | None]


class RecentChanges:
    """A short memory of the changes that reached each backend."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        #: Per backend, and whether they are lease releases (kept apart, see RELEASE_LIMIT).
        self._by_backend: dict[tuple[str, bool], collections.deque[Landed]] = {}

    def note(self, backend: str, kind: str, targets: Iterable[str], px: int,
             release: Release | None = None) -> None:
        """Remember that these changes reached ``backend`` now."""
        now = self._clock()
        where = (backend, kind == RELEASE)
        with self._lock:
            recent = self._by_backend.get(where)
            if recent is None:
                recent = self._by_backend[where] = collections.deque(
                    maxlen=RELEASE_LIMIT if where[1] else LIMIT)
            recent.extend((now, kind, target, px, release) for target in targets)

    def released(self, backend: str, release: Release | None) -> None:
        """Remember a lease's release that landed (None: a lease that has nothing to send
        again, an in-process one)."""
        if release is not None:
            self.note(backend, RELEASE, (release.lease,), 0, release)

    def take(self, backend: str, since: float | None = None) -> list[Again]:
        """The changes that reached ``backend`` in the last ``WINDOW`` seconds, or since
        ``since`` (monotonic; each key or tag once, each lease's token once), forgotten as
        they are handed out."""
        since = self._clock() - WINDOW if since is None else since
        with self._lock:
            changes = self._by_backend.pop((backend, False), ())
            releases = self._by_backend.pop((backend, True), ())
        found: dict[tuple[str, str, str | bytes], Again] = {}
        for at, kind, target, px, release in (*changes, *releases):
            if at >= since:
                token = b"" if release is None else release.token
                found[(kind, target, token)] = (kind, target, px, release)
        return list(found.values())

    def clear(self) -> None:
        """Forget everything (a forked child)."""
        with self._lock:
            self._by_backend.clear()
