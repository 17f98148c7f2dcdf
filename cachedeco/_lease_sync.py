"""The sync lease flow.

GENERATED from ``_lease_async.py`` by ``python -m tools.unasync``: do not edit.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from cachedeco._entry import ENTRY, NO_VALUE
from cachedeco._flow import Bound, Call, ReadState, is_current
from cachedeco._guard import BACKEND_ERRORS, logger
from cachedeco.backends import leases as ops
from cachedeco.backends.leases import Busy, LeaseName, deadline, lease_name, lease_ttl
from cachedeco.errors import BackendError

__all__ = ["leased", "take"]


def take(leases: ops.Leases, name: LeaseName, ttl: float,
               timeout: float | None) -> ops.Lease | None:
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
        leases.wait(name, got, got.bound(left))


def leased(b: Bound, call: Call, state: ReadState, run: ops.Run) -> Any:
    """Run the load ``run`` under the entry's lease, or return the value another process
    loaded while this one waited."""
    if b.slot.stores_objects:
        return run()  # one process: in-process single-flight is the whole lock
    leases = ops.leases_of(b.slot.backend())
    if leases is None:
        return run()  # a backend without leases: as on memory://
    name = lease_name(b.registry.internal_key, "lease", call.key)
    ttl = lease_ttl(b.lock_timeout)
    try:
        lease, value = obtain(b, call, state, leases=leases, name=name, ttl=ttl)
    except BACKEND_ERRORS as exc:
        b.guard.failed(exc, key=call.key, function=b.name, action="take a lease")
        return run()
    if lease is not None:
        return hold(b, call, lease, ttl, run)
    return run() if value is NO_VALUE else value


def obtain(b: Bound, call: Call, state: ReadState, *, leases: ops.Leases,
                 name: LeaseName, ttl: float) -> tuple[ops.Lease | None, Any]:
    """The lease, or else the value that landed while waiting for it (NO_VALUE when
    ``lock_timeout`` ran out first)."""
    got = leases.acquire(name, ttl)
    if not isinstance(got, Busy):
        return got, NO_VALUE
    if state[0].startswith(ENTRY):  # refreshing a value that exists: another process is at it
        value = servable(b, call)
        if value is not NO_VALUE:
            return None, value
    b.stats.lock_waits += 1
    end = deadline(b.lock_timeout)
    while (left := end - time.monotonic()) > 0:
        if leases.wait(name, got, got.bound(left)):
            value = servable(b, call)
            if value is not NO_VALUE:
                return None, value
        got = leases.acquire(name, ttl)
        if not isinstance(got, Busy):
            return got, NO_VALUE
    return None, NO_VALUE


def servable(b: Bound, call: Call) -> Any:
    """The entry's value if a caller may be served it now (current, readable, and fresh or
    within ``stale_ttl``), else NO_VALUE: one read."""
    entry, tokens = b.slot.backend().read(call.key, call.tag_keys)
    if entry is None or not is_current(entry, tokens):
        return NO_VALUE
    if time.time() >= entry.soft and not b.policy.stale_ttl:
        return NO_VALUE
    return b.decode(entry)


def hold(b: Bound, call: Call, lease: ops.Lease, ttl: float, run: ops.Run) -> Any:
    """Run the load holding the lease: kept alive while it runs, released (waking the
    waiters) however it ends."""
    keeper = ops.keep_alive(lease, ttl, lambda exc: fault(b, call, exc, "extend a lease"))
    try:
        return run()
    finally:
        keeper.stop()
        try:
            if not lease.release():
                logger.warning("cachedeco: the lease on a load of %s expired before the load "
                               "finished; other processes may have run it too", b.name)
        except BACKEND_ERRORS as exc:
            fault(b, call, exc, "release a lease")


def fault(b: Bound, call: Call, exc: BaseException, action: str) -> None:
    """Count and log a lease fault that must not fail the load (waiters fall back on the
    lease's expiry)."""
    with contextlib.suppress(BackendError):
        b.guard.failed(exc, key=call.key, function=b.name, action=action)
