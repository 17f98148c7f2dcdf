# GENERATED from _async/lease.py by tools/unasync.py: do not edit.
"""The lease flow, sync flavour: ``lock=True`` loads and ``cachedeco.lock`` acquisitions
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
    Lease,
    Leases,
    Run,
    Busy,
    LeaseName,
    deadline,
    lease_ttl,
)
from cachedeco.backends.near.store import Near
from cachedeco.core.entry import ENTRY, NO_VALUE
from cachedeco.errors import BackendError
from cachedeco.flows.bound import Bound, Call, ReadState, is_current
from cachedeco.runtime.guard import warn
from cachedeco.runtime.primitives import Background, keep_alive, sleep

__all__ = ["RELEASE_RETRY", "leased", "release_later", "take"]

RELEASE_RETRY: Final = 0.2  # seconds between two tries of a lost lease release


def take(leases: Leases, name: LeaseName, ttl: float,
               timeout: float | None) -> Lease | None:
    """Acquire a lease for ``ttl`` seconds, waiting at most ``timeout`` seconds (None: without
    limit, 0: one try) for its holder to release it or for it to expire; None if time ran out."""
    end = deadline(timeout)
    while True:
        got = leases.acquire(name, ttl)
        if not isinstance(got, Busy):
            return got
        left = end - time.monotonic()
        if left <= 0:
            return None
        leases.wait(name, got, got.cap(left))


def leased(b: Bound, call: Call, state: ReadState, run: Run) -> Any:
    """Run the load ``run`` under the entry's lease, or return the value another process
    loaded while this one waited."""
    if b.slot.stores_objects:
        return run()  # one process: in-process single-flight is the whole lock
    leases = b.slot.backend().leases()
    name = b.keyspace.lease(call.key)
    ttl = lease_ttl(b.lock_timeout)
    try:
        lease, value = obtain(b, call, state, leases=leases, name=name, ttl=ttl)
    except BACKEND_ERRORS as exc:
        b.guard.absorb(exc, key=call.key, function=b.name, action="take a lease")
        return run()
    if lease is not None:
        return hold(b, call, lease, ttl, run)
    return run() if value is NO_VALUE else value


def obtain(b: Bound, call: Call, state: ReadState, *, leases: Leases,
                 name: LeaseName, ttl: float) -> tuple[Lease | None, Any]:
    """The lease, or else the value that landed while waiting for it (NO_VALUE when
    ``lock_timeout`` ran out first).

    After a miss the first acquire also looks at the entry: a holder in another process may
    have stored and released between this caller's read and now (its waiters were woken
    before this caller came): that value is read, not loaded once more."""
    refreshing = state[0].startswith(ENTRY)
    got = leases.acquire(name, ttl, None if refreshing else state[0])
    if isinstance(got, Busy) and got.landed:
        value = servable(b, call)
        if value is not NO_VALUE:
            return None, value
        got = leases.acquire(name, ttl)  # it is gone, or not for this caller: load
    if not isinstance(got, Busy):
        return got, NO_VALUE
    if refreshing:  # refreshing a value that exists: another process is at it
        value = servable(b, call)
        if value is not NO_VALUE:
            return None, value
    b.stats.lock_waits += 1
    end = deadline(b.lock_timeout)
    while (left := end - time.monotonic()) > 0:
        if leases.wait(name, got, got.cap(left)):
            value = servable(b, call)
            if value is not NO_VALUE:
                return None, value
        got = leases.acquire(name, ttl)
        if not isinstance(got, Busy):
            return got, NO_VALUE
    return None, NO_VALUE


def servable(b: Bound, call: Call) -> Any:
    """The entry's value if a caller may be served it now (current, readable, and fresh or
    within ``stale_ttl``), else NO_VALUE: one read. A fresh value is kept near, as after any
    read (the next call of this process is then a near hit, not one more read)."""
    ticket = None if b.near is None else b.near.ticket()  # before the read, as in get_or_load
    entry, tokens = b.slot.backend().read(call.key, call.tag_keys)
    if entry is None or not is_current(entry, tokens):
        return NO_VALUE
    fresh = time.time() < entry.soft
    if not fresh and not b.policy.stale_ttl:
        return NO_VALUE
    value = b.decode(entry, call.key)
    if fresh and ticket is not None and b.near is not None and value is not NO_VALUE:
        b.near.install(ticket, call.key, Near(entry, tokens, call.tag_keys, value, b.near_owner))
    return value


def hold(b: Bound, call: Call, lease: Lease, ttl: float, run: Run) -> Any:
    """Run the load holding the lease: kept alive while it runs, released (waking the
    waiters) however it ends."""
    try:
        with keep_alive(lambda: lease.extend(ttl), ttl / 3,
                               lambda exc: fault(b, call, exc, "extend a lease")):
            return run()
    finally:
        try:
            if not lease.release():
                warn(f"lease:{b.keyspace.prefix}:{b.name}", "cachedeco: the lease on a load of "
                     "%s expired before the load finished; other processes may have run it too",
                     b.name)
        except BACKEND_ERRORS as exc:
            fault(b, call, exc, "release a lease")
            b.background.spawn(release_later, lease, ttl, b.background)


def release_later(lease: Lease, ttl: float, background: Background) -> None:
    """Send a release that could not reach the backend again, every ``RELEASE_RETRY``
    seconds, until it lands or the lease has expired anyway: a lease left in Redis (an AOF
    restart, a promoted replica) would keep the key's callers in other processes waiting
    until its expiry. Stops when the registry closes."""
    end = time.monotonic() + ttl
    while time.monotonic() < end and not background.closing:
        sleep(RELEASE_RETRY)
        try:
            lease.release()  # True, or False once it expired: done either way
        except BACKEND_ERRORS:
            continue
        return


def fault(b: Bound, call: Call, exc: BaseException, action: str) -> None:
    """Count and log a lease fault that must not fail the load (waiters fall back on the
    lease's expiry)."""
    with contextlib.suppress(BackendError):
        b.guard.absorb(exc, key=call.key, function=b.name, action=action)
