"""The hit paths compiled when a function is bound: over the in-process memory backend, and
over a near cache (decoded values kept in process memory in front of Redis).

The generic read (:mod:`cachedeco.flows._async.read`, its ``_sync`` twin) serves every
backend: breaker, envelope, stale and early refresh, aliases, single-flight. On ``memory://``
a fresh hit needs none of that: values are kept as objects and the backend cannot fail. So
binding such a function also builds one closure doing only the hit: the key, the lookups, the
expiry checks, the tags' tokens, the count. A near hit is the same: the key, one lookup in
the near store, its checks, the count; and an async function's hit then costs no coroutine
of the generic read. Whatever is not a fresh hit (a miss, a stale entry) returns ``NO_VALUE``
without counting anything, and the call takes the generic path, which reads again and
decides. A hit checks no configuration: the registry drops it when it is configured again
(``Registry.advance``). A function with early refresh (its hits may start a refresh) or a
disabled registry gets no compiled path.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cachedeco.backends.memory.store import MemoryBackend, Row
from cachedeco.backends.near.store import NearStore
from cachedeco.core.entry import NO_VALUE
from cachedeco.flows.bound import Bound

__all__ = ["Hit", "memory_hit", "near_hit"]

#: A compiled hit: ``(args, kwargs) -> value``, or NO_VALUE to take the generic path.
Hit = Callable[[tuple[Any, ...], dict[str, Any]], Any]
Table = OrderedDict[str, Row]
_KNOWN = 4096  # keys remembered per function
_LONGEST = 64  # str arguments longer than this are encoded on each call


def memory_hit(b: Bound, store: MemoryBackend, *, fixed_tags: bool,
               pure_keys: bool) -> Hit | None:
    """The compiled hit of ``b`` over ``store``; ``fixed_tags``:
    every call has the same tag keys; ``pure_keys``: a key depends on the arguments only (no
    ``key=`` callable) and may be remembered. None where every call must take the generic
    path."""
    if not b.enabled or b.policy.beta:
        return None
    if fixed_tags and len(b.tags((), {})) == 1:  # the function's own tag only (the default)
        return _one_tag(b, store.table(), store.tag_table(), pure_keys)
    return _tagged(b, store.table(), store.tag_table())


def _one_tag(b: Bound, table: Table, tag_table: Table, pure_keys: bool) -> Hit:
    """The hit of a function whose only tag is its own: one more lookup, no rendering; the
    keys of ``f(x)`` calls are remembered by ``x`` (an int or a short str), encoding being
    most of a hit's cost."""
    (only_tag,) = b.tags((), {})
    key_of, touch, stats = b.key, table.move_to_end, b.stats
    known: dict[int | str, str] = {}

    def hit(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if pure_keys and not kwargs and len(args) == 1 and (
                (kind := (arg := args[0]).__class__) is int or kind is str):  # 1, True apart
            try:
                key = known[arg]
            except KeyError:
                key = _remember(known, arg, key_of(args, kwargs))
        else:
            key = key_of(args, kwargs)
        try:
            row = table[key]
            tag = tag_table[only_tag]
            touch(key)  # its use, for the LRU order (as the generic read does)
        except KeyError:  # absent, or removed by another thread meanwhile
            return NO_VALUE
        # the store's clock and the soft expiry's alike, looked up at each call (a test that
        # patches time.time reaches it)
        now = time.time()
        # Expired, stale, a tombstone (fresh until 0), or invalidated since it was stored
        # (the tag key expired, or holds another token): the generic path decides.
        if row[2] <= now or tag[0] <= now or row[3] != tag[3]:
            return NO_VALUE
        stats.hits += 1
        return row[4]

    return hit


def _tagged(b: Bound, table: Table, tag_table: Table) -> Hit:
    """The hit of a function with tags of its own: every tag key's token is checked."""
    key_of, tags_of, touch, stats = b.key, b.tags, table.move_to_end, b.stats

    def hit(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        key = key_of(args, kwargs)
        tag_keys = tags_of(args, kwargs)
        try:
            row = table[key]
            tags = [tag_table[tag] for tag in tag_keys]
            touch(key)
        except KeyError:
            return NO_VALUE
        now = time.time()
        if row[2] <= now or row[3] != tuple([tag[1] for tag in tags]):
            return NO_VALUE
        for tag in tags:
            if tag[0] <= now:
                return NO_VALUE
        stats.hits += 1
        return row[4]

    return hit


def near_hit(b: Bound, near_store: NearStore, *, pure_keys: bool) -> Hit | None:
    """The compiled near hit of ``b`` over ``near_store``: what ``NearStore.owned`` (or
    ``NearStore.hit``) and the generic read do on a near hit, inline; ``pure_keys``: a key
    depends on the arguments only and may be remembered. None where every call must take the
    generic path."""
    if not b.enabled or b.policy.beta:
        return None
    if b.near_owner is not None:
        return _near_owned(b, near_store, pure_keys)
    return _near_tagged(b, near_store, pure_keys)


def _near_owned(b: Bound, near_store: NearStore, pure_keys: bool) -> Hit:
    """The near hit of a function whose tag keys follow from its key (``NearStore.owned``):
    a value it installed is its own, with the same tag keys, so none are computed; one that
    another function sharing the key installed is served if it was decoded alike and read
    with the same tag keys."""
    entries = near_store.entries()  # the store's own dict, for its life (see entries())
    find, touch, behind, clock = entries.get, entries.move_to_end, near_store.behind, time.time
    key_of, tags_of, owner, reader, stats = b.key, b.tags, b.near_owner, b.near_reader, b.stats
    known: dict[int | str, str] = {}

    def hit(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if pure_keys and not kwargs and len(args) == 1 and (
                (kind := (arg := args[0]).__class__) is int or kind is str):  # 1, True apart
            try:
                key = known[arg]
            except KeyError:
                key = _remember(known, arg, key_of(args, kwargs))
        else:
            key = key_of(args, kwargs)
        kept = find(key)  # (owner, soft expiry, value, tag keys, Near, reader): see NearStore
        if kept is None or (kept[0] is not owner and (
                kept[5] is not reader or kept[3] != tags_of(args, kwargs))):
            return NO_VALUE
        now = clock()
        # past its soft expiry; or the look for change messages not applied yet (every
        # LOOK_EVERY: coherence depends on it) dropped it
        if now >= kept[1] or (now >= near_store.due and behind(now, key, kept)):
            return NO_VALUE
        try:  # noqa: SIM105 (suppress() costs more on the hit path)
            touch(key)
        except KeyError:  # dropped meanwhile by another thread: this hit still saw it valid
            pass
        stats.hits += 1
        stats.near_hits += 1
        return kept[2]

    return hit


def _near_tagged(b: Bound, near_store: NearStore, pure_keys: bool) -> Hit:
    """The near hit of any other function (``NearStore.hit``): the value must have been
    decoded as this function decodes, with the call's tag keys (a ``key=`` callable, tags
    from a callable, a key template)."""
    entries = near_store.entries()
    find, touch, behind, clock = entries.get, entries.move_to_end, near_store.behind, time.time
    key_of, tags_of, reader, stats = b.key, b.tags, b.near_reader, b.stats
    known: dict[int | str, str] = {}

    def hit(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if pure_keys and not kwargs and len(args) == 1 and (
                (kind := (arg := args[0]).__class__) is int or kind is str):
            try:
                key = known[arg]
            except KeyError:
                key = _remember(known, arg, key_of(args, kwargs))
        else:
            key = key_of(args, kwargs)
        kept = find(key)
        if kept is None or kept[5] is not reader or kept[3] != tags_of(args, kwargs):
            return NO_VALUE
        now = clock()
        if now >= kept[1] or (now >= near_store.due and behind(now, key, kept)):
            return NO_VALUE
        try:  # noqa: SIM105
            touch(key)
        except KeyError:
            pass
        stats.hits += 1
        stats.near_hits += 1
        return kept[2]

    return hit


def _remember(known: dict[int | str, str], value: int | str, key: str) -> str:
    """Note the key of ``f(value)``; the memo is emptied when full, so it keeps recent ones."""
    if value.__class__ is int or len(value) <= _LONGEST:  # type: ignore[arg-type]
        if len(known) >= _KNOWN:
            known.clear()
        known[value] = key
    return key
