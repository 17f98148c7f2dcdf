"""The changes auto-recovery keeps until they reach their backend, and their spool encoding.

Three kinds: ``DROP`` an entry (a tombstone: a write-through that could not store, an
invalidation, a refresh), ``TAGS`` (a new token for a tag key: ``invalidate_tags``,
``invalidate_all``) and ``RECORD`` (a write-behind record with its entry, queued again).
``EVERY`` (a new token for every function's tag: every entry under the prefix) is what too
many ``TAGS`` become (:func:`merge_tags`). ``RELEASE`` (a ``lock=True`` lease released again
by its token) is only ever applied again after a failover (:mod:`.recent`), never spooled.
Drops and tag invalidations of one key are one pending change (the latest); records are
never merged: each one is delivered. :func:`next_run` picks what goes out next (drops and tag
invalidations first, then records, many per round trip).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol, runtime_checkable

import orjson

from cachedeco.backends.base import UNREACHABLE, AsyncBackend, Backend
from cachedeco.backends.contracts.queues import AsyncQueue, NotStored, Push, Queue
from cachedeco.core.entry import Release, Write, new_tag_token, new_tombstone
from cachedeco.core.keyspace import QueueNames
from cachedeco.core.logs import say
from cachedeco.runtime.guard import LOG_INTERVAL, Breaker
from cachedeco.runtime.spool import Spool

__all__ = ["DROP", "EVERY", "KINDS", "RECORD", "RELEASE", "TAGS", "Change", "Outage", "aapply",
           "apply", "decode_change", "encode_change", "merge_drops", "merge_tags", "next_run"]

DROP: Final = "drop"
TAGS: Final = "tags"
RECORD: Final = "record"
RELEASE: Final = "release"
EVERY: Final = "every"
KINDS: Final = (DROP, TAGS, RECORD, EVERY)  # the kinds a spool holds
QUIET: Final = 1.0  # seconds without a failed call before an outage's end is said
_WHAT: Final = {DROP: "entry drop(s)", TAGS: "tag invalidation(s)", RELEASE: "lease release(s)",
                RECORD: "write-behind record(s)", EVERY: "invalidation(s) of every entry"}


class Outage:
    """One backend's outage as a process saw it: since when, and what landed since."""

    def __init__(self, said: bool = True, breaker: Breaker | None = None) -> None:
        #: since the first call that failed (``breaker``'s), a read's too, else from now
        since = breaker.failing_since if breaker is not None else None
        self.since = time.monotonic() if since is None else since
        self.emptied: float | None = None  # when its changes had all landed, if they have
        self.landed: collections.Counter[str] = collections.Counter()
        self.said = said  # its start was logged, so its end is too (else both are quiet)

    def over(self, breaker: Breaker) -> bool:
        """Whether it may be said to end, its changes landed: once no call failed (or was
        skipped by the open breaker) for QUIET seconds (one Redis Cluster primary down fails
        the calls of its slots while changes of the others land: an end said then was no
        end), or LOG_INTERVAL after they did."""
        now = time.monotonic()
        self.emptied = self.emptied or now
        quiet = not breaker.open() and now - breaker.last_failure >= QUIET
        return not self.said or quiet or now - self.emptied >= LOG_INTERVAL

    def end(self, prefix: str, backend: str) -> None:
        """Say that the outage of ``backend`` (of the registry under ``prefix``) ended (if its
        start was said)."""
        if self.said:
            say(prefix, logging.WARNING, "backend %r answers again after %.1fs; recovered %s",
                backend, time.monotonic() - self.since, self.summary())

    @staticmethod
    def began(prefix: str, backend: str, exc: BaseException | None, hushed: int) -> None:
        """Say that an outage of ``backend`` began (``hushed``: shorter ones kept quiet)."""
        refused = exc is not None and not isinstance(exc, UNREACHABLE)
        say(prefix, logging.WARNING, "backend %r %s (%s); changes that cannot reach it are "
            "kept and retried until they land%s", backend,
            "refuses changes" if refused else "is unreachable",
            "no answer" if exc is None else f"{type(exc).__name__}: {exc}",
            f" ({hushed} shorter outages since the last line)" if hushed else "")

    def summary(self) -> str:
        """What landed, for the log line that ends the outage."""
        done = ", ".join(f"{n} {_WHAT[k]}" for k, n in sorted(self.landed.items()) if n)
        return done or "nothing"


@dataclass(slots=True, eq=False)
class Change:
    """One change waiting for its backend: what to do, and where it is spooled (``row``)."""

    backend: str  # the backend's name in the registry
    kind: str
    #: the entry key (DROP, RECORD), the tag key (TAGS), the lease (RELEASE), or the glob of
    #: every function tag key (EVERY)
    target: str
    px: int  # how long the tombstone or tag token lives, in ms
    function: str = ""  # RECORD: the @write_behind function
    names: QueueNames | None = None  # RECORD: its queue
    push: Push | None = None  # RECORD: the record and its entry
    release: Release | None = None  # RELEASE: the lease and its token
    #: DROP: the tag key every entry of its function carries, and that tag's px: what the
    #: drop becomes when too many wait (:func:`~cachedeco.runtime.bounds.bound`)
    family: str = ""
    family_px: int = 0
    row: int | None = None  # its row in the spool, if any
    #: The spool holding ``row``: configure() may name another meanwhile, whose row ids are
    #: other changes'.
    spooled: Spool | None = None
    uid: str = field(default_factory=lambda: os.urandom(8).hex())

    @property
    def on_entries(self) -> bool:
        """Whether it changes what entries hold: all but a lease's release, which holds back
        no entry, tells no near cache and is never spooled."""
        return self.kind != RELEASE

    @property
    def ident(self) -> str:
        """One pending change per ident: the latest drop of a key, the latest invalidation
        of a tag; every record and every lease's release its own."""
        last = self.uid if self.kind in (RECORD, RELEASE) else self.target
        return f"{self.kind}\x00{self.backend}\x00{last}"


def _b(value: Any) -> Any:
    """Bytes as base64 text (JSON has no bytes); anything else as is."""
    return {"b64": base64.b64encode(value).decode()} if isinstance(value, bytes) else value


def _u(value: Any) -> Any:
    return base64.b64decode(value["b64"]) if isinstance(value, dict) else value


def encode_change(change: Change) -> bytes:
    """The spool's row body of a change."""
    body: dict[str, Any] = {"k": change.kind, "b": change.backend, "t": change.target,
                            "px": change.px, "u": change.uid}
    if change.family:
        body["f"] = [change.family, change.family_px]
    if change.kind == RECORD:
        assert change.push is not None and change.names is not None
        push, write = change.push, change.push.write
        names = change.names
        body |= {"fn": change.function, "q": [names.stream, names.dead, names.group],
                 "p": [push.key, list(push.tag_keys), _b(push.record), push.tombstone,
                       push.tomb_px],
                 "w": None if write is None else [
                     write.marker, _b(write.value), write.soft, write.delta, write.px,
                     list(write.tag_keys), write.new_tag, write.tag_px]}
    return orjson.dumps(body)


def decode_change(raw: bytes, row: int, spool: Spool | None = None) -> Change:
    """A change back from its row in ``spool`` (ValueError, KeyError or TypeError if
    malformed)."""
    body = orjson.loads(raw)
    kind = body["k"]
    if kind not in KINDS:
        raise ValueError(f"unknown change kind {kind!r}")
    change = Change(body["b"], kind, body["t"], int(body["px"]), row=row, uid=body["u"],
                    spooled=spool)
    if "f" in body:
        change.family, change.family_px = str(body["f"][0]), int(body["f"][1])
    if kind == RECORD:
        key, tag_keys, record, tombstone, tomb_px = body["p"]
        w = body["w"]
        write = None if w is None else Write(
            marker=w[0], value=_u(w[1]), soft=w[2], delta=w[3], px=w[4], tag_keys=tuple(w[5]),
            new_tag=w[6], tag_px=w[7])
        change.function = body["fn"]
        change.names = QueueNames(*body["q"])
        change.push = Push(key, tuple(tag_keys), write, _u(record), tombstone, tomb_px)
    return change


def next_run(queue: Iterable[Change], most: int) -> list[Change]:
    """What to send next from a backend's queue (oldest first): every drop and tag
    invalidation that may go now (at most ``most``), else the records at the head (at most
    ``most``), sent together.

    Drops and tag invalidations go ahead of the records queued before them: after an outage
    those may be hundreds, and until the drops land other processes serve the stale entries
    they concern. Overtaking is safe for a record of another key and other tags: a drop or a
    new tag token only removes or invalidates, so the value read afterwards is the same in
    either order. It is not for a record of the same entry key (WB_PUSH stores the record's
    entry: a drop sent first would be overwritten by the older value it was meant to drop) or
    carrying the same tag (WB_PUSH stores the entry with the tag's *current* token: the new
    one, if the invalidation went first, so an entry older than the invalidation would stay
    valid). Such a drop or invalidation waits for those records, and the records queued after
    it wait for it (each key's changes keep their order). Records keep their order.
    """
    urgent: list[Change] = []
    records: list[Change] = []
    keys: set[str] = set()  # entry keys of the records seen so far
    tags: set[str] = set()  # tag keys they carry
    records_open = True
    for change in queue:
        if change.kind == RECORD:
            if records_open and len(records) < most:
                records.append(change)
            keys.add(change.target)
            tags.update(_tag_keys(change))
        elif _waits(change, keys, tags):
            records_open = False  # it waits for a record before it; the later ones wait for it
        else:
            urgent.append(change)
            if len(urgent) >= most:
                break
    return urgent or records


def merge_drops(queue: collections.OrderedDict[str, Change], drops: Iterable[Change]
                ) -> tuple[list[Change], list[Change]]:
    """The ``drops`` of ``queue`` (those that know their function's tag, oldest first) become
    one invalidation of each such tag, queued last: it then waits for the records before it
    that carry the tag, and misses whatever the drops would have (and more: the function's
    other entries, once). Returns (the invalidations made, the changes they replace: the
    drops, and an older invalidation of one of those tags)."""
    gone = list(drops)
    made: dict[str, Change] = {}
    for drop in gone:
        del queue[drop.ident]
        made.setdefault(drop.family, Change(drop.backend, TAGS, drop.family, drop.family_px))
    for tag in made.values():
        older = queue.pop(tag.ident, None)
        if older is not None:
            gone.append(older)
        queue[tag.ident] = tag
    return list(made.values()), gone


def _waits(change: Change, keys: set[str], tags: set[str]) -> bool:
    """Whether a drop or invalidation waits for a record before it (see :func:`next_run`):
    one of the same key, or carrying the tag; for ``EVERY``, any record (every entry carries
    its function's tag)."""
    if change.kind == EVERY:
        return bool(keys)
    return change.target in (tags if change.kind == TAGS else keys)


def merge_tags(queue: collections.OrderedDict[str, Change], backend: str, pattern: str
               ) -> tuple[list[Change], list[Change]]:
    """The tag invalidations of ``queue`` become one new token for every function tag key
    (``pattern``, found by SCAN when it is applied), queued last: every entry under the
    prefix misses once, whatever tags it carries. Returns ([the change made], the changes it
    replaces: the invalidations, and an older such change)."""
    gone = [change for change in queue.values() if change.kind in (TAGS, EVERY)]
    every = Change(backend, EVERY, pattern, max((c.px for c in gone), default=0))
    for change in gone:
        del queue[change.ident]
    queue[every.ident] = every
    return [every], gone


def _tag_keys(change: Change) -> Iterable[str]:
    push = change.push
    if push is None:
        return ()
    return (*push.tag_keys, *(push.write.tag_keys if push.write is not None else ()))


@runtime_checkable
class _Batched(Protocol):
    """A queue that sends many records in one round trip (a Redis stream on one server)."""

    def push_many(self, items: Sequence[Push]) -> None: ...


@runtime_checkable
class _AsyncBatched(Protocol):
    async def push_many(self, items: Sequence[Push]) -> None: ...


#: How long the tombstone of a record kept without one lives (a spool row of an older
#: version): a fill of the entry's old row while the record waits is refused that long.
KEPT_TOMB_PX: Final = 3_600_000


def _by_queue(run: list[Change]) -> dict[Any, list[Push]]:
    """The records of a run grouped by queue, each queue's in order, each with a tombstone in
    place of its entry: a record kept during an outage may be queued after newer ones other
    processes queued and flushed meanwhile (their entry is the newer value), so it leaves
    the entry to the next read, which loads what the database holds once it is flushed."""
    groups: dict[Any, list[Push]] = {}
    for change in run:
        if change.kind == RECORD:
            assert change.names is not None and change.push is not None
            push = change.push
            if push.write is not None:
                push = replace(push, write=None, tombstone=new_tombstone(),
                               tomb_px=push.tomb_px or KEPT_TOMB_PX)
            groups.setdefault(change.names, []).append(push)
    return groups


def _drops(run: list[Change], kind: str) -> tuple[list[str], int]:
    of = [c for c in run if c.kind == kind]
    return [c.target for c in of], max((c.px for c in of), default=0)


def apply(backend: Backend, run: list[Change]) -> None:
    """Carry out one run of changes (from :func:`next_run`): the drops in one round trip, the
    tag invalidations in another (an ``EVERY`` in a SCAN), the records in one per queue where
    the queue can."""
    keys, px = _drops(run, DROP)
    if keys:
        backend.invalidate(keys, new_tombstone(), px)
    tags, px = _drops(run, TAGS)
    if tags:
        backend.invalidate_tags(tags, new_tag_token(True), px)
    for change in run:
        if change.kind == EVERY:
            backend.invalidate_tags_matching(change.target, new_tag_token(True), change.px)
        if change.release is not None:
            backend.leases().repeat(change.release)
    for names, pushes in _by_queue(run).items():
        queue: Queue = backend.queue(names)
        if isinstance(queue, _Batched):
            queue.push_many(pushes)
            continue
        for push in pushes:
            with contextlib.suppress(NotStored):  # NotStored: queued, its entry dropped
                queue.push(push)


async def aapply(backend: AsyncBackend, run: list[Change]) -> None:
    """The asyncio form of :func:`apply`."""
    keys, px = _drops(run, DROP)
    if keys:
        await backend.invalidate(keys, new_tombstone(), px)
    tags, px = _drops(run, TAGS)
    if tags:
        await backend.invalidate_tags(tags, new_tag_token(True), px)
    for change in run:
        if change.kind == EVERY:
            await backend.invalidate_tags_matching(change.target, new_tag_token(True),
                                                   change.px)
        if change.release is not None:
            await backend.leases().repeat(change.release)
    for names, pushes in _by_queue(run).items():
        queue: AsyncQueue = backend.queue(names)
        if isinstance(queue, _AsyncBatched):
            await queue.push_many(pushes)
            continue
        for push in pushes:
            with contextlib.suppress(NotStored):
                await queue.push(push)
