"""One ``@write_behind`` function as a registry service: its calls (sync and asyncio I/O from
``_sync/`` and ``_async/write_behind.py``), its worker, and its lifecycle
(``reg.flush`` / ``aflush`` / ``close`` / ``aclose``).

A sync ``flush`` is driven by a thread worker; an async one by a task, on the running loop of
its first use or, when first used outside any loop, on a loop of its own in a thread. A task
whose loop shuts down (``asyncio.run()`` ending) delivers what waits first, and the next
loop to queue a record starts another (one on a loop of its own when a loop in another
thread queued one during that last drain); ``close()`` drains once more after a worker that
ended with its loop (its last drain may have failed, or never ran when the loop was closed
without cancelling its tasks) or waits on a parked one. Records are delivered at least once:
a drain that is interrupted gives its batch back (unless its ``flush`` had returned).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, cast

from cachedeco.backends.contracts.queues import Push
from cachedeco.core.forking import forks, redo_after_fork
from cachedeco.core.stats import Stats
from cachedeco.errors import CacheError
from cachedeco.flows._async.write_behind import AsyncWriteBehindIO
from cachedeco.flows._sync.write_behind import WriteBehindIO
from cachedeco.flows.bound import Bound
from cachedeco.flows.delivery import Settings, Stop
from cachedeco.flows.link import Link
from cachedeco.flows.write_behind_core import CLOSE_GRACE
from cachedeco.runtime.guard import Guard
from cachedeco.runtime.process import exit_with_process
from cachedeco.runtime.workers import TaskWorker, ThreadWorker

__all__ = ["WriteBehind"]


class WriteBehind(WriteBehindIO, AsyncWriteBehindIO):
    """One ``@write_behind`` function: its queue, its worker and its counters (a registry
    service: ``reg.flush()``, ``reg.close()`` and ``reg.stats()`` reach it)."""

    def __init__(self, link: Link, flush: Callable[[list[Any]], Any], settings: Settings) -> None:
        super().__init__(link, flush, settings)
        self.worker = self._new_worker()
        self._fitting = threading.Lock()
        self.exiting = False  # the interpreter exits: the thread worker takes no more batches
        self._looked = float("-inf")  # when a process that queued nothing last looked
        redo_after_fork(self)
        exit_with_process(self)

    def _new_worker(self) -> ThreadWorker | TaskWorker:
        return self._task_worker() if self.is_async else ThreadWorker(
            self.name, self.settings.flush_interval, self._drain_quietly, self._final_quietly)

    def exit(self) -> None:
        """The interpreter exits without a close() (a pre-fork server's worker recycled
        after ``max_requests``): the thread worker's batch in flight is let finish and be
        acknowledged (killed with the interpreter mid-batch, it held the queue, one batch
        in flight, for ``claim_after``); then a process that queued records delivers what
        waits, as close() would, for what is left of CLOSE_GRACE (a worker that lives less
        than ``flush_interval`` delivered nothing before). A failing ``flush`` is not
        retried: its batch stays queued for the other processes."""
        worker = self.worker
        if not isinstance(worker, ThreadWorker) or not worker.running:
            return
        self.exiting = worker.stopping = True
        worker.notify()
        end = time.monotonic() + CLOSE_GRACE
        if not self._lock.acquire(timeout=CLOSE_GRACE):
            return
        self._lock.release()
        if self.queued_here and not self.left_in_memory():
            self.drain(raise_errors=False, stop=lambda: time.monotonic() > end, wait=False,
                       patience=end - time.monotonic())

    def _final_quietly(self) -> None:
        """The thread worker's last drain, unless the interpreter exits (see :meth:`exit`)."""
        if not self.exiting:
            self.final()

    def after_fork(self) -> None:
        """In a child: a worker of its own (its locks are new: the parent's worker may
        have held the drain's at the fork), started as anywhere: by a record the child
        queues, or its registry's first use there."""
        self._alocks = weakref.WeakKeyDictionary()
        self.queued_here = False
        self.worker = self._new_worker()

    def _task_worker(self) -> TaskWorker:
        return TaskWorker(self.name, self.settings.flush_interval, self._adrain_quietly,
                          self.afinal, last=self._close_loop_clients, shutdown=self._afinal_now)

    def prepare(self, bound: Bound, args: tuple[Any, ...], kwargs: dict[str, Any], value: Any
                ) -> tuple[Guard, Push, tuple[str, ...]]:
        """See :meth:`WriteBehindCore.prepare` (after :meth:`_fit`)."""
        if not self.is_async:
            self._fit(bound)
        return super().prepare(bound, args, kwargs, value)

    def _fit(self, bound: Bound | None = None) -> None:
        """A sync ``flush`` beside a backend given an asyncio client only, which only its
        loop can reach: from now on driven as an async one is, by a task on that loop, the
        flush run in a thread (``asyncio.to_thread``)."""
        if self.is_async or "sync" in (bound or self.link.bound()).slot.flavours:
            return
        with self._fitting:
            if self.is_async:
                return
            self.worker.stop()  # a thread started for a backend configure() replaced since
            in_thread = self.flush_fn

            async def flush(records: list[Any]) -> Any:
                return await asyncio.to_thread(in_thread, records)

            self.flush_fn, self.worker, self.is_async = flush, self._task_worker(), True

    def _drain_quietly(self, stop: Stop) -> None:
        """The thread worker's drain: backend failures are logged, not raised. A process
        that forked and never queued a record (a pre-fork server's master, which read while
        loading the app) leaves the queue to its children: a ``flush`` run there would open
        the database's connections in the process every worker is forked from."""
        if self.exiting or (forks() and not self.queued_here) or self._idle():
            return
        self.drain(raise_errors=False, stop=stop)

    async def _adrain_quietly(self, stop: Stop) -> None:
        """The task worker's drain: backend failures are logged, not raised."""
        if not self._idle():
            await self.adrain(raise_errors=False, stop=stop)

    def _idle(self) -> bool:
        """Whether to skip this round: a process that queued no record looks only for what
        others left (a dead process's records) and does so every ``claim_after`` seconds,
        not every ``flush_interval`` (every reader of a service polled each queue so)."""
        if self.queued_here:
            return False
        now = time.monotonic()
        if now - self._looked < self.settings.claim_after:
            return True
        self._looked = now
        return False

    async def _afinal_now(self) -> None:
        """The task worker's last drain as its loop shuts down: a failing ``flush`` is not
        retried there (its backoff would hold the loop's end for seconds; ``asyncio.run()``
        per job would pay it every job): its batch stays queued."""
        await self.afinal(wait=False)

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
        finally:
            await self._close_loop_clients()

    async def _close_loop_clients(self) -> None:
        """The running loop is about to end: close the registry's clients made for it."""
        await self.link.spec.registry.aclose_clients_here()

    # -- while caching is switched off: each record goes to flush at once -------------------

    def hand_over(self, record: Any) -> None:
        """Deliver one record to ``flush`` now, from a sync call; its error is the caller's."""
        if self.is_async:
            self._blocking(lambda: self.flush_fn([record]))
        else:
            self.flush_fn([record])
        self.counters.write_behind_flushed += 1

    async def ahand_over(self, record: Any) -> None:
        """Deliver one record to ``flush`` now, from an asyncio call."""
        if self.is_async:
            await self.flush_fn([record])
        else:
            await asyncio.to_thread(self.flush_fn, [record])
        self.counters.write_behind_flushed += 1

    # -- lifecycle (reg.flush / aflush / close / aclose) -------------------------------------

    def flush(self) -> None:
        """Deliver every waiting record now (once another process's batch in flight is
        acknowledged, CLOSE_GRACE at most); BackendError if the queue cannot be read."""
        self._fit()
        self.worker.ensure()
        if self.is_async:
            self._blocking(lambda: self.adrain(raise_errors=True, patience=CLOSE_GRACE))
        else:
            self.drain(raise_errors=True, patience=CLOSE_GRACE)

    async def aflush(self) -> None:
        """The asyncio form of :meth:`flush`."""
        self._fit()
        self.worker.ensure()
        if self.is_async:
            await self._on_worker_loop(
                lambda: self.adrain(raise_errors=True, patience=CLOSE_GRACE))
        else:
            await asyncio.to_thread(self.drain, raise_errors=True, patience=CLOSE_GRACE)

    def left_in_memory(self) -> bool:
        """Whether records wait in an in-process queue that no worker will deliver (none
        when never bound: binding it here, before a configure(), would make it a function of
        the old settings: its metrics series under the old prefix)."""
        if not self.link.spec.used:
            return False
        try:
            bound = self.link.bound()
            return bool(bound.slot.stores_objects and getattr(self.queue(bound), "pending", 0))
        except CacheError:
            return False

    def close(self) -> None:
        """Stop the worker after its batch, once it delivered what waits (no-op if unused);
        a last drain runs here when the worker's loop ended before. A failing ``flush`` is
        retried for CLOSE_GRACE at most on Redis (see :meth:`hurry`)."""
        with contextlib.suppress(CacheError):  # not bound (never used): nothing to fit
            self._fit()
        with self.closing():
            if self.worker.stop() or not self._left_behind():
                return
            if self.is_async:
                self._blocking(self.afinal)
            else:
                self.final()

    async def aclose(self) -> None:
        """The asyncio form of :meth:`close`."""
        with contextlib.suppress(CacheError):
            self._fit()
        if not self.is_async:
            await asyncio.to_thread(self.close)
            return
        with self.closing():
            if await cast(TaskWorker, self.worker).astop() or not self._left_behind():
                return
            await self.afinal()

    def _left_behind(self) -> bool:
        """Whether records may wait that no worker will deliver: in an in-process queue, or
        in a queue whose task ended with its loop (a last drain that failed, or never ran
        when the loop was closed without cancelling its tasks) or waits on a parked loop
        (one reused with ``run_until_complete()`` and not running now)."""
        return (self.left_in_memory() or self.worker.take_ended()
                or self.worker.take_parked())

    def start(self) -> None:
        """Its registry is in use: a queue on a server gets its worker now, so that records a
        process that died (or a close() during a database outage) left there are delivered
        without waiting for a call of this function here. A setting it refuses is left for
        its own calls to raise."""
        try:
            bound = self.link.bound()
            if bound.slot.stores_objects or not bound.enabled:
                return
            self._fit(bound)
            self.worker.ensure()
        except (CacheError, RuntimeError):  # RuntimeError: the interpreter shuts down
            return

    def wake(self) -> None:
        """Records were queued again (auto-recovery): deliver them soon (a process that
        queued none itself looks now, not at its next ``claim_after`` round)."""
        self._looked = float("-inf")
        self.worker.ensure()
        self.worker.notify()

    def stats(self) -> Stats:
        """A snapshot of this function's write-behind counters."""
        return self.counters.snapshot()
