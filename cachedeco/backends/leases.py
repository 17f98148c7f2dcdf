"""Leases: the lock contract a backend may offer beside the cache core (DESIGN.md rule 2).

A lease is a key holding a random token with a TTL. ``acquire`` takes it (SET NX PX) or says
who is in the way and for how long; ``wait`` blocks until a holder releases, without polling;
only the token's owner ``release``\\s or ``extend``\\s it. ``lock=True`` (``_lease_async.py``)
and ``cachedeco.lock`` (``_lock.py``) are written once over this contract.

On Redis, redis-py's ``Lock`` does the token work (one object per acquisition, its token kept
per object, not per thread, so tasks can share a thread); two scripts replace its acquire and
release so that taking a lease empties its *wake list* and releasing one pushes a single
element onto it. Waiters block on ``BLMOVE wake wake RIGHT LEFT``, which hands the element
straight back, so every waiter wakes, and each block stays below the client's socket timeout.
The lease and its wake list share a hash tag, so both sit in one Redis Cluster slot (for a
cache entry, the entry's own slot). On ``memory://`` leases live in the process, with the
same TTL and owner rules.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import math
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.lock
import redis.cluster
import redis.lock
from redis.exceptions import LockError, LockNotOwnedError

from cachedeco._guard import BACKEND_ERRORS
from cachedeco.backends._scripts import LEASE_ACQUIRE, LEASE_RELEASE
from cachedeco.backends.memory import AsyncMemoryBackend, MemoryBackend

__all__ = [
    "AsyncLease",
    "AsyncLeases",
    "AsyncRun",
    "Busy",
    "Keeper",
    "Lease",
    "LeaseName",
    "Leases",
    "Run",
    "akeep_alive",
    "aleases_of",
    "deadline",
    "keep_alive",
    "lease_name",
    "lease_ttl",
    "leases_of",
]

MIN_BLOCK: Final = 0.01  # seconds: BLMOVE's 0 means "for ever", so never ask for less
MAX_BLOCK: Final = 5.0  # seconds: the longest single block, whatever the socket timeout
WAKE_MS: Final = (1000, 10_000)  # bounds of the wake list's TTL

Run = Callable[[], Any]  # a load to run while holding a lease
AsyncRun = Callable[[], Awaitable[Any]]
ErrorHook = Callable[[BaseException], None]
_T = TypeVar("_T")


# -- names and timing (pure) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseName:
    """The keys of one lease: the key holding the token and the list its release pushes."""

    key: str
    wake: str


def hash_tagged(name: str) -> str:
    """``name`` with a Redis Cluster hash tag, so keys built around it share one slot; distinct
    names give distinct results.

    A name without braces is wrapped whole (``{name}`` hashes like ``name``, so the lease of an
    entry key lands in the entry's slot); one with a tag keeps it, behind ``=``; any other (a
    ``}`` but no tag) is replaced by its digest, behind ``#``.
    """
    start = name.find("{")
    if start >= 0 and name.find("}", start + 1) > start + 1:
        return "=" + name
    if "}" not in name:
        return "{" + name + "}"
    return "#{" + hashlib.blake2b(name.encode(), digest_size=16).hexdigest() + "}"


def lease_name(internal_key: Callable[[str, str], str], kind: str, name: str) -> LeaseName:
    """The lease ``KIND`` of ``name`` and its wake list ``KINDwake``, as keys of cachedeco's
    own (``internal_key(family, rest)``, e.g. ``prefix:~lease:{name}``), both hash-tagged."""
    tagged = hash_tagged(name)
    return LeaseName(internal_key(kind, tagged), internal_key(kind + "wake", tagged))


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

    def bound(self, left: float) -> float:
        """How long to wait: ``left`` seconds, or until the lease expires if that is sooner."""
        return left if self.ms is None else min(left, self.ms / 1000 + 0.002)


# -- the contract ---------------------------------------------------------------------------


class Lease(Protocol):
    """A lease this owner holds."""

    def release(self) -> bool:
        """Release it and wake its waiters; False when it was no longer ours (expired)."""
        ...

    def extend(self, ttl: float) -> bool:
        """Make it live ``ttl`` more seconds from now; False when it is no longer ours."""
        ...


class AsyncLease(Protocol):
    """The asyncio twin of :class:`Lease`."""

    async def release(self) -> bool:
        """See :meth:`Lease.release`."""
        ...

    async def extend(self, ttl: float) -> bool:
        """See :meth:`Lease.extend`."""
        ...


class Leases(Protocol):
    """The lease operations of one backend."""

    def acquire(self, name: LeaseName, ttl: float) -> Lease | Busy:
        """Take the lease for ``ttl`` seconds without waiting, or say how long it stays held."""
        ...

    def wait(self, name: LeaseName, busy: Busy, timeout: float) -> bool:
        """Block until the lease is released (True) or about ``timeout`` seconds pass (False)."""
        ...


class AsyncLeases(Protocol):
    """The asyncio twin of :class:`Leases`."""

    async def acquire(self, name: LeaseName, ttl: float) -> AsyncLease | Busy:
        """See :meth:`Leases.acquire`."""
        ...

    async def wait(self, name: LeaseName, busy: Busy, timeout: float) -> bool:
        """See :meth:`Leases.wait`."""
        ...


class Keeper(Protocol):
    """What keeps a lease alive while its holder computes."""

    def stop(self) -> None:
        """Stop extending (the holder releases right after)."""
        ...


# -- Redis ----------------------------------------------------------------------------------


def _block_limit(client: Any) -> float:
    """The longest one blocking call may last: under the client's socket timeout, so a wait
    is never mistaken for a dead connection."""
    pool = getattr(client, "connection_pool", None) or getattr(client, "nodes_manager", None)
    timeout = getattr(pool, "connection_kwargs", {}).get("socket_timeout")
    if not timeout:
        return MAX_BLOCK
    return min(max(float(timeout) * 0.75, MIN_BLOCK), MAX_BLOCK)


def _wake_ms(ttl: float) -> int:
    """The wake list's TTL: long enough for a waiter between a failed acquire and its block."""
    return min(max(int(ttl * 1000), WAKE_MS[0]), WAKE_MS[1])


def _busy(left: Any) -> Busy:
    """A Busy from the acquire script's reply (the holder's PTTL)."""
    ms = int(left)
    return Busy(ms if ms >= 0 else None)


class _WakingLock(redis.lock.Lock):
    """redis-py's Lock whose acquire empties the wake list and whose release pushes to it."""

    def __init__(self, leases: RedisLeases, name: LeaseName, ttl: float) -> None:
        super().__init__(leases.client, name.key, timeout=ttl, blocking=False,
                         thread_local=False)
        self.leases = leases
        self.wake = name.wake
        self.px = int(ttl * 1000)
        self.wake_px = _wake_ms(ttl)
        self.left: Any = None

    def do_acquire(self, token: str) -> bool:
        """SET NX PX and empty the wake list, or note the holder's PTTL."""
        self.left = self.leases.acquire_script(
            keys=[self.name, self.wake], args=[token, self.px],
            client=self.redis)
        return self.left is None

    def do_release(self, expected_token: str) -> None:
        """Token-checked delete that wakes the waiters."""
        if not self.leases.release_script(keys=[self.name, self.wake],
                                          args=[expected_token, self.wake_px],
                                          client=self.redis):
            raise LockNotOwnedError("Cannot release a lock that's no longer owned",
                                    lock_name=self.name)


class _AsyncWakingLock(redis.asyncio.lock.Lock):
    """The asyncio twin of :class:`_WakingLock`."""

    def __init__(self, leases: AsyncRedisLeases, name: LeaseName, ttl: float) -> None:
        super().__init__(leases.client, name.key, timeout=ttl, blocking=False,
                         thread_local=False)
        self.leases = leases
        self.wake = name.wake
        self.px = int(ttl * 1000)
        self.wake_px = _wake_ms(ttl)
        self.left: Any = None

    async def do_acquire(self, token: str | bytes) -> bool:
        """See :meth:`_WakingLock.do_acquire`."""
        self.left = await self.leases.acquire_script(
            keys=[self.name, self.wake], args=[token, self.px],
            client=self.redis)
        return self.left is None

    async def do_release(self, expected_token: bytes) -> None:
        """See :meth:`_WakingLock.do_release`."""
        if not await self.leases.release_script(keys=[self.name, self.wake],
                                                args=[expected_token, self.wake_px],
                                                client=self.redis):
            raise LockNotOwnedError("Cannot release a lock that's no longer owned")


class _RedisLease:
    """A held Redis lease: one redis-py Lock."""

    __slots__ = ("_lock",)

    def __init__(self, lock: _WakingLock) -> None:
        self._lock = lock

    def release(self) -> bool:
        """Token-checked release; False when the lease had expired."""
        try:
            self._lock.release()
        except LockError:
            return False
        return True

    def extend(self, ttl: float) -> bool:
        """Token-checked PEXPIRE; False when the lease had expired."""
        try:
            return self._lock.extend(ttl, replace_ttl=True)
        except LockError:
            return False


class _AsyncRedisLease:
    """The asyncio twin of :class:`_RedisLease`."""

    __slots__ = ("_lock",)

    def __init__(self, lock: _AsyncWakingLock) -> None:
        self._lock = lock

    async def release(self) -> bool:
        """See :meth:`_RedisLease.release`."""
        try:
            await self._lock.release()
        except LockError:
            return False
        return True

    async def extend(self, ttl: float) -> bool:
        """See :meth:`_RedisLease.extend`."""
        try:
            return await self._lock.extend(ttl, replace_ttl=True)
        except LockError:
            return False


class RedisLeases:
    """Leases over a synchronous redis-py client (single server or cluster)."""

    def __init__(self, client: redis.Redis | redis.cluster.RedisCluster) -> None:
        self.client = client
        self.acquire_script = client.register_script(LEASE_ACQUIRE)
        self.release_script = client.register_script(LEASE_RELEASE)
        self.block = _block_limit(client)
        self._execute: Callable[..., Any] = client.execute_command

    def acquire(self, name: LeaseName, ttl: float) -> Lease | Busy:
        """One script: the lease, or the holder's remaining time."""
        lock = _WakingLock(self, name, ttl)
        if lock.acquire(blocking=False):
            return _RedisLease(lock)
        return _busy(lock.left)

    def wait(self, name: LeaseName, busy: Busy, timeout: float) -> bool:
        """One ``BLMOVE wake wake`` of at most ``timeout`` (and below the socket timeout)."""
        seconds = min(max(timeout, MIN_BLOCK), self.block)
        return self._execute(
            "BLMOVE", name.wake, name.wake, "RIGHT", "LEFT", f"{seconds:.3f}") is not None


class AsyncRedisLeases:
    """Leases over a ``redis.asyncio`` client; see :class:`RedisLeases`."""

    def __init__(self, client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster) -> None:
        self.client = client
        self.acquire_script = client.register_script(LEASE_ACQUIRE)
        self.release_script = client.register_script(LEASE_RELEASE)
        self.block = _block_limit(client)
        self._execute: Callable[..., Awaitable[Any]] = client.execute_command

    async def acquire(self, name: LeaseName, ttl: float) -> AsyncLease | Busy:
        """See :meth:`RedisLeases.acquire`."""
        lock = _AsyncWakingLock(self, name, ttl)
        if await lock.acquire(blocking=False):
            return _AsyncRedisLease(lock)
        return _busy(lock.left)

    async def wait(self, name: LeaseName, busy: Busy, timeout: float) -> bool:
        """See :meth:`RedisLeases.wait`."""
        seconds = min(max(timeout, MIN_BLOCK), self.block)
        woke = await self._execute(
            "BLMOVE", name.wake, name.wake, "RIGHT", "LEFT", f"{seconds:.3f}")
        return woke is not None


# -- lookup ---------------------------------------------------------------------------------

_sync_made: weakref.WeakKeyDictionary[Any, Leases] = weakref.WeakKeyDictionary()
_async_made: weakref.WeakKeyDictionary[Any, AsyncLeases] = weakref.WeakKeyDictionary()
_made_lock = threading.RLock()  # the asyncio memory leases are made from the sync ones


def _once(table: weakref.WeakKeyDictionary[Any, _T], backend: object,
          make: Callable[[], _T | None]) -> _T | None:
    """``make()`` for ``backend``, remembered while the backend lives."""
    try:
        found = table.get(backend)
    except TypeError:  # not weakly referenceable: nothing to remember it by
        return make()
    if found is not None:
        return found
    with _made_lock:
        found = table.get(backend)
        if found is None:
            found = make()
            if found is not None:
                table[backend] = found
    return found


def _sync_leases(backend: object) -> Leases | None:
    from cachedeco.backends.leases_memory import MemoryLeases

    if isinstance(backend, MemoryBackend):
        return MemoryLeases()
    client = getattr(backend, "client", None)
    if isinstance(client, redis.Redis | redis.cluster.RedisCluster):
        return RedisLeases(client)
    return None


def _async_leases(backend: object) -> AsyncLeases | None:
    from cachedeco.backends.leases_memory import AsyncMemoryLeases, MemoryLeases

    if isinstance(backend, AsyncMemoryBackend):
        sync = leases_of(backend.sync)
        return AsyncMemoryLeases(sync) if isinstance(sync, MemoryLeases) else None
    client = getattr(backend, "client", None)
    if isinstance(client, redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster):
        return AsyncRedisLeases(client)
    return None


def leases_of(backend: object) -> Leases | None:
    """The leases of a sync backend (one set per backend object), None if it offers none."""
    return _once(_sync_made, backend, lambda: _sync_leases(backend))


def aleases_of(backend: object) -> AsyncLeases | None:
    """The leases of an asyncio backend, None if it offers none."""
    return _once(_async_made, backend, lambda: _async_leases(backend))


# -- keeping a lease alive ------------------------------------------------------------------


class _ThreadKeeper:
    """Extends a lease every third of its TTL from a daemon thread until stopped."""

    def __init__(self, lease: Lease, ttl: float, on_error: ErrorHook) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(lease, ttl, on_error),
                                        name="cachedeco-lease", daemon=True)
        self._thread.start()

    def _run(self, lease: Lease, ttl: float, on_error: ErrorHook) -> None:
        while not self._stop.wait(ttl / 3):
            try:
                if not lease.extend(ttl):
                    return  # lost: the holder finds out when it releases
            except BACKEND_ERRORS as exc:
                on_error(exc)

    def stop(self) -> None:
        """See :meth:`Keeper.stop`."""
        self._stop.set()


class _TaskKeeper:
    """Extends a lease every third of its TTL from a task until stopped."""

    def __init__(self, lease: AsyncLease, ttl: float, on_error: ErrorHook) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(lease, ttl, on_error))

    @staticmethod
    async def _run(lease: AsyncLease, ttl: float, on_error: ErrorHook) -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                if not await lease.extend(ttl):
                    return
            except BACKEND_ERRORS as exc:
                on_error(exc)

    def stop(self) -> None:
        """See :meth:`Keeper.stop`."""
        self._task.cancel()


def keep_alive(lease: Lease, ttl: float, on_error: ErrorHook) -> Keeper:
    """Keep a held lease alive (extended to ``ttl`` every ``ttl / 3`` s) until stopped."""
    return _ThreadKeeper(lease, ttl, on_error)


def akeep_alive(lease: AsyncLease, ttl: float, on_error: ErrorHook) -> Keeper:
    """The asyncio form of :func:`keep_alive`: a task on the running loop."""
    return _TaskKeeper(lease, ttl, on_error)

