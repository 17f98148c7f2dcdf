"""``cachedeco.lock``: a distributed mutex over a registry's backend, for ``with`` and
``async with``.

It is a lease (``backends/leases.py``): a key under the prefix holding a random token with a
TTL, taken with SET NX PX. Only the token's owner releases it (token-checked Lua), so an owner
whose lock expired never deletes the next owner's; releasing it then raises
:class:`LockNotOwned`, as redis-py raises ``LockNotOwnedError``, because the critical section
was not exclusive. Waiters block on the list the release pushes to, so one acquires within a
round trip of the release rather than after a poll interval. On ``memory://`` the same rules
hold within the process. The registry and backend are resolved at each acquisition, so a
lock made before ``configure()`` uses the configured backend.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from cachedeco import _lease_async, _lease_sync
from cachedeco._guard import BACKEND_ERRORS, logger
from cachedeco._policy import check_ttl
from cachedeco.backends.leases import (
    AsyncLease,
    Lease,
    LeaseName,
    aleases_of,
    lease_name,
    leases_of,
)
from cachedeco.errors import (
    BackendError,
    CacheError,
    ConfigurationError,
    LockNotOwned,
    LockTimeout,
)

if TYPE_CHECKING:
    from cachedeco._registry import Registry

__all__ = ["Lock", "LockNotOwned"]


class Lock:
    """A distributed mutex: ``with reg.lock("name", ttl=10, timeout=5): ...``.

    ``ttl``: seconds the lock lives unless released, so a crashed owner cannot keep it;
    ``timeout``: seconds to wait for it (None: without limit, 0: one try), then
    :class:`~cachedeco.errors.LockTimeout`. Not reentrant. One object may be shared by
    threads and tasks: each thread (or task) holds and releases its own acquisition.
    """

    def __init__(self, registry: Registry, name: str, *, ttl: float = 10.0,
                 timeout: float | None = None, backend: str = "default") -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a lock name must be a non-empty string, not {name!r}")
        if not isinstance(backend, str):
            raise ConfigurationError(f"backend must be a backend name, not {backend!r}")
        self.registry = registry
        self.name = name
        self.ttl = check_ttl(ttl, "ttl")
        self.timeout = None if timeout is None else check_ttl(timeout, "timeout",
                                                              allow_zero=True)
        self.backend = backend
        self._held: dict[int, Lease] = {}
        self._aheld: dict[asyncio.Task[object] | int, AsyncLease] = {}

    def _lease_name(self) -> LeaseName:
        return lease_name(self.registry.internal_key, "lock", self.name)

    def _failed(self, exc: BaseException, action: str) -> BackendError:
        return BackendError(f"backend {self.backend!r} failed to {action} lock {self.name!r}: "
                            f"{type(exc).__name__}: {exc}")

    def _timed_out(self) -> LockTimeout:
        return LockTimeout(f"lock {self.name!r} was not acquired within {self.timeout} s")

    def _not_owned(self) -> LockNotOwned:
        return LockNotOwned(f"lock {self.name!r} expired (ttl {self.ttl} s) before its owner "
                            "released it; another owner may have held it meanwhile")

    # -- threads --------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Wait for the lock as ``timeout`` allows; LockTimeout when it is not acquired."""
        owner = threading.get_ident()
        if owner in self._held:
            raise CacheError(f"lock {self.name!r} is already held by this thread "
                             "(cachedeco.lock is not reentrant)")
        leases = leases_of(self.registry.slot(self.backend).backend())
        if leases is None:
            raise ConfigurationError(f"backend {self.backend!r} does not offer locks")
        try:
            lease = _lease_sync.take(leases, self._lease_name(), self.ttl, self.timeout)
        except BACKEND_ERRORS as exc:
            raise self._failed(exc, "acquire") from exc
        if lease is None:
            raise self._timed_out()
        self._held[owner] = lease

    def release(self) -> None:
        """Release the lock this thread holds; LockNotOwned if it expired first."""
        lease = self._held.pop(threading.get_ident(), None)
        if lease is None:
            raise LockNotOwned(f"lock {self.name!r} is not held by this thread")
        try:
            owned = lease.release()
        except BACKEND_ERRORS as exc:
            raise self._failed(exc, "release") from exc
        if not owned:
            raise self._not_owned()

    def __enter__(self) -> Lock:
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
            logger.warning("cachedeco: %s", lost)

    # -- asyncio --------------------------------------------------------------------------------

    @staticmethod
    def _task() -> asyncio.Task[object] | int:
        return asyncio.current_task() or threading.get_ident()

    async def aacquire(self) -> None:
        """The asyncio form of :meth:`acquire`: the waiting does not block the event loop."""
        owner = self._task()
        if owner in self._aheld:
            raise CacheError(f"lock {self.name!r} is already held by this task "
                             "(cachedeco.lock is not reentrant)")
        leases = aleases_of(self.registry.slot(self.backend).abackend())
        if leases is None:
            raise ConfigurationError(f"backend {self.backend!r} does not offer locks")
        try:
            lease = await _lease_async.take(leases, self._lease_name(), self.ttl, self.timeout)
        except BACKEND_ERRORS as exc:
            raise self._failed(exc, "acquire") from exc
        if lease is None:
            raise self._timed_out()
        self._aheld[owner] = lease

    async def arelease(self) -> None:
        """The asyncio form of :meth:`release`."""
        lease = self._aheld.pop(self._task(), None)
        if lease is None:
            raise LockNotOwned(f"lock {self.name!r} is not held by this task")
        try:
            owned = await lease.release()
        except BACKEND_ERRORS as exc:
            raise self._failed(exc, "release") from exc
        if not owned:
            raise self._not_owned()

    async def __aenter__(self) -> Lock:
        await self.aacquire()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc is None:
            await self.arelease()
            return
        try:
            await self.arelease()
        except CacheError as lost:
            logger.warning("cachedeco: %s", lost)

    def __repr__(self) -> str:
        return f"<cachedeco.Lock {self.name!r} ttl={self.ttl} timeout={self.timeout}>"
