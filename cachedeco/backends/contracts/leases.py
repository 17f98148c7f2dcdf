"""The lease contract a backend offers beside the cache core (``backend.leases()``).

A lease is a key holding a random token with a TTL. ``acquire`` takes it or says who is in
the way and for how long; ``wait`` blocks until a holder releases, without polling; only the
token's owner ``release``\\s or ``extend``\\s it. ``lock=True`` and ``cachedeco.lock`` are
written once over this contract (:mod:`cachedeco.flows._async.lease`).
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cachedeco.core.entry import Release
from cachedeco.core.keyspace import LeaseName

__all__ = [
    "AsyncLease",
    "AsyncLeases",
    "AsyncRun",
    "Busy",
    "Lease",
    "LeaseName",
    "Leases",
    "Run",
    "deadline",
    "lease_ttl",
]

Run = Callable[[], Any]  # a load to run while holding a lease
AsyncRun = Callable[[], Awaitable[Any]]


def lease_ttl(lock_timeout: float | None) -> float:
    """How long a ``lock=True`` lease lives unless extended: half the wait bound, so a dead
    holder is replaced before its waiters give up, within [0.5 s, 30 s]."""
    if lock_timeout is None:
        return 10.0
    return min(max(lock_timeout / 2, 0.5), 30.0)


def deadline(timeout: float | None) -> float:
    """The monotonic time ``timeout`` seconds from now (infinity for None)."""
    return math.inf if timeout is None else time.monotonic() + timeout


@dataclass(frozen=True, slots=True)
class Busy:
    """Someone else holds the lease: for how many more ms (None: unknown or no TTL), and, for
    an in-process lease, the future its release completes."""

    ms: int | None
    released: concurrent.futures.Future[None] | None = None
    landed: bool = False  # not taken: a value other than the one ``seen`` is in the entry

    def cap(self, left: float) -> float:
        """How long to wait: ``left`` seconds, or until the lease expires if that is sooner."""
        return left if self.ms is None else min(left, self.ms / 1000 + 0.002)


class Lease(Protocol):
    """A lease this owner holds."""

    def release(self) -> bool:
        """Release it and wake its waiters; False when it was no longer ours (expired)."""
        ...

    def extend(self, ttl: float) -> bool:
        """Make it live ``ttl`` more seconds from now; False when it is no longer ours."""
        ...

    def handoff(self) -> Release | None:
        """The lease as a store can release it in the same step (see :class:`Release`), or
        None when its backend cannot."""
        ...


class AsyncLease(Protocol):
    """The asyncio twin of :class:`Lease`."""

    async def release(self) -> bool:
        """See :meth:`Lease.release`."""
        ...

    async def extend(self, ttl: float) -> bool:
        """See :meth:`Lease.extend`."""
        ...

    def handoff(self) -> Release | None:
        """See :meth:`Lease.handoff`."""
        ...


class Leases(Protocol):
    """The lease operations of one backend."""

    def acquire(self, name: LeaseName, ttl: float, seen: str | None = None,
                watched: bool = False) -> Lease | Busy:
        """Take the lease for ``ttl`` seconds without waiting, or say how long it stays held.
        With ``seen`` (the marker a miss read in ``name.entry``), a backend may instead say
        that another value landed there since (``Busy.landed``): read it rather than load.
        ``watched``: the caller learns of the release from a change stream, so a held lease
        may be answered as cheaply as the backend can, without its remaining time."""
        ...

    def wait(self, name: LeaseName, busy: Busy, timeout: float) -> bool:
        """Block until the lease is released (True) or about ``timeout`` seconds pass (False)."""
        ...

    def repeat(self, release: Release) -> None:
        """Send a release that landed once again, by its token: a failover may have lost it
        (the lease, replicated before, would hold the key's callers until it expires); a
        lease that is gone or taken by someone else is left alone."""
        ...


class AsyncLeases(Protocol):
    """The asyncio twin of :class:`Leases`."""

    async def acquire(self, name: LeaseName, ttl: float, seen: str | None = None,
                      watched: bool = False) -> AsyncLease | Busy:
        """See :meth:`Leases.acquire`."""
        ...

    async def wait(self, name: LeaseName, busy: Busy, timeout: float) -> bool:
        """See :meth:`Leases.wait`."""
        ...

    async def repeat(self, release: Release) -> None:
        """See :meth:`Leases.repeat`."""
        ...
