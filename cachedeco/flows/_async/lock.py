"""A distributed lock's acquisitions, asyncio flavour: ``async with lock`` (the sync twin gives
``with lock``)."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from cachedeco.backends.base import BACKEND_ERRORS
from cachedeco.errors import CacheError, LockNotOwned
from cachedeco.flows._async.lease import release_later, release_noted, take
from cachedeco.flows.lock_core import LockCore
from cachedeco.runtime.guard import warn

__all__ = ["AsyncLockIO"]


class AsyncLockIO(LockCore):
    """Acquire and release from asyncio tasks; the waiting does not block the event loop."""

    async def aacquire(self) -> None:
        """Wait for the lock as ``timeout`` allows; LockTimeout when it is not acquired."""
        owner = self.aowner()
        if owner in self._held:
            raise CacheError(f"lock {self.name!r} is already held by this owner "
                             "(cachedeco.lock is not reentrant)")
        self.registry.recovery.ensure()  # in use: what a spool holds is delivered
        leases = self.registry.slot(self.backend).abackend().leases()
        try:
            lease = await take(leases, self.lease_name(), self.ttl, self.timeout)
        except BACKEND_ERRORS as exc:
            raise self.error(exc, "acquire") from exc
        if lease is None:
            raise self.timed_out()
        self._held[owner] = lease

    async def arelease(self) -> None:
        """Release the lock this owner holds; LockNotOwned if it expired first."""
        lease = self._held.pop(self.aowner(), None)
        if lease is None:
            raise LockNotOwned(f"lock {self.name!r} is not held by this owner")
        try:
            owned = await release_noted(lease, self.registry.recovery.recent, self.backend)
        except BACKEND_ERRORS as exc:
            raise self.error(exc, "release") from exc
        except BaseException:  # cancelled while releasing: sent again in the background
            background = self.registry.background
            background.aspawn(release_later, lease, self.ttl, background)
            raise
        if not owned:
            raise self.not_owned()

    async def __aenter__(self) -> Self:
        await self.aacquire()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc is None:
            await self.arelease()
            return
        try:
            await self.arelease()
        except CacheError as lost:  # never hide the body's own exception behind this one
            warn(f"lock:{self.registry.prefix}:{self.name}", "%s", lost,
                 prefix=self.registry.prefix)
