# GENERATED from _async/read.py by tools/unasync.py: do not edit.
"""The read-through and write flows, sync flavour: only the I/O lives here (the pure steps
are :class:`~cachedeco.flows.bound.Bound`'s); ``_sync/read.py`` is generated from it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cachedeco.backends.base import BACKEND_ERRORS, ReadResult
from cachedeco.backends.near.store import Ticket
from cachedeco.core.entry import CORRUPT, NO_VALUE, Write
from cachedeco.flows._sync.lease import leased
from cachedeco.flows.bound import UNCACHED, Bound, Call, ReadState, is_current, lease_apart
from cachedeco.runtime.changes import DROP
from cachedeco.runtime.guard import warn
from cachedeco.runtime.primitives import join_flight
from cachedeco.runtime.singleflight import Flight, LeaderGone, WaitTimeout

__all__ = ["compute", "get_or_load", "store", "timed"]

Args = tuple[Any, ...]
Kwargs = dict[str, Any]


def get_or_load(b: Bound, func: Callable[..., Any], args: Args, kwargs: Kwargs,
                      looked: bool = False) -> Any:
    """The decorated call: a hit returns after one read; anything else goes through a load.
    ``looked``: a compiled hit (:mod:`cachedeco.flows.hot`) just found no fresh value near."""
    if not b.enabled:  # caching is switched off: the function and nothing else
        return func(*args, **kwargs)
    key = b.key(args, kwargs)
    near, ticket = b.near, None
    if near is not None:  # a near hit: no round trip
        kept = None if looked else (near.owned(key, b.near_owner) if b.near_owner is not None
                                    else near.hit(key, b.tags(args, kwargs), b.near_reader))
        if kept is not None:
            b.stats.hits += 1
            b.stats.near_hits += 1
            if b.policy.beta and b.policy.refresh_early(time.time(), kept.entry.soft,
                                                        kept.entry.delta):
                b.stats.early_refreshes += background(
                    b, Call(func, args, kwargs, key, kept.tag_keys),
                    (kept.entry.marker, kept.tokens), b.flights.landings)
            return kept.value
        if near.admits(key):  # else read like any other, nothing to install
            ticket = near.ticket()  # before the read: a change reported meanwhile refuses it
        tag_keys = b.tags(args, kwargs)
        if ticket is not None and (flight := b.flights.airborne(key)) is not None and (
                flight.ticket is not None and near.unchanged(flight.ticket, key, tag_keys)):
            value = ride(b, flight)
            if value is not NO_VALUE:
                return value
    else:
        tag_keys = b.tags(args, kwargs)
    since = b.flights.landings
    if not b.guard.allow(key, b.name) or (
            b.recovery.pending and b.held(key, tag_keys)):
        return load(b, Call(func, args, kwargs, key, tag_keys), UNCACHED, since)
    try:
        # near-cached: the same read under way in the process may serve this call too
        ((entry, tokens), held), ticket = (((b.slot.backend().read(key, tag_keys),
                                              False), None) if ticket is None else
                                            near_read(b, key, tag_keys, ticket))
    except BACKEND_ERRORS as exc:
        b.guard.absorb(exc, key=key, function=b.name, action="read")
        return load(b, Call(func, args, kwargs, key, tag_keys), UNCACHED, since)
    b.guard.breaker.success()
    if b.recovery.pending and b.held(key, tag_keys):
        # held while the read was under way (a Sentinel move, say: redis-py may have sent it
        # again to the new primary): what it found may be what the change undoes
        return load(b, Call(func, args, kwargs, key, tag_keys), UNCACHED, since)
    if entry is not None and entry.tags == tokens and entry.value is not NO_VALUE:
        value = entry.value if b.codec is None else b.decode(entry, key)
        if value is not NO_VALUE:
            now = time.time()
            if now < entry.soft:
                b.stats.hits += 1
                if ticket is not None and near is not None:
                    near.install(ticket, key, b.near_value(entry, tokens, tag_keys, value))
                if b.policy.beta and b.policy.refresh_early(now, entry.soft, entry.delta):
                    b.stats.early_refreshes += background(
                        b, Call(func, args, kwargs, key, tag_keys), (entry.marker, tokens), since)
                return value
            if b.policy.stale_ttl:
                b.stats.stale_hits += 1
                background(b, Call(func, args, kwargs, key, tag_keys), (entry.marker, tokens),
                           since)
                return value
    elif entry is None and b.aliases is not None:
        value = older(b, args, kwargs, tag_keys)
        if value is not NO_VALUE:
            b.stats.hits += 1
            return value
    b.stats.misses += 1
    if entry is not None and entry.marker == CORRUPT:
        b.corrupt()
    state = ("" if entry is None else entry.marker, tokens)
    call = Call(func, args, kwargs, key, tag_keys, ticket, held)
    return load(b, call, state, since, ticket)


def near_read(b: Bound, key: str, tag_keys: tuple[str, ...], ticket: Ticket,
                    ) -> tuple[tuple[ReadResult, bool], Ticket]:
    """Read ``key`` for a near-cached function, or wait for the same read already under way
    in this process while nothing it depends on is reported changed since that read's ticket
    (a read sent now would find what that one finds, but for a change still on its way: the
    reach window). Returns the reply, whether it found the entry's lease held (see
    ``Bound.lease_read``), and the ticket taken before the read that made it."""
    assert b.near is not None
    flights = b.flights
    read_keys = (*tag_keys, b.keyspace.lease(key).key) if b.lease_read else tag_keys
    read = flights.reading(key, read_keys)
    if read is not None and b.near.unchanged(read.ticket, key, tag_keys):
        try:
            return lease_apart(b, join_flight(read, b.lock_timeout)), read.ticket
        except (WaitTimeout, LeaderGone):
            pass  # that read's caller was cancelled or hangs: read here
    read = flights.read(key, ticket, read_keys)
    try:
        result = b.slot.backend().read(key, read_keys)
    except Exception as exc:
        flights.read_landed(key, read, exc=exc)
        raise
    except BaseException:
        flights.read_landed(key, read, exc=LeaderGone())
        raise
    flights.read_landed(key, read, result)
    return lease_apart(b, result), ticket


def ride(b: Bound, flight: Flight) -> Any:
    """Join a load of this process whose leader read the entry when nothing it depends on has
    been reported changed since (the near cache's stream says so): this caller's read would
    find the same miss, so it is not sent. NO_VALUE when the load was given up (read then)."""
    b.stats.singleflight_joins += 1  # as a joiner after a read counts it: when it joins
    try:
        value = join_flight(flight, b.lock_timeout)
    except (WaitTimeout, LeaderGone):
        return NO_VALUE  # given up: this caller reads after all, its hit or miss counted then
    except Exception:
        b.stats.misses += 1  # the load failed: its error is this caller's too
        raise
    b.stats.misses += 1
    return value


def older(b: Bound, args: Args, kwargs: Kwargs, tag_keys: tuple[str, ...]) -> Any:
    """After a key rotation, the fresh value a call's entry has under an older key, or
    NO_VALUE: one more read per older key, on a miss only, until the first key that holds
    anything (writes go to the current key and invalidations reach every key)."""
    assert b.aliases is not None
    for alias in b.aliases(args, kwargs):
        try:
            entry, tokens = b.slot.backend().read(alias, tag_keys)
        except BACKEND_ERRORS as exc:
            b.guard.absorb(exc, key=alias, function=b.name, action="read")
            return NO_VALUE
        if entry is not None:
            if is_current(entry, tokens) and time.time() < entry.soft:
                return b.decode(entry, alias)
            return NO_VALUE
    return NO_VALUE


def load(b: Bound, call: Call, state: ReadState, since: int,
               ticket: Ticket | None = None) -> Any:
    """Run the function once for every concurrent caller that read the same state (a load
    led after a near miss carries the ``ticket`` taken before its read: see :func:`ride`)."""
    flight, leader = b.flights.join(call.key, state, since, ticket)
    if not leader:
        b.stats.singleflight_joins += 1
        try:
            return join_flight(flight, b.lock_timeout)
        except LeaderGone:  # its caller was cancelled: the first of its waiters leads anew
            return load(b, call, state, since, ticket)
        except WaitTimeout:
            return compute(b, call, state)
    try:
        value = compute(b, call, state, flight)
    except Exception as exc:
        b.flights.land(call.key, flight, exc=exc)
        raise
    except BaseException:
        b.flights.land(call.key, flight, exc=LeaderGone())
        raise
    b.flights.land(call.key, flight, value)
    return value


def compute(b: Bound, call: Call, state: ReadState, flight: Flight | None = None
                  ) -> Any:
    """Call the function and store its result (conditionally on ``state``; not at all when
    UNCACHED; noting what it stored on ``flight``); with ``lock=True`` a fill runs under the
    entry's lease, so one process of all computes it."""

    def run() -> Any:
        value, delta = timed(b, call.func, call.args, call.kwargs)
        if state is UNCACHED:
            return value
        payload = b.encode(value, call.key)
        if payload is not NO_VALUE:
            write = b.write(payload, delta, call.tag_keys, state, b.policy.ttl_for(value),
                            release=call.release)
            if flight is not None:  # before the store: its entry may be read before it returns
                flight.stored = write.marker
            store(b, call, write)
        return value

    if b.lock and state is not UNCACHED:
        return leased(b, call, state, run)
    return run()


def timed(b: Bound, func: Callable[..., Any], args: Args, kwargs: Kwargs
                ) -> tuple[Any, float]:
    """One load: the function's value and the seconds it took, counted (and shown to the
    exporters that watch loads, if any)."""
    finish = None if b.watch is None else b.watch()
    start = time.perf_counter()
    try:
        value = func(*args, **kwargs)
    except BaseException as exc:
        if isinstance(exc, Exception):
            b.stats.load_errors += 1
        if finish is not None:
            finish(time.perf_counter() - start, exc)
        raise
    delta = time.perf_counter() - start
    b.stats.loads += 1
    if finish is not None:
        finish(delta, None)
    return value, delta


def store(b: Bound, call: Call, write: Write, *, fill: bool = True) -> bool | None:
    """Carry out a write: True when it landed, False when its condition no longer held,
    None when it failed (counted, logged or raised as the guard says; a refresh's old entry
    then dropped by auto-recovery)."""
    try:
        stored = b.slot.backend().write(call.key, write)
    except BACKEND_ERRORS as exc:
        if fill:  # the entry it read is as good as it was
            b.guard.absorb(exc, key=call.key, function=b.name, action="store")
            return None
        # a refresh that did not land: the old entry must go
        b.keep_drops([call.key], exc)
        b.guard.kept(exc, key=call.key, function=b.name, action="store")
        return None
    if not fill and stored:  # a refresh: a failover right after it must not lose it
        b.recovery.recent.note(b.slot.name, DROP, [call.key], b.policy.hard_ms)
    return stored


def background(b: Bound, call: Call, state: ReadState, since: int) -> bool:
    """Start a refresh of a stale (or early-expiring) entry unless one runs; True if it did."""
    if not b.flights.start_refresh(call.key, state):
        return False
    try:
        b.background.spawn(refresh_quietly, b, call, state, since)
    except RuntimeError:  # not started (the interpreter shuts down): the value read serves
        b.flights.refreshed(call.key)
        return False
    return True


def refresh_quietly(b: Bound, call: Call, state: ReadState, since: int) -> None:
    """A background refresh: on failure the stale value stays (fail-safe) and it is logged."""
    try:
        load(b, call, state, since)
    except Exception as exc:
        warn(f"refresh:{b.keyspace.prefix}:{b.name}", "background refresh of %s failed (%s); "
             "serving the stale value", b.name, b.describe(exc), prefix=b.keyspace.prefix)
    finally:
        b.flights.refreshed(call.key)
