"""One ``@write_behind`` function as a registry service: its call path, its drains and
lifecycle (``reg.flush`` / ``aflush`` / ``close`` / ``aclose``), counters and dead letters.

A call writes the record as the cached entry and queues it: in one round trip on a single
server or Sentinel's primary; on Redis Cluster the record is queued first and the entry
stored after, through the cluster backend (``backends/queues.py``). While its record waits,
the entry is *held*: stored with a soft expiry and a TTL of at least ``HOLD`` (30 days), so
that neither it nor its tag keys expire and no reader refills it from a database that has not
seen the record yet. The ack after a successful flush gives the entry its normal soft expiry
and TTL, counted from then, provided it still holds the marker of that record: a newer write
(itself still queued), an invalidation or a refill is left alone. An entry whose record
went to the dead letters stays held until a replay flushes it.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final, cast

from cachedeco._entry import NO_VALUE, Write, new_marker, new_tag_token, new_tombstone
from cachedeco._flow import Bound
from cachedeco._guard import BACKEND_ERRORS, Guard
from cachedeco._stats import Stats
from cachedeco._write import Link
from cachedeco._write_behind_flow import Job, Settings, Stop, drain
from cachedeco._write_behind_run import TaskWorker, ThreadWorker, run_async, run_sync
from cachedeco.backends.leases import hash_tagged
from cachedeco.backends.queues import (
    AsyncQueue,
    DeadLetter,
    NotStored,
    Push,
    Queue,
    QueueNames,
    open_async_queue,
    open_queue,
)
from cachedeco.errors import BackendError, CacheError, SerializationError

__all__ = ["HOLD", "WriteBehind"]

HOLD: Final = 30 * 24 * 3600.0  # seconds an entry is held, at least, while its record waits
REPLAY_CHUNK: Final = 500


def _never() -> bool:
    """A stop condition that never asks a drain to end early."""
    return False


def _identity(value: Any) -> Any:
    """The decoder of records kept as objects (memory://)."""
    return value


def _is_async(func: Callable[..., Any]) -> bool:
    """An async function, or an object whose ``__call__`` is one."""
    call = type(func).__dict__.get("__call__")
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call)


class WriteBehind:
    """One ``@write_behind`` function: its queue, its worker and its counters (a registry
    service: ``reg.flush()``, ``reg.close()`` and ``reg.stats()`` reach it)."""

    def __init__(self, link: Link, flush: Callable[[list[Any]], Any], settings: Settings) -> None:
        self.link = link
        self.name = settings.name
        self.settings = settings
        self.is_async = _is_async(flush)
        self._flush = flush
        self._stats = Stats()
        self._quiet = Guard(self.name, self._stats, raise_errors=False)  # the worker's log
        self._queues: weakref.WeakKeyDictionary[Any, Queue] = weakref.WeakKeyDictionary()
        self._aqueues: weakref.WeakKeyDictionary[Any, AsyncQueue] = weakref.WeakKeyDictionary()
        self._guard: tuple[Bound, Guard] | None = None
        self._lock = threading.Lock()
        self._alocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary())
        self._consumer = (0, "")
        self._since_take = 0
        self.worker: ThreadWorker | TaskWorker
        if self.is_async:
            self.worker = TaskWorker(self.name, settings.flush_interval, self._adrain_quietly,
                                     self._afinal)
        else:
            self.worker = ThreadWorker(self.name, settings.flush_interval, self._drain_quietly,
                                       self._final)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def consumer(self) -> str:
        """This process's consumer name (a forked child gets its own)."""
        pid = os.getpid()
        if self._consumer[0] != pid:
            self._consumer = (pid, f"{socket.gethostname()}:{pid}:{os.urandom(4).hex()}")
        return self._consumer[1]

    def _names(self, bound: Bound) -> QueueNames:
        """The queue's keys: internal keys of the bound registry, ``prefix:~wb:{name}`` (and
        ``…:dead``), hash-tagged by the function's name so both share one Cluster slot."""
        return QueueNames.of(bound.registry.internal_key("wb", hash_tagged(self.name)))

    def queue(self, bound: Bound) -> Queue:
        """The synchronous queue beside the bound backend."""
        backend = bound.slot.backend()
        queue = self._queues.get(backend)
        if queue is None:
            queue = self._queues[backend] = open_queue(backend, self._names(bound))
        return queue

    def aqueue(self, bound: Bound) -> AsyncQueue:
        """The asyncio queue beside the bound backend (of the running loop)."""
        backend = bound.slot.abackend()
        queue = self._aqueues.get(backend)
        if queue is None:
            queue = self._aqueues[backend] = open_async_queue(backend, self._names(bound))
        return queue

    def _guard_of(self, bound: Bound) -> Guard:
        """The registry's failure policy for the bound backend, counting into our stats."""
        cached = self._guard
        if cached is None or cached[0] is not bound:
            cached = self._guard = (bound, bound.registry.guard(bound.slot.name, self._stats))
        return cached[1]

    def _job(self, bound: Bound, durable: bool, stop: Stop) -> Job:
        """A drain's context under the current binding (codec, expiry policy)."""
        policy = bound.policy
        return Job(self.settings, self._stats, durable,
                   _identity if bound.codec is None else bound.codec.loads,
                   lambda now: policy.expiry(now, 0.0), stop)

    # -- the call ---------------------------------------------------------------------------

    def _prepare(self, args: tuple[Any, ...], kwargs: dict[str, Any], value: Any
                 ) -> tuple[Bound, Guard, Push]:
        """What one call queues, the record and the held entry (or a tombstone), without I/O;
        BackendError at once while the backend's circuit breaker is open."""
        bound = self.link.bound()
        key, tag_keys, _ = self.link.locate(bound, args, kwargs)
        payload = bound.encode(value)
        codec = bound.codec
        record = value if codec is None else payload if payload is not NO_VALUE else (
            codec.dumps(value))
        bound.flights.forget(key)
        guard = self._guard_of(bound)
        if not guard.allow(key, self.name):
            raise BackendError(f"backend {bound.slot.name!r} is skipped (circuit breaker open): "
                               "the write-behind record was not queued", key=key,
                               function=self.name)
        if payload is NO_VALUE:
            return bound, guard, Push(key, tag_keys, None, record, new_tombstone(),
                                      bound.policy.hard_ms)
        hold = max(HOLD, bound.policy.hard_ms / 1000)
        write = Write(marker=new_marker(), value=payload, soft=time.time() + hold, delta=0.0,
                      px=int(hold * 1000), tag_keys=tag_keys, new_tag=new_tag_token(),
                      tag_px=bound.tag_px)
        return bound, guard, Push(key, tag_keys, write, record, tomb_px=bound.policy.hard_ms)

    def _queued(self, guard: Guard, length: int) -> None:
        """After a push: count it, start the worker, wake it when a batch is full."""
        guard.breaker.success()
        self._stats.write_behind_pending = length
        self.worker.ensure()
        self._since_take += 1
        if self._since_take >= self.settings.batch_size:
            self._since_take = 0
            self.worker.notify()

    def _not_stored(self, guard: Guard, item: Push, exc: NotStored) -> None:
        """Queued, but the entry was not stored (Redis Cluster's second step failed): the
        record will be flushed all the same; log and count it (raise under on_error="raise")
        as write_through does when its store fails after the write."""
        self._queued(guard, exc.length)
        guard.failed(exc.__cause__ or exc, key=item.key, function=self.name,
                     action="store the entry of a queued write-behind record (the record "
                            "will be flushed)")

    def push(self, args: tuple[Any, ...], kwargs: dict[str, Any], value: Any) -> None:
        """Store and queue a sync call's record; BackendError if it could not be queued."""
        bound, guard, item = self._prepare(args, kwargs, value)
        try:
            length = self.queue(bound).push(item)
        except NotStored as exc:
            self._not_stored(guard, item, exc)
            return
        except BACKEND_ERRORS as exc:
            guard.fail(exc, key=item.key, function=self.name, action="queue a record")
        self._queued(guard, length)

    async def apush(self, args: tuple[Any, ...], kwargs: dict[str, Any], value: Any) -> None:
        """The asyncio form of :meth:`push`."""
        bound, guard, item = self._prepare(args, kwargs, value)
        try:
            length = await self.aqueue(bound).push(item)
        except NotStored as exc:
            self._not_stored(guard, item, exc)
            return
        except BACKEND_ERRORS as exc:
            guard.fail(exc, key=item.key, function=self.name, action="queue a record")
        self._queued(guard, length)

    # -- draining ---------------------------------------------------------------------------

    def _failed(self, exc: BaseException, raise_errors: bool) -> None:
        """A drain could not reach the queue: BackendError for flush(), a log line otherwise."""
        action = "flush the write-behind queue"
        if raise_errors:
            self._quiet.fail(exc, function=self.name, action=action)
        else:
            self._quiet.failed(exc, function=self.name, action=action)

    def drain(self, *, raise_errors: bool, stop: Stop = _never) -> None:
        """Deliver what waits, in this thread (a sync flush)."""
        with self._lock:
            self._since_take = 0
            bound = self.link.bound()
            queue = self.queue(bound)
            try:
                run_sync(drain(self._job(bound, queue.durable, stop)), queue, self.consumer,
                         self._flush, self.settings)
            except BACKEND_ERRORS as exc:
                self._failed(exc, raise_errors)

    async def adrain(self, *, raise_errors: bool, stop: Stop = _never) -> None:
        """Deliver what waits, in this task (an async flush)."""
        loop = asyncio.get_running_loop()
        lock = self._alocks.get(loop)
        if lock is None:
            lock = self._alocks[loop] = asyncio.Lock()
        async with lock:
            self._since_take = 0
            bound = self.link.bound()
            queue = self.aqueue(bound)
            try:
                await run_async(drain(self._job(bound, queue.durable, stop)), queue,
                                self.consumer, self._flush, self.settings)
            except BACKEND_ERRORS as exc:
                self._failed(exc, raise_errors)

    def _drain_quietly(self, stop: Stop) -> None:
        """The thread worker's drain: backend failures are logged, not raised."""
        self.drain(raise_errors=False, stop=stop)

    async def _adrain_quietly(self, stop: Stop) -> None:
        """The task worker's drain: backend failures are logged, not raised."""
        await self.adrain(raise_errors=False, stop=stop)

    def _final(self) -> None:
        """The last drain before the worker ends; then this consumer leaves the group."""
        self.drain(raise_errors=False)
        try:
            self.queue(self.link.bound()).release(self.consumer, (), 0)
        except BACKEND_ERRORS as exc:
            self._quiet.failed(exc, function=self.name, action="leave the consumer group")

    async def _afinal(self) -> None:
        """The asyncio form of :meth:`_final`."""
        await self.adrain(raise_errors=False)
        try:
            await self.aqueue(self.link.bound()).release(self.consumer, (), 0)
        except BACKEND_ERRORS as exc:
            self._quiet.failed(exc, function=self.name, action="leave the consumer group")

    async def _on_worker_loop(self, make: Callable[[], Any]) -> None:
        """Run ``make()`` on the async worker's loop (where the async flush lives)."""
        loop = cast(TaskWorker, self.worker).loop
        if loop is None or loop is asyncio.get_running_loop() or not loop.is_running():
            await make()
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(make(), loop))

    def _blocking(self, make: Callable[[], Any]) -> None:
        """Run ``make()`` on the async worker's loop from synchronous code, and wait."""
        worker = cast(TaskWorker, self.worker)
        loop = worker.loop
        if worker.in_loop_thread():
            raise CacheError(f"the flush of {self.name} is async and its event loop runs in "
                             "this thread: use `await reg.aflush()` / `await reg.aclose()`")
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(make(), loop).result()
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self._then_close_clients(make))
            return
        raise CacheError(f"the flush of {self.name} is async: use `await reg.aflush()`")

    async def _then_close_clients(self, make: Callable[[], Any]) -> None:
        """Await ``make()`` on a throwaway loop, then close the clients made for that loop."""
        try:
            await make()
        finally:  # this loop is about to close: so are the clients made for it
            backend = self.link.bound().slot.abackend()
            self._aqueues.pop(backend, None)
            if not backend.stores_objects:
                await backend.close()

    # -- lifecycle (reg.flush / aflush / close / aclose) -------------------------------------

    def flush(self) -> None:
        """Deliver every waiting record now; BackendError if the queue cannot be read."""
        self.worker.ensure()
        if self.is_async:
            self._blocking(lambda: self.adrain(raise_errors=True))
        else:
            self.drain(raise_errors=True)

    async def aflush(self) -> None:
        """The asyncio form of :meth:`flush`."""
        self.worker.ensure()
        if self.is_async:
            await self._on_worker_loop(lambda: self.adrain(raise_errors=True))
        else:
            await asyncio.to_thread(self.drain, raise_errors=True)

    def left_in_memory(self) -> bool:
        """Whether records wait in an in-process queue that no worker will deliver."""
        try:
            bound = self.link.bound()
            return bool(bound.slot.stores_objects and getattr(self.queue(bound), "pending", 0))
        except CacheError:
            return False

    def close(self) -> None:
        """Stop the worker after its batch, once it delivered what waits (no-op if unused)."""
        if self.worker.stop() or not self.left_in_memory():
            return
        if self.is_async:
            self._blocking(self._afinal)
        else:
            self._final()

    async def aclose(self) -> None:
        """The asyncio form of :meth:`close`."""
        if self.is_async:
            if await cast(TaskWorker, self.worker).astop() or not self.left_in_memory():
                return
            await self._afinal()
        else:
            await asyncio.to_thread(self.close)

    def stats(self) -> Stats:
        """A snapshot of this function's write-behind counters."""
        return self._stats.snapshot()

    # -- dead letters -----------------------------------------------------------------------

    def _decoded(self, bound: Bound, letters: list[DeadLetter]) -> list[DeadLetter]:
        """Dead letters with their records decoded and their function named."""
        decode = _identity if bound.codec is None else bound.codec.loads
        out = []
        for letter in letters:
            try:
                record = decode(letter.record)
            except SerializationError:
                record = letter.record
            out.append(DeadLetter(letter.id, record, letter.key, letter.error, letter.failed_at,
                                  self.name, letter.marker, letter.tag_keys))
        return out

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters, records decoded (left as bytes if they cannot be)."""
        bound = self.link.bound()
        try:
            return self._decoded(bound, self.queue(bound).dead_letters(limit))
        except BACKEND_ERRORS as exc:
            self._quiet.fail(exc, function=self.name, action="list dead letters")

    async def adead_letters(self, limit: int) -> list[DeadLetter]:
        """The asyncio form of :meth:`dead_letters`."""
        bound = self.link.bound()
        try:
            return self._decoded(bound, await self.aqueue(bound).dead_letters(limit))
        except BACKEND_ERRORS as exc:
            self._quiet.fail(exc, function=self.name, action="list dead letters")

    def replay_dead_letters(self) -> int:
        """Queue every dead letter again and wake the worker; return how many."""
        queue = self.queue(self.link.bound())
        total = 0
        try:
            while moved := queue.replay(REPLAY_CHUNK):
                total += moved
        except BACKEND_ERRORS as exc:
            self._quiet.fail(exc, function=self.name, action="replay dead letters")
        self.worker.ensure()
        self.worker.notify()
        return total

    async def areplay_dead_letters(self) -> int:
        """The asyncio form of :meth:`replay_dead_letters`."""
        queue = self.aqueue(self.link.bound())
        total = 0
        try:
            while moved := await queue.replay(REPLAY_CHUNK):
                total += moved
        except BACKEND_ERRORS as exc:
            self._quiet.fail(exc, function=self.name, action="replay dead letters")
        self.worker.ensure()
        self.worker.notify()
        return total
