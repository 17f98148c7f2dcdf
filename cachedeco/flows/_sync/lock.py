# GENERATED from _async/lock.py by tools/unasync.py: do not edit.
"""A distributed lock's acquisitions, sync flavour: ``with lock`` (the sync twin gives
``with lock``)."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from cachedeco.backends.base import BACKEND_ERRORS
from cachedeco.errors import CacheError, LockNotOwned
from cachedeco.flows._sync.lease import release_later, release_noted, take
from cachedeco.flows.lock_core import LockCore
from cachedeco.runtime.guard import warn

__all__ = ["LockIO"]


class LockIO(LockCore):
    """Acquire and release from asyncio tasks; the waiting does not block the event loop."""

    def acquire(self) -> None:
        """Wait for the lock as ``timeout`` allows; LockTimeout when it is not acquired."""
        owner = self.owner()
        if owner in self._held:
            raise CacheError(f"lock {self.name!r} is already held by this owner "
                             "(cachedeco.lock is not reentrant)")
        self.registry.recovery.ensure()  # in use: what a spool holds is delivered
        leases = self.registry.slot(self.backend).backend().leases()
        try:
            lease = take(leases, self.lease_name(), self.ttl, self.timeout)
        except BACKEND_ERRORS as exc:
            raise self.error(exc, "acquire") from exc
        if lease is None:
            raise self.timed_out()
        self._held[owner] = lease

    def release(self) -> None:
        """Release the lock this owner holds; LockNotOwned if it expired first."""
        lease = self._held.pop(self.owner(), None)
        if lease is None:
            raise LockNotOwned(f"lock {self.name!r} is not held by this owner")
        try:
            owned = release_noted(lease, self.registry.recovery.recent, self.backend)
        except BACKEND_ERRORS as exc:
            raise self.error(exc, "release") from exc
        except BaseException:  # cancelled while releasing: sent again in the background
            background = self.registry.background
            background.spawn(release_later, lease, self.ttl, background)
            raise
        if not owned:
            raise self.not_owned()

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc is None:
            self.release()
            return
        try:
            self.release()
        except CacheError as lost:  # never hide the body's own exception behind this one
            warn(f"lock:{self.registry.prefix}:{self.name}", "%s", lost,
                 prefix=self.registry.prefix)
