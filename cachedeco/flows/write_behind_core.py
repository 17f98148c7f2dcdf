"""The state of one ``@write_behind`` function and the steps of its calls that need no I/O.

A call writes the record as the cached entry and queues it: in one round trip on a single
server or Sentinel's primary; on Redis Cluster the record is queued first and the entry
stored after. While its record waits, the entry is *held*: stored with a soft expiry and a
TTL of at least ``HOLD`` (30 days), so that neither it nor its tag keys expire and no reader
refills it from a database that has not seen the record yet, and marked held (its load time
is ``entry.HELD``). The ack after a successful flush settles the key: an entry that still
holds that record's marker gets its normal soft expiry and TTL, counted from then, under a
new marker (a fill that read it after an invalidation must not store the older row it
loaded); a newer record's held entry is left alone; anything else (a fill, a refresh or an
invalidation that replaced the entry meanwhile, from the database's older row) gives way to a
tombstone, so the next read loads what was flushed. An entry whose record went to the dead
letters stays held until a replay flushes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Final, NoReturn

from cachedeco.backends.contracts.consumers import consumer_name
from cachedeco.backends.contracts.queues import (
    AsyncQueue,
    DeadLetter,
    NotReplicated,
    NotStored,
    Push,
    Queue,
)
from cachedeco.core.entry import HELD, NO_VALUE, Write, new_marker, new_tag_token, new_tombstone
from cachedeco.core.logs import say
from cachedeco.core.stats import Stats
from cachedeco.errors import BackendError, ConfigurationError, SerializationError
from cachedeco.flows.bound import Bound
from cachedeco.flows.delivery import Job, Settings, Stop, describe, withhold
from cachedeco.flows.link import Link
from cachedeco.runtime.changes import RECORD, Change
from cachedeco.runtime.guard import Guard
from cachedeco.runtime.workers import TaskWorker, ThreadWorker

__all__ = ["HOLD", "WriteBehindCore", "is_async"]

HOLD: Final = 30 * 24 * 3600.0  # seconds an entry is held, at least, while its record waits
#: Seconds close() goes on retrying a failing flush of a queue in Redis before it leaves the
#: batch queued for the next start.
CLOSE_GRACE: Final = 5.0


def _identity(value: Any, key: str) -> Any:
    """The decoder of records kept as objects (memory://)."""
    return value


def is_async(func: Callable[..., Any]) -> bool:
    """An async function, or an object whose ``__call__`` is one."""
    call = type(func).__dict__.get("__call__")
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call)


class WriteBehindCore:
    """One ``@write_behind`` function's link, flush, settings, counters and worker."""

    worker: ThreadWorker | TaskWorker

    def __init__(self, link: Link, flush: Callable[[list[Any]], Any], settings: Settings) -> None:
        self.link = link
        self.name = settings.name
        self.settings = settings
        self.is_async = is_async(flush)
        self.flush_fn = flush
        self.counters = Stats()
        self.since_take = 0
        self.queued_here = False  # whether this process queued a record (see WriteBehind)
        self.closing_since: float | None = None  # when close() began (monotonic), while it runs
        self._guards: tuple[Bound, Guard, Guard] | None = None
        self._lock = threading.Lock()
        self._alocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary())
        self._consumer = (0, "")

    @property
    def consumer(self) -> str:
        """This process's consumer name (a forked child gets its own)."""
        pid = os.getpid()
        if self._consumer[0] != pid:
            self._consumer = (pid, consumer_name())
        return self._consumer[1]

    def queue(self, bound: Bound) -> Queue:
        """The synchronous queue beside the bound backend."""
        return bound.slot.backend().queue(bound.keyspace.queue(self.name))

    def aqueue(self, bound: Bound) -> AsyncQueue:
        """The asyncio queue beside the bound backend (of the running loop)."""
        return bound.slot.abackend().queue(bound.keyspace.queue(self.name))

    def lock(self) -> contextlib.AbstractContextManager[Any]:
        """One drain at a time in this process (threads)."""
        return self._lock

    def alock(self) -> asyncio.Lock:
        """One drain at a time on the running event loop."""
        loop = asyncio.get_running_loop()
        lock = self._alocks.get(loop)
        if lock is None:
            lock = self._alocks[loop] = asyncio.Lock()
        return lock

    def _guard_pair(self, bound: Bound) -> tuple[Guard, Guard]:
        """The bound backend's failure policy counting into our stats, and a quiet one for the
        worker (it logs, never raises)."""
        cached = self._guards
        if cached is None or cached[0] is not bound:
            name, breaker = bound.slot.name, bound.guard.breaker
            cached = self._guards = (
                bound,
                Guard(name, self.counters, raise_errors=bound.guard.raise_errors,
                      breaker=breaker, prefix=bound.guard.prefix),
                Guard(name, self.counters, raise_errors=False, breaker=breaker,
                      prefix=bound.guard.prefix))
        return cached[1], cached[2]

    def quiet(self, bound: Bound) -> Guard:
        """The worker's failure policy: count and log (rate-limited)."""
        return self._guard_pair(bound)[1]

    def job(self, bound: Bound, durable: bool, stop: Stop) -> Job:
        """A drain's context under the current binding (codec, expiry policy)."""
        policy = bound.policy
        return Job(self.settings, self.counters, durable,
                   _identity if bound.codec is None else bound.codec.loads,
                   lambda now, value: policy.expiry(now, 0.0, policy.ttl_for(value)),
                   policy.hard_ms, stop, withhold if bound.sensitive else describe,
                   bound.keep_drops, prefix=bound.keyspace.prefix)

    # -- the call ---------------------------------------------------------------------------

    def prepare(self, bound: Bound, args: tuple[Any, ...], kwargs: dict[str, Any], value: Any
                ) -> tuple[Guard, Push, tuple[str, ...]]:
        """What one call queues, the record and the held entry (or a tombstone), and the
        entry's keys under older encryption keys (to drop), without I/O."""
        key, tag_keys, _, aliases = self.link.locate(bound, args, kwargs)
        payload = bound.encode(value, key)
        codec = bound.codec
        if codec is None:  # memory://: the record as Redis would decode it (see Link)
            record = payload if (self.link.records_as_entries
                                 and payload is not NO_VALUE) else value
        else:
            record = payload if payload is not NO_VALUE else codec.dumps(value, key)
        bound.flights.forget(key)
        guard = self._guard_pair(bound)[0]
        if payload is NO_VALUE:
            return guard, Push(key, tag_keys, None, record, new_tombstone(),
                               bound.policy.hard_ms), aliases
        hold = max(HOLD, bound.policy.hard_ms / 1000)
        write = Write(marker=new_marker(), value=payload, soft=time.time() + hold, delta=HELD,
                      px=int(hold * 1000), tag_keys=tag_keys, new_tag=new_tag_token(),
                      tag_px=bound.tag_px)
        return guard, Push(key, tag_keys, write, record, tomb_px=bound.policy.hard_ms), aliases

    def replication(self, bound: Bound) -> tuple[int, int]:
        """How many replicas must acknowledge a queued record, and the wait in ms."""
        replicas = self.settings.replicas
        if replicas and bound.slot.stores_objects:
            raise ConfigurationError(
                f"@write_behind {self.name} asks replicas={replicas}, but its backend "
                f"{bound.slot.name!r} is memory://, which has none", function=self.name)
        return replicas, int(self.settings.replicas_timeout * 1000)

    def not_replicated(self, bound: Bound, guard: Guard, item: Push, exc: NotReplicated
                       ) -> NoReturn:
        """Queued on the primary, but too few replicas acknowledged it in time: the call
        raises (the record may still be delivered: at least once)."""
        self.queued(guard, exc.length)
        guard.stats.backend_errors += 1
        raise BackendError(
            f"backend {bound.slot.name!r}: {exc.acked} of the {exc.wanted} replica(s) asked "
            f"for acknowledged the write-behind record within replicas_timeout="
            f"{self.settings.replicas_timeout}s (it was queued on the primary and may still "
            "be delivered)", key=item.key, function=self.name) from exc

    def keep(self, bound: Bound, guard: Guard, item: Push, exc: BaseException | None
             ) -> None:
        """The backend cannot take a record now (``exc``; None: its circuit breaker is open):
        keep it in the registry's spool, delivered once the backend is back (this process
        does not serve its entry from the backend meanwhile), or, without a spool, raise
        BackendError: a call that returns never loses its record."""
        bound.recovery.keep([self._kept(bound, guard, item, exc)], exc)

    async def akeep(self, bound: Bound, guard: Guard, item: Push, exc: BaseException | None
                    ) -> None:
        """The asyncio form of :meth:`keep` (the spool written in a thread)."""
        await bound.recovery.akeep([self._kept(bound, guard, item, exc)], exc)

    def _kept(self, bound: Bound, guard: Guard, item: Push, exc: BaseException | None
              ) -> Change:
        """The change that keeps a record the backend cannot take, counted; BackendError
        without a spool."""
        if bound.recovery.spool is None:
            hint = "the write-behind record was not queued (a registry spool= keeps records "
            hint += "while the backend is unreachable)"
            if exc is None:
                guard.stats.backend_errors += 1
                raise BackendError(f"backend {bound.slot.name!r} is skipped (circuit breaker "
                                   f"open): {hint}", key=item.key, function=self.name)
            raise guard.error(exc, key=item.key, function=self.name,
                              action=f"queue a record: {hint}") from exc
        guard.stats.backend_errors += 1
        if exc is not None:
            guard.breaker.failure()
        self.counters.write_behind_pending += 1  # waiting in the spool (a drain recounts)
        self.queued_here = True  # its own record: this process delivers it, forked or not
        px = item.write.px if item.write is not None else item.tomb_px
        return Change(bound.slot.name, RECORD, item.key, px, function=self.name,
                      names=bound.keyspace.queue(self.name), push=item)

    def hand_over(self, record: Any) -> None:
        """Caching is switched off: deliver one record to ``flush`` now (from a sync call)."""
        raise NotImplementedError  # WriteBehind's, which knows the worker's event loop

    async def ahand_over(self, record: Any) -> None:
        """The asyncio form of :meth:`hand_over`."""
        raise NotImplementedError

    def queued(self, guard: Guard, length: int) -> None:
        """After a push: count it, start the worker, wake it when a batch is full."""
        guard.breaker.success()
        self.counters.write_behind_pending = length
        self.queued_here = True
        self.worker.ensure()
        self.since_take += 1
        if self.since_take >= self.settings.batch_size:
            self.since_take = 0
            self.worker.notify()

    @contextlib.contextmanager
    def closing(self) -> Iterator[None]:
        """While close() runs: a failing ``flush`` is retried for CLOSE_GRACE (see hurry)."""
        self.closing_since = time.monotonic()
        try:
            yield
        finally:
            self.closing_since = None

    def hurry(self) -> bool:
        """Whether a drain stops retrying a failing ``flush`` (on a durable queue): once the
        registry has been closing for CLOSE_GRACE. The batch stays queued for another worker
        or the next start: close() must not wait out the retries of a database that is
        down (seconds to minutes: a rolling restart held), while a flush that failed once
        gets its retries (memory:// retries on: its records end with the process)."""
        since = self.closing_since
        return since is not None and time.monotonic() - since >= CLOSE_GRACE

    def deferred(self, job: Job) -> None:
        """A last drain that did not wait for a retry (its event loop shuts down, or the
        registry closes with the queue in Redis)."""
        say(job.prefix, logging.WARNING, "the flush of %s failed as its worker stopped; the "
            "batch stays queued for a later drain (another worker, or the next start)",
            self.name)

    def not_stored(self, guard: Guard, item: Push, exc: NotStored) -> None:
        """Queued, but the entry was not stored (Redis Cluster's second step failed): the
        record will be flushed all the same; log and count it (raise under on_error="raise")
        as write_through does when its store fails after the write."""
        self.queued(guard, exc.length)
        guard.absorb(exc.__cause__ or exc, key=item.key, function=self.name,
                     action="store the entry of a queued write-behind record (the record "
                            "will be flushed)")

    def decoded(self, bound: Bound, letters: list[DeadLetter]) -> list[DeadLetter]:
        """Dead letters with their records decoded and their function named."""
        decode = _identity if bound.codec is None else bound.codec.loads
        out = []
        for letter in letters:
            try:
                record = decode(letter.record, letter.key)
            except SerializationError:
                record = letter.record
            out.append(DeadLetter(letter.id, record, letter.key, letter.error, letter.failed_at,
                                  self.name, letter.marker, letter.tag_keys))
        return out
