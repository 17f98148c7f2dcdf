"""The ``@cached_many`` flow, asyncio flavour (``_sync/many.py`` is generated from it).

A call takes what the near cache holds, reads every other id's entry in one round trip
(``backend.read_many``), keeps what it found near, then calls the function once with the ids
that missed, stores each value it returned (conditionally on what was read, as every fill)
and returns a mapping for every id found or returned.
Single-flight and ``lock=True`` work per id: ids another caller is loading are waited for,
not loaded twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cachedeco.backends.base import BACKEND_ERRORS
from cachedeco.backends.contracts.leases import AsyncLease, Busy, lease_ttl
from cachedeco.core.entry import ENTRY, NO_VALUE
from cachedeco.flows._async.lease import fault, obtain, release_later, release_noted, servable
from cachedeco.flows._async.read import store, timed
from cachedeco.flows.bound import UNCACHED, Bound, ReadState
from cachedeco.flows.many import (
    ABSENT,
    Batch,
    ManyCall,
    found_and_missing,
    keep_near,
    near_found,
    returned,
)
from cachedeco.runtime.primitives import ajoin_flight, akeep_alive
from cachedeco.runtime.singleflight import Flight, LeaderGone, WaitTimeout

__all__ = ["get_many"]

Args = tuple[Any, ...]
Missing = dict[int, ReadState]  # index in the batch -> what its fill read


async def get_many(b: Bound, func: Callable[..., Any], head: Args, ids: Iterable[Any]) -> Any:
    """The decorated call: ``head`` is what comes before the ids (``self`` of a method)."""
    if not b.enabled:  # caching is switched off: the function and nothing else
        return await func(*head, list(ids))
    batch = Batch.of(b, ids)
    if not batch.ids:
        return {}
    since = b.flights.landings
    near, rest, ticket, admitted = near_found(b, batch)  # the ids kept near need no read
    if not rest.ids:
        return {i: near[i] for i in batch.ids}
    found: dict[Any, Any] = {}
    missing: Missing = dict.fromkeys(range(len(rest.ids)), UNCACHED)
    if b.guard.allow(rest.keys[0], b.name):
        try:
            results = await b.slot.abackend().read_many(rest.reads())
        except BACKEND_ERRORS as exc:
            b.guard.absorb(exc, key=rest.keys[0], function=b.name, action="read many")
        else:
            b.guard.breaker.success()
            found, missing = found_and_missing(b, rest, results)
            if b.recovery.pending:  # entries with a change pending are not served meanwhile
                for i, (key, tag_keys) in enumerate(rest.reads()):
                    if b.held(key, tag_keys):
                        found.pop(rest.ids[i], None)
                        missing[i] = UNCACHED
            if ticket is not None:
                keep_near(b, rest, results, found, ticket=ticket, admitted=admitted)
    if missing:
        found.update(await load(ManyCall(b, func, head, rest), missing, since))
    found.update(near)
    return {i: found[i] for i in batch.ids if i in found}


async def load(c: ManyCall, missing: Missing, since: int) -> dict[Any, Any]:
    """The missing ids: one call for those this caller leads, the flights of the others."""
    b, batch = c.b, c.batch
    leading: dict[int, Flight] = {}
    joined: dict[int, Flight] = {}
    for i, state in missing.items():
        flight, leader = b.flights.join(batch.keys[i], state, since)
        (leading if leader else joined)[i] = flight
    b.stats.singleflight_joins += len(joined)
    out: dict[Any, Any] = {}
    if leading:
        out.update(await lead(c, {i: missing[i] for i in leading}, leading))
    alone: Missing = {}
    orphans: Missing = {}
    for i, flight in joined.items():
        try:
            value = await ajoin_flight(flight, b.lock_timeout)
        except LeaderGone:
            orphans[i] = missing[i]
            continue
        except WaitTimeout:
            alone[i] = missing[i]
            continue
        if value is not ABSENT:
            out[batch.ids[i]] = value
    if orphans:  # their leader's caller was cancelled: join or lead new flights for them
        out.update(await load(c, orphans, since))
    if alone:  # their leader took too long: load them without a flight
        out.update(await compute(c, alone))
    return out


async def lead(c: ManyCall, missing: Missing, flights: dict[int, Flight]) -> dict[Any, Any]:
    """Load the ids this caller leads and land each one's flight."""
    keys, ids = c.batch.keys, c.batch.ids
    try:
        values = await compute(c, missing)
    except Exception as exc:
        for i, flight in flights.items():
            c.b.flights.land(keys[i], flight, exc=exc)
        raise
    except BaseException:
        for i, flight in flights.items():
            c.b.flights.land(keys[i], flight, exc=LeaderGone())
        raise
    for i, flight in flights.items():
        c.b.flights.land(keys[i], flight, values.get(ids[i], ABSENT))
    return values


async def compute(c: ManyCall, missing: Missing) -> dict[Any, Any]:
    """Call the function for the missing ids and store what it returned; with ``lock=True``
    each id's fill runs under that id's lease."""
    if c.b.lock and not c.b.slot.stores_objects and UNCACHED not in missing.values():
        return await leased(c, missing)
    return await run(c, missing)


async def run(c: ManyCall, missing: Missing) -> dict[Any, Any]:
    """One call of the function with the missing ids; each value returned is stored."""
    b, batch = c.b, c.batch
    result, delta = await timed(b, c.func, (*c.head, [batch.ids[i] for i in missing]), {})
    values = returned(b, result)
    out: dict[Any, Any] = {}
    for i, state in missing.items():
        ident = batch.ids[i]
        if ident not in values:
            continue  # left out by the function: not cached
        value = out[ident] = values[ident]
        payload = NO_VALUE if state is UNCACHED else b.encode(value, batch.keys[i])
        if payload is not NO_VALUE:
            write = b.write(payload, delta, batch.tag_keys[i], state, b.policy.ttl_for(value))
            await store(b, c.entry(i), write)
    return out


async def leased(c: ManyCall, missing: Missing) -> dict[Any, Any]:
    """Per-id leases: load at once the ids whose lease this caller took; wait for the others
    (their value, or their lease, or ``lock_timeout``), then load what is still missing."""
    b = c.b
    leases = b.slot.abackend().leases()
    ttl = lease_ttl(b.lock_timeout)
    held: dict[int, AsyncLease] = {}
    busy: list[int] = []
    try:
        for i, (marker, _) in missing.items():  # a value landed since the read is read
            seen = None if marker.startswith(ENTRY) else marker
            got = await leases.acquire(b.keyspace.lease(c.batch.keys[i]), ttl, seen)
            if isinstance(got, Busy):
                busy.append(i)
            else:
                held[i] = got
    except BACKEND_ERRORS as exc:
        b.guard.absorb(exc, key=c.batch.keys[0], function=b.name, action="take leases")
        await release(c, held)
        return await run(c, missing)
    except BaseException:  # cancelled: the leases taken so far are released all the same
        release_aside(c, held.values())
        raise
    out: dict[Any, Any] = {}
    if held:
        out.update(await hold(c, {i: missing[i] for i in held}, held, ttl))
    later: dict[int, AsyncLease] = {}
    alone: Missing = {}
    for i in busy:
        call = c.entry(i)
        try:  # its holder may be done by now (this caller loaded its own ids meanwhile)
            value = await servable(b, call)
            lease, value = (None, value) if value is not NO_VALUE else await obtain(
                b, call, missing[i], leases=leases, name=b.keyspace.lease(call.key), ttl=ttl)
        except BACKEND_ERRORS as exc:
            b.guard.absorb(exc, key=call.key, function=b.name, action="take a lease")
            lease, value = None, NO_VALUE
        except BaseException:  # cancelled while waiting: what it took is released
            release_aside(c, later.values())
            raise
        if lease is not None:
            later[i] = lease
        if value is NO_VALUE:
            alone[i] = missing[i]
        else:
            out[c.batch.ids[i]] = value
    if alone:
        out.update(await hold(c, alone, later, ttl))
    return out


async def hold(c: ManyCall, missing: Missing, held: dict[int, AsyncLease],
               ttl: float) -> dict[Any, Any]:
    """Run one load holding some ids' leases: kept alive while it runs, released after."""

    async def extend() -> bool:
        return all([await lease.extend(ttl) for lease in held.values()])

    def on_fault(exc: BaseException) -> None:
        fault(c.b, c.entry(next(iter(missing))), exc, "extend a lease")

    try:
        async with akeep_alive(extend, ttl / 3, on_fault):
            return await run(c, missing)
    finally:
        await release(c, held)


async def release(c: ManyCall, held: dict[int, AsyncLease]) -> None:
    """Release leases (waking their waiters); a fault is counted, never raised. Cancelled
    meanwhile, the caller leaves this one and the rest to :func:`release_aside`."""
    leases = list(held.items())
    for n, (i, lease) in enumerate(leases):
        try:
            await release_noted(lease, c.b.recovery.recent, c.b.slot.name)
        except BACKEND_ERRORS as exc:
            fault(c.b, c.entry(i), exc, "release a lease")
        except BaseException:
            release_aside(c, [rest for _, rest in leases[n:]])
            raise


def release_aside(c: ManyCall, leases: Iterable[AsyncLease]) -> None:
    """Have background tasks release leases a cancelled caller holds (it cannot wait for
    that): else every process's callers of those ids would wait until they expire."""
    background, ttl = c.b.background, lease_ttl(c.b.lock_timeout)
    for lease in leases:
        background.aspawn(release_later, lease, ttl, background)
