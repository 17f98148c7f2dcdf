"""The write-behind delivery flow, written once and free of I/O.

A drain is a generator that yields the I/O it needs (:class:`Take`, :class:`Renew`,
:class:`Flush`, :class:`Ack`, :class:`Bury`, :class:`Sleep`) and is sent back the results, as
httpx's auth flows are; the drivers (``_async/deliver.py`` and its generated sync twin) only
carry the operations out. An exception an operation raised is thrown back in at its ``yield``: the
flow retries a raising ``flush`` and lets a backend failure end the drain.

Per batch: sort by queue order; count records claimed from a dead consumer as duplicates;
bury the undecodable; coalesce to the newest record per cache key (the others are acked as
superseded); then, while attempts remain, renew the lease (durable queues: only the records
still ours are flushed, so two processes never both deliver a record neither lost), call
``flush``, and on failure back off exponentially with jitter; finally ack, restoring the
flushed entries' normal expiry, or bury the batch after ``max_retries`` retries.

The ack settles each flushed key (:class:`~cachedeco.backends.contracts.queues.Restore`):
the entry still holding the newest record's marker gets its normal expiry; one held by a
newer record (queued after this batch was taken) is left alone; anything else gives way to a
tombstone, since it was loaded from the database before the flush (or is an older record's
entry). The markers of the key's older records in the batch, the superseded ones included,
are sent along: where a call stores its entry and queues its record atomically (one server,
memory) no entry holds one of them, but on Redis Cluster two concurrent calls with one key
can store their entries in the other order than they queued their records, and without it
that older entry would stay held (30 days) and be served in place of what was flushed. (An
entry whose store lands only after the ack is not settled at all: the two-step windows of
``docs/internals/write-behind.md``.)
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Final

from cachedeco.backends.contracts.queues import Message, NotSettled, Restore, order
from cachedeco.core.entry import new_marker, new_tombstone
from cachedeco.core.logs import say
from cachedeco.core.stats import Stats
from cachedeco.errors import SerializationError
from cachedeco.runtime.primitives import Stop

__all__ = [
    "Ack", "Bury", "Deferred", "Flush", "Job", "Op", "Renew", "Settings", "Sleep", "Stop", "Take",
    "describe", "drain", "withhold",
]

MAX_DELAY: Final = 60.0  # the longest backoff between two attempts, in seconds
_ERROR_CHARS: Final = 1000


@dataclass(frozen=True, slots=True)
class Settings:
    """What ``@write_behind`` was given, checked."""

    name: str
    batch_size: int
    flush_interval: float
    coalesce: bool
    max_retries: int
    claim_after: float
    retry_delay: float
    replicas: int = 0  # replicas that must acknowledge a queued record before a call returns
    replicas_timeout: float = 1.0  # seconds they have to

    @property
    def claim_after_ms(self) -> int:
        """The visibility timeout in milliseconds."""
        return int(self.claim_after * 1000)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (1, 2, …): doubling, with equal jitter."""
        delay = min(self.retry_delay * 2.0 ** (attempt - 1), max(MAX_DELAY, self.retry_delay))
        return delay / 2 + random.random() * delay / 2


@dataclass(frozen=True, slots=True)
class Take:
    """Take up to ``count`` records; the result is ``(messages, queue length)``."""

    count: int


@dataclass(frozen=True, slots=True)
class Renew:
    """Keep the lease on ``ids``; the result is the ids still ours."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Flush:
    """Call the user's flush with the decoded records (the driver renews ``ids`` meanwhile)."""

    records: list[Any]
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    """Drop delivered records and restore entries; the result is the queue's length."""

    ids: tuple[str, ...]
    restores: tuple[Restore, ...]


@dataclass(frozen=True, slots=True)
class Bury:
    """Move records to the dead letters; the result is the queue's length."""

    ids: tuple[str, ...]
    error: str


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait before the next attempt (the driver renews ``ids`` meanwhile)."""

    seconds: float
    ids: tuple[str, ...]


Op = Take | Renew | Flush | Ack | Bury | Sleep
Flow = Generator[Op, Any, None]


class Deferred(Exception):
    """A retry that a drain told not to wait (its event loop is shutting down) does not
    happen now: the driver gives the batch back, for a later drain."""


@dataclass(slots=True)
class Job:
    """One drain's context: settings, counters and the pure helpers of the current binding."""

    settings: Settings
    stats: Stats
    durable: bool
    #: A queued record (and its entry's key) back into the value the function returned.
    decode: Callable[[Any, str], Any]
    expiry: Callable[[float, Any], tuple[float, int]]  # soft expiry, px of a value flushed now
    tomb_px: int  # how long a tombstone the ack leaves lives, in ms
    stop: Stop  # True when the drain should end after the current batch
    #: An exception as logged and stored with a dead letter: :func:`describe`, or
    #: :func:`withhold` for a sensitive function (a flush error may quote its records).
    describe: Callable[[BaseException], str]
    #: Entries an ack could not settle, and why: their drops go to auto-recovery (what they
    #: hold may be the database's row from before the flush).
    unsettled: Callable[[tuple[str, ...], BaseException | None], None]
    taken: int = 0  # records this drain took
    #: Its last take left records it could not take: another consumer's batch in flight.
    blocked: bool = False
    prefix: str | None = None  # the registry's, for log lines


@dataclass(slots=True)
class _Record:
    """A taken message and the value its record decodes to."""

    message: Message
    value: Any


def _ids(records: list[_Record]) -> tuple[str, ...]:
    """The queue ids of records."""
    return tuple(r.message.id for r in records)


def describe(exc: BaseException) -> str:
    """An exception as stored with a dead letter."""
    return f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]


def withhold(exc: BaseException) -> str:
    """An exception of a sensitive function's flush as stored and logged: its type only."""
    return f"{type(exc).__name__} (message withheld: the function is sensitive)"


def coalesce(records: list[_Record]) -> tuple[list[_Record], list[_Record]]:
    """The newest record per cache key (in queue order), and the older ones it supersedes."""
    newest: dict[str, _Record] = {}
    for record in records:
        newest.pop(record.message.key, None)
        newest[record.message.key] = record
    keep = list(newest.values())
    kept = {id(r) for r in keep}
    return keep, [r for r in records if id(r) not in kept]


def drain(job: Job) -> Flow:
    """Take and deliver batches until one comes back short (or ``job.stop()``)."""
    size = job.settings.batch_size
    while True:
        messages, length = yield Take(size)
        job.stats.write_behind_pending = length
        job.taken += len(messages)
        job.blocked = length > len(messages)
        if messages:
            yield from deliver(job, messages)
        if len(messages) < size or job.stop():
            return


def deliver(job: Job, messages: list[Message]) -> Flow:
    """Deliver one batch: decode, coalesce, attempt with retries, then ack or bury."""
    messages = sorted(messages, key=lambda m: order(m.id))
    job.stats.write_behind_duplicates += sum(m.claimed for m in messages)
    records: list[_Record] = []
    for message in messages:
        try:
            records.append(_Record(message, job.decode(message.record, message.key)))
        except SerializationError as exc:
            say(job.prefix, logging.ERROR, "a write-behind record of %s cannot be decoded "
                "(%s); moved to the dead letters", job.settings.name, job.describe(exc))
            yield from bury(job, (message.id,), f"undecodable record: {job.describe(exc)}")
    keep, superseded = coalesce(records) if job.settings.coalesce else (records, [])
    flushed, superseded = yield from attempt(job, keep, superseded)
    done = _ids(flushed) + _ids(superseded)
    if done:
        try:
            job.stats.write_behind_pending = yield Ack(done, settle(job, flushed, superseded))
        except NotSettled as exc:  # acknowledged; those entries are dropped once they can be
            job.stats.write_behind_pending = exc.length
            job.unsettled(exc.keys, exc.__cause__)
    job.stats.write_behind_flushed += len(flushed)


def settle(job: Job, flushed: list[_Record], superseded: list[_Record]) -> tuple[Restore, ...]:
    """One :class:`Restore` per key flushed: its newest record's marker, and the markers of
    the key's older records of the batch (flushed too, or superseded)."""
    now = time.time()
    delivered = {r.message.key for r in flushed}
    newest: dict[str, _Record] = {}
    older: dict[str, list[str]] = {}
    for r in sorted(flushed + [r for r in superseded if r.message.key in delivered],
                    key=lambda r: order(r.message.id)):
        before = newest.get(r.message.key)
        if before is not None and before.message.marker:
            older.setdefault(r.message.key, []).append(before.message.marker)
        newest[r.message.key] = r
    restores = []
    for key, r in newest.items():
        # a record whose value is not cached left a tombstone: nothing to restore
        soft, px = job.expiry(now, r.value) if r.message.marker else (0.0, job.tomb_px)
        restores.append(Restore(key, r.message.marker, soft, px, new_marker(), new_tombstone(),
                                tuple(older.get(key, ())), r.message.tag_keys))
    return tuple(restores)


def attempt(job: Job, keep: list[_Record], superseded: list[_Record]
            ) -> Generator[Op, Any, tuple[list[_Record], list[_Record]]]:
    """Call flush until it succeeds or the retries run out; return (flushed, superseded)."""
    settings = job.settings
    tries = 0
    while keep:
        if job.durable:
            mine = set((yield Renew(_ids(keep) + _ids(superseded))))
            lost = [r for r in keep if r.message.id not in mine]
            if lost:
                say(job.prefix, logging.WARNING, "%d write-behind record(s) of %s were "
                    "claimed by another process (this one stalled longer than "
                    "claim_after=%ss); leaving them to it", len(lost), settings.name,
                    settings.claim_after)
            keep = [r for r in keep if r.message.id in mine]
            superseded = [r for r in superseded if r.message.id in mine]
            if not keep:
                break
        try:
            yield Flush([r.value for r in keep], _ids(keep))
        except Exception as exc:
            if tries >= settings.max_retries:
                say(job.prefix, logging.ERROR, "flush of %d write-behind record(s) of %s "
                    "failed %d time(s), the last with %s; moved to the dead letters",
                    len(keep), settings.name, tries + 1, job.describe(exc))
                yield from bury(job, _ids(keep), job.describe(exc))
                return [], superseded
            tries += 1
            delay = settings.backoff(tries)
            job.stats.write_behind_retried += len(keep)
            say(job.prefix, logging.WARNING, "flush of %d write-behind record(s) of %s failed "
                "(%s); retry %d of %d in %.2fs", len(keep), settings.name, job.describe(exc),
                tries, settings.max_retries, delay)
            yield Sleep(delay, _ids(keep) + _ids(superseded))
        else:
            return keep, superseded
    return [], superseded


def bury(job: Job, ids: tuple[str, ...], error: str) -> Flow:
    """Move records to the dead letters and count them."""
    job.stats.write_behind_pending = yield Bury(ids, error)
    job.stats.write_behind_dead += len(ids)
