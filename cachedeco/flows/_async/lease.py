"""The lease flow, asyncio flavour: ``lock=True`` loads and ``cachedeco.lock`` acquisitions
(``_sync/lease.py`` is generated from this file).

With ``lock=True`` the caller that leads a load in its process takes the entry's lease in the
backend (``backend.leases()``) before running the function. The holder computes, stores
(conditionally, as every fill does) and releases, which wakes the waiters; a long load keeps
its lease alive meanwhile. A caller that finds the lease held blocks until the release (or the
lease's expiry: a dead holder is replaced), then re-reads the entry once and returns it; if no
value landed (the function raised, or its result is not cached) it goes back to the lease.
After ``lock_timeout`` it computes without the lease. A refresh of a value that exists (stale
or early) never waits: when another process holds the lease, it serves the entry as it is.
Backend faults while leasing are counted and the load runs without a lease (fail open).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Final

from cachedeco.backends.base import BACKEND_ERRORS
from cachedeco.backends.contracts.leases import (
    AsyncLease,
    AsyncLeases,
    AsyncRun,
    Busy,
    LeaseName,
    deadline,
    lease_ttl,
)
from cachedeco.backends.near.store import Ticket
from cachedeco.core.entry import ENTRY, NO_VALUE, Entry
from cachedeco.core.woken import await_woken
from cachedeco.errors import BackendError
from cachedeco.flows.bound import Bound, Call, ReadState, is_current, lease_apart
from cachedeco.runtime.guard import warn
from cachedeco.runtime.primitives import Background, akeep_alive, asleep
from cachedeco.runtime.recent import RecentChanges

__all__ = ["HELD_MS", "RELEASE_RETRY", "leased", "release_later", "release_noted", "take"]

RELEASE_RETRY: Final = 0.2  # seconds between two tries of a lost lease release
#: The longest (ms) a caller waits for the change stream to report a lease's release before
#: it tries the lease again: the holder's store or release wakes it sooner; a dead holder's
#: lease, which expires without a word, is then found gone.
HELD_MS: Final = 500


async def take(leases: AsyncLeases, name: LeaseName, ttl: float,
               timeout: float | None) -> AsyncLease | None:
    """Acquire a lease for ``ttl`` seconds, waiting at most ``timeout`` seconds (None: without
    limit, 0: one try) for its holder to release it or for it to expire; None if time ran out."""
    end = deadline(timeout)
    while True:
        got = await leases.acquire(name, ttl)
        if not isinstance(got, Busy):
            return got
        left = end - time.monotonic()
        if left <= 0:
            return None
        await leases.wait(name, got, got.cap(left))


async def release_noted(lease: AsyncLease, recent: RecentChanges, backend: str) -> bool:
    """Release ``lease`` (waking its waiters); False when it had expired. One that landed is
    noted with ``backend``'s recent changes: a failover may lose it, and recovery then sends
    it again by its token."""
    sent = lease.handoff()  # the lease and its token, as they are before the release
    if not await lease.release():
        return False
    recent.released(backend, sent)
    return True


async def leased(b: Bound, call: Call, state: ReadState, run: AsyncRun) -> Any:
    """Run the load ``run`` under the entry's lease, or return the value another process
    loaded while this one waited."""
    if b.slot.stores_objects:
        return await run()  # one process: in-process single-flight is the whole lock
    leases = b.slot.abackend().leases()
    name = b.keyspace.lease(call.key)
    ttl = lease_ttl(b.lock_timeout)
    try:
        lease, value = await obtain(b, call, state, leases=leases, name=name, ttl=ttl)
    except BACKEND_ERRORS as exc:
        b.guard.absorb(exc, key=call.key, function=b.name, action="take a lease")
        return await run()
    if lease is not None:
        return await hold(b, call, lease, ttl, run)
    return await run() if value is NO_VALUE else value


async def obtain(b: Bound, call: Call, state: ReadState, *, leases: AsyncLeases,
                 name: LeaseName, ttl: float) -> tuple[AsyncLease | None, Any]:
    """The lease, or else the value that landed while waiting for it (NO_VALUE when
    ``lock_timeout`` ran out first). A near-cached caller whose read already found the lease
    held (``call.held``) starts by waiting."""
    refreshing = state[0].startswith(ENTRY)
    seen = None if refreshing else state[0]
    ticket = None if refreshing or not call.held else call.read_at
    if ticket is not None:
        got: AsyncLease | Busy | None = Busy(None)
    else:
        got, ticket, value = await attempt(b, call, name, leases=leases, ttl=ttl, seen=seen,
                                           read_at=None if refreshing else call.read_at)
        if got is None:
            return None, value
    if not isinstance(got, Busy):
        return got, NO_VALUE
    if refreshing:  # refreshing a value that exists: another process is at it
        value = await servable(b, call)
        if value is not NO_VALUE:
            return None, value
    b.stats.lock_waits += 1
    end = deadline(b.lock_timeout)
    while (left := end - time.monotonic()) > 0:
        if await wait(b, call, name, leases=leases, timeout=got.cap(left), busy=got,
                      ticket=ticket):
            value, held = await reread(b, call, name, near=ticket is not None)
            if value is not NO_VALUE:
                return None, value
            if held is not None:  # woken by its taking or an extension: wait on
                ticket = held
                continue
        got, ticket, value = await attempt(b, call, name, leases=leases, ttl=ttl, seen=seen)
        if got is None:
            return None, value
        if not isinstance(got, Busy):
            return got, NO_VALUE
    return None, NO_VALUE


async def attempt(b: Bound, call: Call, name: LeaseName, *, leases: AsyncLeases, ttl: float,
                  seen: str | None, read_at: Ticket | None = None,
                  ) -> tuple[AsyncLease | Busy | None, Ticket | None, Any]:
    """One try at the lease: it, or Busy, with the near ticket taken before the try; or None
    and the value that landed. With ``seen`` (the marker a miss read), the try also looks at
    the entry: a holder in another process may have stored and released since that read
    (its waiters woken before this caller came): that value is read, not loaded once more.
    A near-cached caller whose miss read's ticket (``read_at``) shows the entry changed
    since reads it at once (a busy process may come to its lease late); one that shows the
    lease changed since (another process took it) waits without asking. Shown unchanged,
    the try still looks: the report of a store may come later than the store's release."""
    near = b.near
    ticket = None if near is None else near.ticket()  # before the try: see wait()
    if read_at is not None and ticket is not None and near is not None:
        if not near.unchanged(read_at, call.key, ()):
            value = await servable(b, call)
            if value is not NO_VALUE:
                return None, None, value
            ticket = near.ticket()
        elif not near.unchanged(read_at, name.key, ()):
            return Busy(None), ticket, NO_VALUE  # taken since the read: wait, do not ask
    got = await leases.acquire(name, ttl, seen, watched=ticket is not None)
    if isinstance(got, Busy) and got.landed:
        value = await servable(b, call)
        if value is not NO_VALUE:
            return None, None, value
        ticket = None if b.near is None else b.near.ticket()
        # it is gone, or not for this caller: load
        got = await leases.acquire(name, ttl, watched=ticket is not None)
    return got, ticket, NO_VALUE


async def wait(b: Bound, call: Call, name: LeaseName, *, leases: AsyncLeases, timeout: float,
               busy: Busy, ticket: Ticket | None) -> bool:
    """Wait at most ``timeout`` seconds for the lease's holder to release it; True when woken
    (the entry is read then), False when the time ran out (the lease is asked again).

    A near-cached caller whose ``ticket`` (taken before the read or acquire that found the
    lease held) is valid waits for the change stream to name the entry or the lease: the
    holder's store and release are changes Redis reports to every process anyway, so the
    wait sends no command, holds no connection, and needs no push to the wake list. (The
    report of the holder's taking the lease may come after the ticket, and each extension
    is reported too: :func:`reread` then sees the lease still held and waits again.) Anyone
    else blocks on the wake list (``leases.wait``)."""
    near = b.near
    if near is None or ticket is None:
        return await leases.wait(name, busy, timeout)
    names = (call.key, name.key)
    woken = near.watch(names)
    try:  # watching before looking: a change applied after the look wakes the watch
        if not near.unchanged(ticket, call.key, (name.key,)):
            return True  # changed since the ticket (or the stream was lost): read now
        # a dead holder's lease expires without a word: ask again now and then
        return await await_woken(woken, min(timeout, HELD_MS / 1000))
    finally:
        near.unwatch(names, woken)


async def servable(b: Bound, call: Call) -> Any:
    """The entry's value if a caller may be served it now (current, readable, and fresh or
    within ``stale_ttl``), else NO_VALUE: one read. A fresh value is kept near, as after any
    read (the next call of this process is then a near hit, not one more read)."""
    ticket = None if b.near is None else b.near.ticket()  # before the read, as in get_or_load
    entry, tokens = await b.slot.abackend().read(call.key, call.tag_keys)
    return serve(b, call, entry, tokens, ticket)


async def reread(b: Bound, call: Call, name: LeaseName, *, near: bool
                 ) -> tuple[Any, Ticket | None]:
    """After a wake: :func:`servable`, and for a near-cached waiter on one server, with the
    lease read along, the ticket taken before that read when the lease is still held (the
    caller waits again from it instead of asking for the lease)."""
    if not near or not b.lease_read or b.near is None:
        return await servable(b, call), None
    ticket = b.near.ticket()
    result = await b.slot.abackend().read(call.key, (*call.tag_keys, name.key))
    (entry, tokens), held = lease_apart(b, result)
    value = serve(b, call, entry, tokens, ticket)
    return value, (ticket if held and value is NO_VALUE else None)


def serve(b: Bound, call: Call, entry: Entry | None, tokens: tuple[str | None, ...],
          ticket: Ticket | None) -> Any:
    """:func:`servable`'s verdict on what a read returned (kept near when fresh); an entry
    auto-recovery holds back now (a change pending, a Sentinel move) is not served."""
    if entry is None or not is_current(entry, tokens) or (
            b.recovery.pending and b.held(call.key, call.tag_keys)):
        return NO_VALUE
    fresh = time.time() < entry.soft
    if not fresh and not b.policy.stale_ttl:
        return NO_VALUE
    value = b.decode(entry, call.key)
    if fresh and ticket is not None and b.near is not None and value is not NO_VALUE:
        b.near.install(ticket, call.key, b.near_value(entry, tokens, call.tag_keys, value))
    return value


async def hold(b: Bound, call: Call, lease: AsyncLease, ttl: float, run: AsyncRun) -> Any:
    """Run the load holding the lease: kept alive while it runs, released (waking the
    waiters) however it ends: by the store itself where the backend can (``call.release``),
    else here. A release that landed is noted with the recent changes: a failover may lose
    it, and recovery then sends it again."""
    call.release = lease.handoff()
    try:
        async with akeep_alive(lambda: lease.extend(ttl), ttl / 3,
                               lambda exc: fault(b, call, exc, "extend a lease")):
            return await run()
    finally:
        fused, call.release = call.release, None
        # a store sent with the release whose reply was lost (a timeout, a cancel) may have
        # released the lease already: finding it gone is then no sign that it expired
        unknown = fused is not None and fused.sent and fused.done is None
        try:
            if fused is not None and fused.done is not None:
                released = fused.done
            else:
                released = await lease.release()
            if released:
                b.recovery.recent.released(b.slot.name, fused)
            elif not unknown:
                warn(f"lease:{b.keyspace.prefix}:{b.name}", "the lease on a load of %s "
                     "expired before the load finished; other processes may have run it too",
                     b.name, prefix=b.keyspace.prefix)
        except BACKEND_ERRORS as exc:
            fault(b, call, exc, "release a lease")
            b.background.aspawn(release_later, lease, ttl, b.background)
        except BaseException:  # cancelled (a second time) while releasing: sent again later
            b.background.aspawn(release_later, lease, ttl, b.background)
            raise


async def release_later(lease: AsyncLease, ttl: float, background: Background) -> None:
    """Send a release that could not reach the backend again, every ``RELEASE_RETRY``
    seconds, until it lands or the lease has expired anyway: a lease left in Redis (an AOF
    restart, a promoted replica) would keep the key's callers in other processes waiting
    until its expiry. Stops when the registry closes."""
    end, closes = time.monotonic() + ttl, background.closes
    while time.monotonic() < end and background.closes == closes:
        await asleep(RELEASE_RETRY)
        try:
            await lease.release()  # True, or False once it expired: done either way
        except BACKEND_ERRORS:
            continue
        return


def fault(b: Bound, call: Call, exc: BaseException, action: str) -> None:
    """Count and log a lease fault that must not fail the load (waiters fall back on the
    lease's expiry)."""
    with contextlib.suppress(BackendError):
        b.guard.absorb(exc, key=call.key, function=b.name, action=action)
