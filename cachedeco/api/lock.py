"""``cachedeco.lock``: a distributed mutex over a registry's backend, for ``with`` and
``async with``.

It is a lease (``backend.leases()``): a key under the prefix holding a random token with a
TTL, taken with SET NX PX. Only the token's owner releases it (token-checked Lua), so an owner
whose lock expired never deletes the next owner's; releasing it then raises
:class:`~cachedeco.errors.LockNotOwned`, as redis-py raises ``LockNotOwnedError``, because the
critical section was not exclusive. Waiters block on the list the release pushes to, so one
acquires within a round trip of the release rather than after a poll interval. On
``memory://`` the same rules hold within the process. The registry and backend are resolved
at each acquisition, so a lock made before ``configure()`` uses the configured backend.
"""

from __future__ import annotations

from cachedeco.flows._async.lock import AsyncLockIO
from cachedeco.flows._sync.lock import LockIO

__all__ = ["Lock"]


class Lock(LockIO, AsyncLockIO):
    """A distributed mutex: `with reg.lock("name", ttl=10, timeout=5): ...`.

    Made by [`cachedeco.lock()`][cachedeco.lock] or `reg.lock()`, whose arguments it keeps.
    `with lock:` / `async with lock:` acquire it, raising
    [`LockTimeout`][cachedeco.errors.LockTimeout] after `timeout`, and release it on exit;
    a release after the `ttl` ran out raises [`LockNotOwned`][cachedeco.errors.LockNotOwned]
    (logged instead when the block raised). Not reentrant. One object may be shared by
    threads and tasks: each thread (or task) holds and releases its own acquisition.
    """

    def __repr__(self) -> str:
        return f"<cachedeco.Lock {self.name!r} ttl={self.ttl} timeout={self.timeout}>"
