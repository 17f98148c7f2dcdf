"""The periodic workers: a write-behind queue's drain (or any periodic work) from a daemon
thread for a sync flush, or from an asyncio task for an async one, stopped with a last
drain; an asyncio worker whose loop shuts down under it runs that last drain then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable

from cachedeco.core.logs import say
from cachedeco.runtime.primitives import Stop, acancel_lost

__all__ = ["Periodic", "TaskWorker", "ThreadWorker"]


class _Worker:
    """What both workers share: their name and role, and a start made once however many
    callers ask for it at the same time."""

    def __init__(self, name: str, interval: float, role: str) -> None:
        self.name = name
        self.role = role  # what the thread's name says it does
        self.interval = interval
        self._lock = threading.Lock()
        self.stopping = False

    @property
    def running(self) -> bool:
        """Whether it is at work (a live thread, a live task on an open loop)."""
        raise NotImplementedError

    def ensure(self) -> None:
        """Start it unless it runs."""
        if self.running:
            return
        with self._lock:
            if not self.running:
                self.stopping = False
                self._begin()

    def _begin(self) -> None:
        """Start it (under the lock, not running)."""
        raise NotImplementedError

    def take_ended(self) -> bool:
        """Whether it ended without being stopped, its last drain left to the caller; True
        once. Only a task can: its loop ends under it."""
        return False

    def take_parked(self) -> bool:
        """Whether it cannot run until its loop runs again, its last drain left to the
        caller; True once. Only a task can (see :meth:`TaskWorker.take_parked`)."""
        return False


class ThreadWorker(_Worker):
    """Drains a sync flush's queue (or does any periodic work) from a daemon thread."""

    def __init__(self, name: str, interval: float, drain: Callable[[Stop], None],
                 final: Callable[[], None], role: str = "write-behind") -> None:
        super().__init__(name, interval, role)
        self._drain = drain
        self._final = final
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _begin(self) -> None:
        self._wake.clear()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"cachedeco-{self.role}:{self.name}")
        self._thread.start()

    def notify(self) -> None:
        """Drain now rather than at the next interval."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self.stopping:
                break
            try:
                self._drain(lambda: self.stopping)
            except Exception:
                say(None, logging.ERROR, "the %s worker of %s failed", self.role, self.name,
                    exc_info=True)
        self._final()

    def stop(self) -> bool:
        """Stop after the current batch and the final drain; False if it was not running."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return False
        self.stopping = True
        self._wake.set()
        if thread is not threading.current_thread():
            thread.join()
        return True


class TaskWorker(_Worker):
    """Drains an async flush's queue from an asyncio task: on the running loop of its first
    use, or, when it is first used outside any loop, on a loop of its own in a thread, which
    awaits ``last()`` (closing what was opened on it) before it ends."""

    def __init__(self, name: str, interval: float, drain: Callable[[Stop], Awaitable[None]],
                 final: Callable[[], Awaitable[None]], *,
                 last: Callable[[], Awaitable[None]] | None = None,
                 shutdown: Callable[[], Awaitable[None]] | None = None,
                 role: str = "write-behind") -> None:
        super().__init__(name, interval, role)
        self._drain = drain
        self._final = final
        self._last = last
        #: The last drain when its loop shuts down under it (default: ``final``).
        self._shutdown = shutdown or final
        self.loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._host: threading.Thread | None = None
        self._asked = False  # ensure() was called during the last drain of a loop's end
        self._ended = False  # that last drain is over: the next ensure() starts another

    @property
    def running(self) -> bool:
        """Whether the task is alive on an open loop."""
        task, loop = self._task, self.loop
        return task is not None and not task.done() and loop is not None and not loop.is_closed()

    def ensure(self) -> None:
        """Start it unless it runs. A call while it runs is noted: one made during the last
        drain of a loop that shuts down may have queued a record after that drain's take."""
        with self._lock:
            if self.running and not self._ended:
                self._asked = True
                return
            self.stopping = self._ended = False
            self._begin()

    def take_parked(self) -> bool:
        """Whether its loop is parked: open but not running, the task unfinished (a loop
        reused with ``run_until_complete()`` between jobs), so that the task can neither
        drain nor be awaited; True once (the task is forgotten: the caller runs a last drain
        on a loop of its own)."""
        task, loop = self._task, self.loop
        if task is None or task.done() or loop is None or loop.is_closed() or loop.is_running():
            return False
        self._task = None
        return True

    def take_ended(self) -> bool:
        """Whether the task ended without being stopped: cancelled as its loop shut down
        (its last drain ran then, and may have failed) or left unfinished by a loop closed
        without cancelling its tasks (it never ran); True once (the task is forgotten: the
        caller runs a last drain)."""
        task, loop = self._task, self.loop
        if task is None or self.stopping or loop is None:
            return False
        if not task.done() and not loop.is_closed():
            return False
        self._task = None
        return True

    def _begin(self) -> None:
        """The task, on this thread's loop or on a loop of its own."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._begin_host()
        else:
            self._host = None
            self._start(loop)

    def _begin_host(self) -> None:
        """The task, on a loop of its own in a thread."""
        ready = threading.Event()
        self._host = threading.Thread(target=self._run_host, args=(ready,), daemon=True,
                                      name=f"cachedeco-{self.role}:{self.name}")
        self._host.start()
        ready.wait()

    def _start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
        self._wake = asyncio.Event()
        self.loop = loop
        self._task = loop.create_task(self._run())
        return self._task

    def _run_host(self, ready: threading.Event) -> None:
        async def main() -> None:
            task = self._start(asyncio.get_running_loop())
            ready.set()
            try:
                await task
            finally:
                if self._last is not None:
                    await self._last()

        asyncio.run(main())

    def notify(self) -> None:
        """Drain now rather than at the next interval (from any thread)."""
        loop, wake = self.loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop
                loop.call_soon_threadsafe(wake.set)

    async def _run(self) -> None:
        wake, me = self._wake, asyncio.current_task()
        assert wake is not None
        try:
            while True:
                with contextlib.suppress(TimeoutError):  # not wait_for: see core.woken
                    async with asyncio.timeout(self.interval):
                        await wake.wait()
                wake.clear()
                if self._task is not me:  # forgotten on a parked loop, run again since
                    return
                if self.stopping:
                    break
                try:
                    await self._drain(lambda: self.stopping)
                except Exception:
                    say(None, logging.ERROR, "the %s worker of %s failed", self.role,
                        self.name, exc_info=True)
                if acancel_lost():  # its loop shuts down, and the drain swallowed the cancel
                    raise asyncio.CancelledError
        except asyncio.CancelledError:
            # its loop shuts down (asyncio.run() cancels the tasks left): deliver what waits
            # now, on this loop, rather than leave it to a loop that may never run long enough
            # (the cancel taken back for it, so that its drain does not stop at once; the
            # task still ends cancelled)
            if me is not None:
                me.uncancel()
            with self._lock:
                self._asked = False
            await self._shutdown()
            self._hand_over()
            raise
        await self._final()

    def _hand_over(self) -> None:
        """After the last drain of a loop that shuts down, the next ``ensure()`` starts
        another worker. A call made during that drain, from another loop (in another
        thread), saw this one at work and started none, and its record may have been queued
        after the drain's take, with no loop of its caller left to deliver it: a loop of
        this worker's own (in a thread) takes over then, as when first used outside a loop."""
        with self._lock:
            self._ended = True
            if self._asked and not self.stopping:
                self._ended = False
                self._begin_host()

    def in_loop_thread(self) -> bool:
        """Whether this thread runs the worker's loop."""
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    async def astop(self) -> bool:
        """Stop after the current batch and the final drain; False if it was not running."""
        task, loop, host = self._task, self.loop, self._host
        if not self.running or task is None or loop is None:
            return False
        self.stopping = True
        self.notify()
        if loop is asyncio.get_running_loop():
            await asyncio.wait([task])
        elif host is not None:  # its own loop ends with the task: wait for the thread
            await asyncio.to_thread(host.join)
        elif loop.is_running():
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(asyncio.wait([task]), loop))
        else:
            return False  # its loop is parked: the task can neither finish nor be awaited
        return True

    def stop(self) -> bool:
        """The blocking form of :meth:`astop`, from a thread that does not run the loop."""
        task, loop, host = self._task, self.loop, self._host
        if not self.running or task is None or loop is None:
            return False
        self.stopping = True
        self.notify()
        if self.in_loop_thread():
            return True  # cannot wait here: the task finishes once this thread yields
        if host is not None:
            host.join()
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(asyncio.wait([task]), loop).result()
        else:
            return False
        return True


class Periodic:
    """A registry's periodic job (the service counters' reports, the lineage's beats): a
    daemon thread when its backend has a sync client, else a task on the caller's running
    loop; started once however many callers ask, stopped, and started again in a forked
    child that had its thread. Subclasses give :meth:`tick` and :meth:`atick` (and
    :meth:`last` / :meth:`alast`, what runs when it stops)."""

    def __init__(self, name: str, role: str) -> None:
        self._name, self._role = name, role
        self._lock = threading.Lock()
        self._worker: ThreadWorker | TaskWorker | None = None

    @property
    def running(self) -> bool:
        """Whether its thread or task is at work."""
        worker = self._worker
        return worker is not None and worker.running

    @property
    def worker(self) -> ThreadWorker | TaskWorker | None:
        """Its thread or task worker, once launched (its ``interval`` may be changed)."""
        return self._worker

    def tick(self) -> None:
        """One round, from the thread."""

    async def atick(self) -> None:
        """One round, from the task."""

    def last(self) -> None:
        """What the thread does when it stops (nothing, unless overridden)."""

    async def alast(self) -> None:
        """What the task does when it stops (nothing, unless overridden)."""

    def _launch(self, sync: bool, interval: float) -> bool:
        """Start a thread (``sync``), or a task on the running loop, unless one runs; False
        when none started (one runs, or no loop runs for a task: an asyncio client serves
        only its loop, so the next call on one starts it)."""
        with self._lock:
            if self.running:
                return False
            worker: ThreadWorker | TaskWorker
            if sync:
                worker = ThreadWorker(self._name, interval, lambda _stop: self.tick(),
                                      self.last, role=self._role)
            else:
                try:
                    asyncio.get_running_loop()
                except RuntimeError:
                    return False
                worker = TaskWorker(self._name, interval, lambda _stop: self.atick(),
                                    self.alast, role=self._role)
            self._worker = worker
            # RuntimeError: the interpreter shuts down (a call from a daemon thread after an
            # exit hook closed the registry): nothing runs any more
            with contextlib.suppress(RuntimeError):
                worker.ensure()
            return True

    def _end(self) -> None:
        """Its registry is gone: the worker ends after this round."""
        worker = self._worker
        if worker is not None:
            worker.stopping = True

    def ensure(self) -> None:
        """Start it if it should run (subclasses decide, then :meth:`_launch`)."""

    def stop(self) -> None:
        """Stop after its last act (from a thread that does not run the task's loop)."""
        worker = self._worker
        if worker is not None:
            worker.stop()

    async def astop(self) -> None:
        """The asyncio form of :meth:`stop`."""
        worker = self._worker
        if isinstance(worker, TaskWorker):
            await worker.astop()
        elif worker is not None:
            await asyncio.to_thread(worker.stop)

    def after_fork(self) -> None:
        """In a child: its own thread if the parent had one (its lock is new: every
        Periodic is registered or held by a registered object)."""
        had = isinstance(self._worker, ThreadWorker)
        self._worker = None
        if had:
            self.ensure()

