"""The flows that change an entry or read it without loading, asyncio flavour: refresh,
write-through's store, invalidation, ``f.get()`` and ``f.set()``; ``_sync/change.py`` is
generated from it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cachedeco.backends.base import BACKEND_ERRORS, UNREACHABLE
from cachedeco.core.entry import NO_VALUE, new_tag_token, new_tombstone
from cachedeco.errors import SerializationError
from cachedeco.flows._async.read import store, timed
from cachedeco.flows.bound import Bound, Call, ReadState, is_current, written_over
from cachedeco.runtime.changes import DROP, TAGS

__all__ = ["cached_value", "invalidate", "invalidate_all", "put", "read_marker", "refresh",
           "set_value"]

Args = tuple[Any, ...]
Kwargs = dict[str, Any]


async def refresh(b: Bound, func: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
    """Recompute and store; later callers never join an older load. The store holds only
    while nothing changed the entry or its tags during the load (a write, an invalidation,
    another refresh, a write-behind flush: what it loaded may be older); otherwise, as for a
    result not to cache, the entry is dropped, so the next call loads anew."""
    if not b.enabled:
        return await func(*args, **kwargs)
    key, tag_keys = b.key(args, kwargs), b.tags(args, kwargs)
    b.flights.forget(key)
    seen = await read_marker(b, key, tag_keys)
    value, delta = await timed(b, func, args, kwargs)
    payload = b.encode(value, key)
    if isinstance(seen, BaseException):  # a store now would only wait again
        await b.akeep_drops([key], seen)
        b.guard.kept(seen, key=key, function=b.name, action="refresh")
        return value
    if payload is not NO_VALUE:
        write = b.write(payload, delta, tag_keys, seen, b.policy.ttl_for(value))
        if await store(b, Call(func, args, kwargs, key, tag_keys), write, fill=False
                       ) is not False:  # stored, or its drop kept for auto-recovery
            return value
    await drop(b, [key], "refresh")
    return value


async def drop(b: Bound, keys: list[str], action: str) -> int:
    """Leave tombstones at ``keys``; when the backend cannot take them now, auto-recovery
    does it later (and this process does not serve those entries meanwhile). Returns how
    many values it removed."""
    if b.guard.breaker.open():  # the backend is skipped: straight to auto-recovery
        await b.akeep_drops(keys, None)
        b.guard.kept(None, key=keys[0], function=b.name, action=action)
        return 0
    try:
        removed = await b.slot.abackend().invalidate(keys, new_tombstone(), b.policy.hard_ms)
    except BACKEND_ERRORS as exc:
        await b.akeep_drops(keys, exc)
        b.guard.kept(exc, key=keys[0], function=b.name, action=action)
        return 0
    except BaseException as exc:
        if not isinstance(exc, Exception):  # cancelled on the way: it may not have landed
            b.unsettled(keys)
        raise
    b.guard.breaker.success()
    b.recovery.recent.note(b.slot.name, DROP, keys, b.policy.hard_ms)
    return removed


async def read_marker(b: Bound, key: str, tag_keys: tuple[str, ...] = ()
                      ) -> ReadState | BaseException | None:
    """What ``key`` and its ``tag_keys`` hold now, read before a write or a refresh's load so
    that its store is conditional on it; None when the backend is skipped or refused the
    read (the store then is unconditional), or the error of a backend out of reach (its
    store goes straight to auto-recovery: a second command now would only wait again)."""
    if b.guard.breaker.open():
        return None
    try:
        entry, tokens = await b.slot.abackend().read(key, tag_keys)
    except BACKEND_ERRORS as exc:
        return exc if isinstance(exc, UNREACHABLE) else None
    return "" if entry is None else entry.marker, tokens


async def put(b: Bound, key: str, tag_keys: tuple[str, ...], value: Any,
              aliases: tuple[str, ...] = (), *,
              seen: ReadState | BaseException | None = None,
              own: frozenset[str] = frozenset()) -> None:
    """Store a written value as the entry (write-through); if that fails, the old one is
    dropped, at once or by auto-recovery once the backend answers again (this process does
    not serve it meanwhile). The entry's ``aliases`` (its keys before a key rotation) are
    dropped either way. With ``seen`` (:func:`read_marker` of the entry and ``tag_keys``
    before the write) the store holds only while the entry holds the marker read and its
    tags the tokens read, but for the tag keys in ``own`` (invalidated by this write itself);
    else it is dropped: another writer, a fill or an invalidation changed it meanwhile (the
    value written may predate that change), and which the database committed last is not
    known here."""
    b.flights.forget(key)
    fault = seen if isinstance(seen, BaseException) else None
    if fault is not None or b.guard.breaker.open():  # straight to auto-recovery
        await b.akeep_drops([key, *aliases], fault)
        b.encode(value, key)  # a value that cannot be serialized is an error all the same
        b.guard.kept(fault, key=key, function=b.name, action="write through")
        return
    try:
        payload = b.encode(value, key)
        if payload is NO_VALUE:
            await b.slot.abackend().invalidate([key, *aliases], new_tombstone(),
                                               b.policy.hard_ms)
        else:
            write = b.write(payload, 0.0, tag_keys, written_over(seen, tag_keys, own),
                            b.policy.ttl_for(value))
            stored = await b.slot.abackend().write(key, write)
            if aliases or not stored:
                await b.slot.abackend().invalidate(aliases if stored else [key, *aliases],
                                                   new_tombstone(), b.policy.hard_ms)
        b.guard.breaker.success()
        b.recovery.recent.note(b.slot.name, DROP, [key, *aliases], b.policy.hard_ms)
    except SerializationError:
        try:
            await b.slot.abackend().invalidate([key, *aliases], new_tombstone(),
                                               b.policy.hard_ms)
        except BACKEND_ERRORS as fault:
            await b.akeep_drops([key, *aliases], fault)
        raise
    except BACKEND_ERRORS as exc:
        if not isinstance(exc, UNREACHABLE):  # it answers, but refused the store: drop now
            try:
                await b.slot.abackend().invalidate([key, *aliases], new_tombstone(),
                                                   b.policy.hard_ms)
                b.guard.absorb(exc, key=key, function=b.name, action="write through")
                return
            except BACKEND_ERRORS:
                pass
        # unreachable (a second command now would only wait again): auto-recovery drops it
        await b.akeep_drops([key, *aliases], exc)
        b.guard.kept(exc, key=key, function=b.name, action="write through")
    except BaseException as exc:
        if not isinstance(exc, Exception):  # cancelled on the way: it may not have landed
            b.unsettled([key, *aliases])
        raise


async def invalidate(b: Bound, args: Args, kwargs: Kwargs) -> bool:
    """Drop one entry (a tombstone stops older loads from storing over it); when the
    backend cannot be reached, auto-recovery drops it later and this returns False."""
    if not b.enabled:
        return False
    key = b.key(args, kwargs)
    keys = [key] if b.aliases is None else [key, *b.aliases(args, kwargs)]
    b.flights.forget(key)
    b.stats.invalidations += 1
    return await drop(b, keys, "invalidate") > 0


async def invalidate_all(b: Bound) -> None:
    """Drop every entry of the function: one new token for its implicit tag."""
    if not b.enabled:
        return
    b.stats.invalidations += 1
    if b.guard.breaker.open():
        await b.recovery.ainvalidate(b.slot.name, [b.fn_tag], b.tag_px, None)
        b.guard.kept(None, function=b.name, action="invalidate all")
        return
    try:
        await b.slot.abackend().invalidate_tags([b.fn_tag], new_tag_token(True), b.tag_px)
        b.guard.breaker.success()
        b.recovery.recent.note(b.slot.name, TAGS, [b.fn_tag], b.tag_px)
    except BACKEND_ERRORS as exc:
        await b.recovery.ainvalidate(b.slot.name, [b.fn_tag], b.tag_px, exc)
        b.guard.kept(exc, function=b.name, action="invalidate all")
    except BaseException as exc:
        if not isinstance(exc, Exception):  # cancelled on the way: it may not have landed
            b.unsettled((), [b.fn_tag])
        raise


async def cached_value(b: Bound, args: Args, kwargs: Kwargs) -> Any:
    """``f.get()``: the fresh, current value of an entry, or MISS; it never runs the
    function and never stores (a backend fault is a MISS, or BackendError under "raise")."""
    if not b.enabled:
        return NO_VALUE
    key = b.key(args, kwargs)
    if b.near is not None and (
            kept := b.near.hit(key, b.tags(args, kwargs), b.near_reader)) is not None:
        return kept.value
    tag_keys = b.tags(args, kwargs)
    if not b.guard.allow(key, b.name) or (
            b.recovery.pending and b.held(key, tag_keys)):
        return NO_VALUE
    try:
        entry, tokens = await b.slot.abackend().read(key, tag_keys)
    except BACKEND_ERRORS as exc:
        b.guard.absorb(exc, key=key, function=b.name, action="read")
        return NO_VALUE
    b.guard.breaker.success()
    if b.recovery.pending and b.held(key, tag_keys):
        return NO_VALUE  # held while the read was under way: see get_or_load
    if entry is None or not is_current(entry, tokens) or time.time() >= entry.soft:
        return NO_VALUE
    return b.decode(entry, key)


async def set_value(b: Bound, args: Args, kwargs: Kwargs, value: Any) -> None:
    """``f.set()``: store ``value`` as the entry for these arguments, as a write-through
    does (unconditionally: an older fill in flight never overwrites it)."""
    if b.enabled:
        await put(b, b.key(args, kwargs), b.tags(args, kwargs), value)
