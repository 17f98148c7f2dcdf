"""Leases on Redis (single server or Cluster), asyncio flavour.

redis-py's ``Lock`` does the token work (one object per acquisition, its token kept per
object, not per thread, so tasks can share a thread); two scripts replace its acquire and
release so that taking a lease empties its *wake list* and releasing one pushes a single
element onto it. Waiters block on ``BLMOVE wake wake RIGHT LEFT``, which hands the element
straight back, so every waiter wakes, and each block stays below the client's socket timeout.
The lease and its wake list share a hash tag, so both sit in one Redis Cluster slot.

A caller that learns of the release from a near cache's change stream (``watched``) does not
block and needs no remaining time: its acquire is a plain ``SET NX PX GET``, one command when
the lease is held. A held lease can also be handed to the load's store (``handoff``), which
releases it in the same script on one server.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, Final

import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.lock
import redis.exceptions
from redis.exceptions import LockError, LockNotOwnedError

from cachedeco.backends.contracts.leases import AsyncLease, Busy, LeaseName
from cachedeco.backends.redis.background import aschedule, asleep
from cachedeco.backends.redis.commands import (
    LANDED_REPLY,
    MIN_BLOCK,
    MOVING_ERRORS,
    MOVING_MS,
    MovingSlots,
    block_limit,
    busy,
    landed,
    slot_moving,
    wake_ms,
)
from cachedeco.backends.redis.scripts import LEASE_ACQUIRE, LEASE_RELEASE, LEASE_RELEASE_ALONE
from cachedeco.core.entry import Release

__all__ = ["AsyncRedisLeases"]

SWEEP_EVERY: Final = 0.2  # seconds between two releases of leases timed-out acquires took
#: How long a timed-out acquire's lease is still looked for once the server answers (its
#: script, queued on a frozen or slow server, runs about when the server answers again),
#: and at most after the timeout (a server that never answers again).
SETTLE_FOR, SETTLE_MAX = 1.0, 120.0
#: A lease, its wake list, its waiting mark, the token of an acquire that timed out, the
#: wake list's px.
Unsure = tuple[str, str, str, str | bytes, int]


class _AsyncWakingLock(redis.asyncio.lock.Lock):
    """redis-py's Lock whose acquire empties the wake list and whose release pushes to it."""

    def __init__(self, leases: AsyncRedisLeases, name: LeaseName, ttl: float,
                 seen: str | None = None, watched: bool = False) -> None:
        super().__init__(leases.client, name.key, timeout=ttl, blocking=False,
                         thread_local=False)
        self.leases = leases
        self.key = name.key
        self.wake = name.wake
        self.mark = name.mark
        self.px = int(ttl * 1000)
        self.wake_px = wake_ms(ttl)
        self.left: Any = None
        self.guarded = ([name.entry], [seen]) if seen is not None and name.entry else ([], [])
        self.watched = watched

    async def do_acquire(self, token: str | bytes) -> bool:
        """SET NX PX and empty the wake list, or note the holder's PTTL.

        Cut off from its reply, the acquire may have run: the lease would then be held by no
        one who knows it, and the key's callers in other processes would wait until it
        expires. So it is released with this token, once, on a fresh connection (a lease
        this call did not take is left alone), before the error goes on. One that timed out
        may still run on a slow or frozen server, and one whose caller was cancelled (its
        own timeout) may have run: released later (``_sweep``)."""
        try:
            return await self.take(token)
        except (redis.exceptions.ConnectionError, ConnectionError):
            with contextlib.suppress(LockNotOwnedError, redis.exceptions.RedisError, OSError):
                await self.do_release(token)
            raise
        except (redis.exceptions.TimeoutError, TimeoutError):
            self.unsure(token)
            raise
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled or interrupted: it may have run
                self.unsure(token)
            raise

    def unsure(self, token: str | bytes) -> None:
        """Have the lease this acquire may have taken released in the background."""
        self.leases.unsure[(str(self.name), self.wake, self.mark, token, self.wake_px)] = (
            time.monotonic(), None)
        self.leases.settle_soon()

    async def take(self, token: str | bytes) -> bool:
        """The acquire itself: the script, or plain commands for a watched caller.

        A Cluster whose slot moves refuses the script (TRYAGAIN, until redis-py gives up)
        while its keys are not all on one node, but serves each key alone: plain commands
        then, so the lease still keeps loads single. Such a lease's release may not wake
        its waiters (see ``release``): a caller that finds it held asks again within
        MOVING_MS, not at the end of its wait."""
        entry, seen = self.guarded
        if self.watched:
            return await self.plain_acquire(token)
        if not self.leases.moving.now(self.key):
            try:
                self.left = await self.leases.acquire_script(
                    keys=[self.name, self.wake, self.mark, *entry],
                    args=[token, self.px, *seen], client=self.redis)
                return self.left is None
            except MOVING_ERRORS as exc:
                if not slot_moving(exc):
                    raise
                self.leases.moving.seen(self.key)  # next tries: straight to plain commands
        if await self.plain_acquire(token):
            return True
        if self.left is None:  # held (not LANDED_REPLY)
            self.left = MOVING_MS
        return False

    async def plain_acquire(self, token: str | bytes) -> bool:
        """The acquire script's work in plain commands, for a caller that watches the change
        stream: ``SET NX PX GET`` (all a held lease costs: one command, no PTTL and no
        waiting mark, as such a caller does not block on the wake list); when taken with
        ``seen``, the entry looked at in one more. A value that landed since ``seen`` gives
        the lease straight back (LANDED_REPLY)."""
        holder = await self.leases.execute("SET", self.name, token, "NX", "PX", self.px, "GET")
        if holder is not None:
            self.left = None
            return False
        entry, seen = self.guarded
        if entry and landed(await self.leases.execute("GETRANGE", entry[0], 0, 19), seen[0]):
            with contextlib.suppress(LockNotOwnedError):
                await self.do_release(token)
            self.left = LANDED_REPLY
            return False
        return True

    async def do_release(self, expected_token: str | bytes) -> None:
        """Token-checked delete that wakes the waiters."""
        if not await self.leases.release(Release(str(self.name), self.wake, self.mark,
                                                 expected_token, self.wake_px)):
            raise LockNotOwnedError("Cannot release a lock that's no longer owned")


class _AsyncRedisLease:
    """A held Redis lease: one redis-py Lock."""

    __slots__ = ("_lock",)

    def __init__(self, lock: _AsyncWakingLock) -> None:
        self._lock = lock

    async def release(self) -> bool:
        """Token-checked release; False when the lease had expired.

        A release lost to a cut connection is sent once more (the pool hands out a fresh
        connection): else the lease's waiters would wait until it expires. If the first one
        did land (its reply was lost), the second finds the lease gone: released all the
        same. A timeout is not retried: the command may still reach a slow server. One
        whose caller was cancelled keeps its token: a later release() sends it again."""
        lock = self._lock
        token = lock.local.token
        try:
            await lock.release()
        except LockError:
            return False
        except (redis.exceptions.ConnectionError, ConnectionError):
            if token is None:
                raise
            lock.local.token = None
            try:
                with contextlib.suppress(LockNotOwnedError):
                    await lock.do_release(token)
            except BaseException:
                lock.local.token = token  # not released: a later release() sends it again
                raise
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled or interrupted: may not have run
                lock.local.token = token
            raise
        return True

    def handoff(self) -> Release | None:
        """The lease for a store to release in the same script (STORE_RELEASE)."""
        lock = self._lock
        token = lock.local.token
        if token is None:
            return None
        return Release(lock.key, lock.wake, lock.mark, token, lock.wake_px)

    async def extend(self, ttl: float) -> bool:
        """Token-checked PEXPIRE; False when the lease had expired."""
        try:
            return await self._lock.extend(ttl, replace_ttl=True)
        except LockError:
            return False


class AsyncRedisLeases:
    """Leases over a ``redis.asyncio`` client (single server or cluster)."""

    def __init__(self, client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster) -> None:
        self.client = client
        self.acquire_script = client.register_script(LEASE_ACQUIRE)
        self.release_script = client.register_script(LEASE_RELEASE)
        self.release_alone = client.register_script(LEASE_RELEASE_ALONE)
        self.block = block_limit(client)
        self.execute: Callable[..., Any] = client.execute_command
        #: Acquires that timed out: when, and when a release first found nothing (see _sweep).
        self.unsure: dict[Unsure, tuple[float, float | None]] = {}
        self._swept = 0.0
        self._settling = False
        self.moving = MovingSlots()  # leases to take by their key alone for now (``take``)

    async def acquire(self, name: LeaseName, ttl: float, seen: str | None = None,
                      watched: bool = False) -> AsyncLease | Busy:
        """One script: the lease, or the holder's remaining time, or (``seen``) the news that
        a value landed in the entry since it was read (``watched``: plain commands, see
        ``plain_acquire``)."""
        if self.unsure:
            await self._sweep()
        lock = _AsyncWakingLock(self, name, ttl, seen, watched)
        if await lock.acquire(blocking=False):
            return _AsyncRedisLease(lock)
        return busy(lock.left)

    async def repeat(self, release: Release) -> None:
        """The token-checked release script again (see the contract's ``repeat``)."""
        await self.release(release)

    async def release(self, release: Release) -> bool:
        """The token-checked release that wakes the waiters (False: not held with that
        token). A Cluster whose slot moves refuses it (TRYAGAIN, until redis-py gives up):
        the lease alone is released then, else it would be held until it expires, and its
        key's callers in every process would wait as long (up to ``lock_timeout``)."""
        try:
            return bool(await self.release_script(
                keys=[release.lease, release.wake, release.mark],
                args=[release.token, release.wake_px]))
        except MOVING_ERRORS as exc:
            if not slot_moving(exc):
                raise
            return bool(await self.release_alone(keys=[release.lease], args=[release.token]))

    def settle_soon(self) -> None:
        """Have :meth:`_sweep` run in the background until no timed-out acquire is left: this
        process may make no acquire for seconds (its circuit breaker skipping Redis after an
        outage, say) while other processes wait for the lease."""
        if not self._settling:
            self._settling = True
            aschedule(self._settle)

    async def _settle(self) -> None:
        try:
            while self.unsure:
                await asleep(SWEEP_EVERY)
                await self._sweep()
        finally:
            self._settling = False

    async def _sweep(self) -> None:
        """Release, with their tokens, the leases that acquires which timed out may have
        taken when the server ran them late (a frozen server runs them as it wakes): else
        nobody would release them, and the keys' callers in other processes would wait until
        they expire. In the background and before an acquire, at most every SWEEP_EVERY
        seconds, until one is released, or SETTLE_FOR seconds after a release first found
        nothing (the script may not have run yet: the lease's TTL counts from when it runs)."""
        now = time.monotonic()
        if now < self._swept + SWEEP_EVERY:
            return
        self._swept = now
        for unsure, (since, answered) in list(self.unsure.items()):
            key, wake, mark, token, wake_px = unsure
            if now - since < SETTLE_MAX and (answered is None or now - answered < SETTLE_FOR):
                try:
                    if not await self.release(Release(key, wake, mark, token, wake_px)):
                        if answered is None:
                            self.unsure[unsure] = (since, now)
                        continue
                except (redis.exceptions.RedisError, OSError):
                    return  # not answering yet: the next sweep tries again
            self.unsure.pop(unsure, None)

    async def wait(self, name: LeaseName, busy: Busy, timeout: float) -> bool:
        """One ``BLMOVE wake wake`` of at most ``timeout`` (and below the socket timeout)."""
        seconds = min(max(timeout, MIN_BLOCK), self.block)
        woke = await self.execute(
            "BLMOVE", name.wake, name.wake, "RIGHT", "LEFT", f"{seconds:.3f}")
        return woke is not None
