"""What a decorated call needs, decided once per registry configuration, and the pure steps
of the read-through and write flows.

A decorated function is bound to its registry's current configuration into a :class:`Bound`,
which holds every decision (key builder, tags, backend, codec, policy, failure guard); the
sync and async drivers (``_async/``, ``_sync/``) only move data between these pure steps and
the backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cachedeco.backends.base import ReadResult
from cachedeco.backends.near.store import Near, NearStore, Ticket
from cachedeco.backends.open import BackendSlot
from cachedeco.core.codec.factory import Codec
from cachedeco.core.entry import (
    ANY_TAG,
    NO_VALUE,
    Entry,
    Release,
    Write,
    new_marker,
    new_tag_token,
    new_tombstone,
)
from cachedeco.core.keyspace import KeySpace
from cachedeco.core.policy import Policy
from cachedeco.core.stats import Stats
from cachedeco.errors import SerializationError
from cachedeco.runtime.guard import Guard, warn
from cachedeco.runtime.primitives import Background
from cachedeco.runtime.recovery import Recovery
from cachedeco.runtime.singleflight import Flights
from cachedeco.runtime.watch import Begin

__all__ = ["UNCACHED", "Bound", "Call", "ReadState", "is_current", "lease_apart", "written_over"]


KeyFn = Callable[[tuple[Any, ...], dict[str, Any]], str]
#: What a fill read: the entry's marker ("" when absent) and its tags' tokens. A store made
#: from it succeeds only while both are unchanged; a flight is shared only by equal states.
ReadState = tuple[str, tuple[str | None, ...]]
#: The state of calls made while the backend is unavailable: they still share one load per
#: key in this process (the database is spared a stampede when the cache fails), and the
#: load stores nothing.
UNCACHED: ReadState = ("!uncached", ())
TagsFn = Callable[[tuple[Any, ...], dict[str, Any]], tuple[str, ...]]
AliasesFn = TagsFn


@dataclass(slots=True, eq=False)
class Bound:
    """One decorated function bound to one registry configuration: all a call needs."""

    name: str
    key: KeyFn
    #: The keys a call had under the older keys of a rotation (``encryption_key=[new, old]``),
    #: read on a miss and invalidated with the current one; None for all other functions.
    aliases: AliasesFn | None
    sensitive: bool  # argument values and results stay out of key names and logs
    tags: TagsFn
    fn_tag: str
    slot: BackendSlot
    guard: Guard
    codec: Codec | None  # None when the backend keeps objects
    policy: Policy
    stats: Stats
    flights: Flights
    keyspace: KeySpace
    background: Background
    cache_none: bool
    condition: Callable[[Any], bool] | None
    lock: bool
    lock_timeout: float
    tag_px: int
    recovery: Recovery  # the registry's: changes kept while the backend was unreachable
    enabled: bool = True  # False while the registry is disabled: calls run uncached
    watch: Begin | None = None  # what exporters see of each load; None when nobody watches
    near: NearStore | None = None  # the near cache serving this function's hits, if any
    #: ``tags`` when a call's tag keys follow from its key alone (every argument is in the
    #: key, tags are templates): a near hit then skips rendering them. None otherwise.
    near_owner: object = None
    #: How this function decodes (``codec.base.decoder``): functions sharing a key
    #: (``key=`` templates) are served each other's near values only when they decode alike;
    #: one returning a dataclass and one a dict each keep their own.
    near_reader: object = None
    #: A near-cached ``lock=True`` function on one server (not Cluster, where the lease sits
    #: in another slot than the tag keys): its reads take the entry's lease key along, so a
    #: miss also tells whether another process is loading the entry.
    lease_read: bool = False
    #: A writer's result made the type its target's readers return, where the backend keeps
    #: objects (memory://) and the writer declares another return type than its target
    #: (``flows.link``): what a reader on Redis would decode. None for every other Bound.
    convert: Callable[[Any], Any] | None = None

    def decode(self, entry: Entry, key: str) -> Any:
        """The value of the entry at ``key``, or NO_VALUE (logged, counted) when it cannot be
        decoded."""
        if self.codec is None:
            return entry.value
        try:
            return self.codec.loads(entry.value, key)
        except SerializationError as exc:
            return self.undecodable(exc)

    def held(self, key: str, tag_keys: Sequence[str]) -> bool:
        """Whether auto-recovery holds the entry back (a change of it or of one of its tags
        waits, or a Sentinel move): it is not served from the backend meanwhile, and the
        call loads uncached, or, under ``on_error="raise"``, raises BackendError as it would
        have while the backend could not take that change."""
        if not self.recovery.blocks(self.slot.name, key, tag_keys):
            return False
        self.guard.withheld(key, self.name)
        return True

    def undecodable(self, exc: SerializationError) -> Any:
        """A stored value that cannot be decoded: counted, logged (rate-limited), a miss."""
        self.stats.decode_errors += 1
        warn(f"decode:{self.keyspace.prefix}:{self.name}", "cannot decode a stored "
             "value of %s (%s); treating it as a miss and overwriting it", self.name, exc,
             prefix=self.keyspace.prefix)
        return NO_VALUE

    def corrupt(self) -> None:
        """A stored value that is not a readable envelope: count and log; it is overwritten."""
        self.stats.decode_errors += 1
        warn(f"corrupt:{self.keyspace.prefix}:{self.name}", "a stored value of %s is not a "
             "cachedeco entry; treating it as a miss and overwriting it", self.name,
             prefix=self.keyspace.prefix)

    def encode(self, value: Any, key: str) -> Any:
        """The payload to store at ``key`` for a result, or NO_VALUE when it is not to be
        cached."""
        if value is None and not self.cache_none:
            return NO_VALUE
        if self.condition is not None and not self.condition(value):
            return NO_VALUE
        if self.codec is None:
            return value if self.convert is None else self.convert(value)
        return self.codec.dumps(value, key)

    def keep_drops(self, keys: Sequence[str], exc: BaseException | None) -> None:
        """Have auto-recovery drop these entries of the function once the backend takes
        changes again (``exc``: why they could not be dropped now; None: breaker open)."""
        self.recovery.drop(self.slot.name, keys, self.policy.hard_ms, exc,
                           family=(self.fn_tag, self.tag_px))

    async def akeep_drops(self, keys: Sequence[str], exc: BaseException | None) -> None:
        """The asyncio form of :meth:`keep_drops` (the spool written in a thread)."""
        await self.recovery.adrop(self.slot.name, keys, self.policy.hard_ms, exc,
                                  family=(self.fn_tag, self.tag_px))

    def unsettled(self, keys: Sequence[str], tag_keys: Sequence[str] = ()) -> None:
        """A change of these entries (and tags) whose caller was cancelled on the way: whether
        it landed is not known, so auto-recovery makes it again (no outage begins: the
        backend may be fine), the entries not served meanwhile; in-process memory, which
        nothing interrupts, makes it at once."""
        if self.slot.stores_objects:
            memory = self.slot.backend()
            memory.invalidate(keys, new_tombstone(), self.policy.hard_ms)
            if tag_keys:
                memory.invalidate_tags(tag_keys, new_tag_token(True), self.tag_px)
            return
        if keys:
            self.recovery.drop(self.slot.name, keys, self.policy.hard_ms, None,
                               family=(self.fn_tag, self.tag_px), failed=False)
        if tag_keys:
            self.recovery.invalidate(self.slot.name, tag_keys, self.tag_px, None, failed=False)

    def describe(self, exc: BaseException) -> str:
        """An exception for a log line: its type, and its message unless the function is
        sensitive (a message may quote arguments or results)."""
        return type(exc).__name__ if self.sensitive else f"{type(exc).__name__}: {exc}"

    def near_value(self, entry: Entry, tokens: tuple[str | None, ...],
                   tag_keys: tuple[str, ...], value: Any) -> Near:
        """``value``, read as ``entry`` with ``tokens``, as this function keeps it near: with
        its owner and the way it decodes (what decides whom it is served to)."""
        return Near(entry, tokens, tag_keys, value, self.near_owner, self.near_reader)

    def write(self, payload: Any, delta: float, tag_keys: tuple[str, ...],
              state: ReadState | None, ttl: float | None = None, *,
              release: Release | None = None, expect: str | None = None) -> Write:
        """The write for a payload that took ``delta`` seconds to load; conditional on
        ``state`` (what the fill read) unless it is None, else on the marker ``expect`` alone
        unless it is None; ``ttl``: a callable ttl's choice; ``release``: the load's lease,
        for the store to release if it can."""
        soft, px = self.policy.expiry(time.time(), delta, ttl)
        expect, expect_tags = (expect, None) if state is None else state
        return Write(marker=new_marker(), value=payload, soft=soft, delta=delta, px=px,
                     tag_keys=tag_keys, expect=expect, expect_tags=expect_tags,
                     new_tag=new_tag_token(), tag_px=self.tag_px, release=release)


@dataclass(slots=True, eq=False)
class Call:
    """One call that missed: the function, its arguments, its key and tag keys."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    key: str
    tag_keys: tuple[str, ...]
    #: The near ticket taken before the read that missed (near-cached functions only).
    read_at: Ticket | None = None
    #: That read found the entry's ``lock=True`` lease held: another process is loading it.
    held: bool = False
    #: While this call's load holds its lease: the lease as its store may release it.
    release: Release | None = None


def written_over(seen: ReadState | BaseException | None, tag_keys: tuple[str, ...],
                 own: frozenset[str]) -> ReadState | None:
    """What a write-through's store expects: what was read before the write (``seen``, of
    the entry and ``tag_keys``), any token of the tag keys this write invalidated itself;
    None (unconditional) when nothing was read."""
    if not isinstance(seen, tuple):
        return None
    marker, tokens = seen
    return marker, tuple(ANY_TAG if tag in own else token
                         for tag, token in zip(tag_keys, tokens, strict=True))


def is_current(entry: Entry | None, tokens: tuple[str | None, ...]) -> bool:
    """Whether an entry holds a value written under the tags' current tokens."""
    return entry is not None and entry.value is not NO_VALUE and entry.tags == tokens


def lease_apart(b: Bound, result: ReadResult) -> tuple[ReadResult, bool]:
    """A near-cached read's reply without the lease's token that ``Bound.lease_read`` reads
    last (its holder's token, or None), and whether it was there: another process is
    loading the entry."""
    if not b.lease_read:
        return result, False
    entry, tokens = result
    return (entry, tokens[:-1]), tokens[-1] is not None
