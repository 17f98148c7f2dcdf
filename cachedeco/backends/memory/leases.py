"""In-process leases for ``memory://``: the Redis leases' semantics (TTL, owner-only release,
waiters woken on release) within one process, for threads and asyncio tasks alike."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time

from cachedeco.backends.contracts.leases import AsyncLease, Busy, Lease, LeaseName
from cachedeco.core.entry import Release
from cachedeco.core.woken import await_woken, wait_woken

__all__ = ["AsyncMemoryLeases", "MemoryLeases"]


class _Held:
    """One in-process lease: its owner's token, its expiry, and the future its end completes."""

    __slots__ = ("expires", "released", "token")

    def __init__(self, token: str, expires: float) -> None:
        self.token = token
        self.expires = expires
        self.released: concurrent.futures.Future[None] = concurrent.futures.Future()


class MemoryLeases:
    """In-process leases with the Redis semantics: TTL, owner-only release, woken waiters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, _Held] = {}

    def acquire(self, name: LeaseName, ttl: float, seen: str | None = None,
                watched: bool = False) -> Lease | Busy:
        """Take the lease unless a live holder has it (``seen``, ``watched``: unused, one
        process's loads share their flight without a lease)."""
        now = time.monotonic()
        with self._lock:
            old = self._held.get(name.key)
            if old is not None and old.expires > now:
                return Busy(int((old.expires - now) * 1000), old.released)
            held = self._held[name.key] = _Held(os.urandom(8).hex(), now + ttl)
        if old is not None:
            old.released.set_result(None)  # it expired: its waiters may stop waiting
        return _MemoryLease(self, name.key, held.token)

    def wait(self, name: LeaseName, busy: Busy, timeout: float) -> bool:
        """Wait on the holder's release future."""
        return busy.released is not None and wait_woken(busy.released, timeout)

    def repeat(self, release: Release) -> None:
        """Release by token (one process: nothing is lost, but the contract allows it)."""
        self.release(release.lease, str(release.token))

    def release(self, key: str, token: str) -> bool:
        """End the lease if ``token`` still owns it (an expired one is ended but not owned)."""
        now = time.monotonic()
        with self._lock:
            held = self._held.get(key)
            if held is None or held.token != token:
                return False
            del self._held[key]
        held.released.set_result(None)
        return held.expires > now

    def extend(self, key: str, token: str, ttl: float) -> bool:
        """Push the expiry of a live lease that ``token`` owns."""
        now = time.monotonic()
        with self._lock:
            held = self._held.get(key)
            if held is None or held.token != token or held.expires <= now:
                return False
            held.expires = now + ttl
        return True


class _MemoryLease:
    """A held in-process lease."""

    __slots__ = ("_key", "_leases", "_token")

    def __init__(self, leases: MemoryLeases, key: str, token: str) -> None:
        self._leases, self._key, self._token = leases, key, token

    def release(self) -> bool:
        """See :meth:`Lease.release`."""
        return self._leases.release(self._key, self._token)

    def extend(self, ttl: float) -> bool:
        """See :meth:`Lease.extend`."""
        return self._leases.extend(self._key, self._token, ttl)

    def handoff(self) -> None:
        """None: an in-process lease is released by its holder."""
        return None


class _AsyncMemoryLease:
    """The asyncio face of a held in-process lease (no I/O: each call runs inline)."""

    __slots__ = ("_lease",)

    def __init__(self, lease: Lease) -> None:
        self._lease = lease

    async def release(self) -> bool:
        """See :meth:`Lease.release`."""
        return self._lease.release()

    async def extend(self, ttl: float) -> bool:
        """See :meth:`Lease.extend`."""
        return self._lease.extend(ttl)

    def handoff(self) -> None:
        """None: an in-process lease is released by its holder."""
        return None


class AsyncMemoryLeases:
    """The asyncio face of :class:`MemoryLeases`: waits without blocking the event loop."""

    def __init__(self, sync: MemoryLeases) -> None:
        self.sync = sync

    async def acquire(self, name: LeaseName, ttl: float, seen: str | None = None,
                      watched: bool = False) -> AsyncLease | Busy:
        """See :meth:`MemoryLeases.acquire`."""
        got = self.sync.acquire(name, ttl)
        return got if isinstance(got, Busy) else _AsyncMemoryLease(got)

    async def repeat(self, release: Release) -> None:
        """See :meth:`MemoryLeases.repeat`."""
        self.sync.repeat(release)

    async def wait(self, name: LeaseName, busy: Busy, timeout: float) -> bool:
        """Wait on the holder's release future without ever cancelling it (others share it)."""
        return busy.released is not None and await await_woken(busy.released, timeout)

