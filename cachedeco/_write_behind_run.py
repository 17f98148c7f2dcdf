"""The write-behind drivers and workers: only the I/O of the flow in ``_write_behind_flow``.

``run_sync`` / ``run_async`` carry a drain's operations out against a queue, keeping the
lease on a batch alive (a thread or a task renews it every ``claim_after / 3``) while the
user's ``flush`` runs, and giving a batch back when the delivery is interrupted (a
``KeyboardInterrupt``, a cancelled task). A :class:`ThreadWorker` drains for a sync
``flush``, a :class:`TaskWorker` (an asyncio task) for an async one: each drains every
``flush_interval`` or when woken, finishes its batch when stopped, drains what is left and
only then ends; nothing ever cancels a flush in the middle of a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from cachedeco._write_behind_flow import (
    Ack,
    Bury,
    Flow,
    Flush,
    Op,
    Renew,
    Settings,
    Sleep,
    Stop,
    Take,
    logger,
)
from cachedeco.backends.queues import AsyncQueue, Queue

__all__ = ["TaskWorker", "ThreadWorker", "run_async", "run_sync"]


class _Keeper:
    """Renews a lease from a thread every ``every`` seconds until the block ends."""

    def __init__(self, renew: Callable[[], object], every: float) -> None:
        self._renew = renew
        self._every = every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cachedeco-lease", daemon=True)

    def _run(self) -> None:
        while not self._done.wait(self._every):
            try:
                self._renew()
            except Exception as exc:
                logger.warning("cachedeco: cannot renew a write-behind lease (%s)", exc)

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._done.set()
        self._thread.join()


async def _keep(renew: Callable[[], Awaitable[object]], every: float) -> None:
    """Renew a lease from a task every ``every`` seconds until cancelled."""
    while True:
        await asyncio.sleep(every)
        try:
            await renew()
        except Exception as exc:
            logger.warning("cachedeco: cannot renew a write-behind lease (%s)", exc)


def _do_sync(op: Op, queue: Queue, consumer: str, flush: Callable[[list[Any]], object],
             settings: Settings) -> Any:
    match op:
        case Take(count):
            return queue.take(consumer, count, settings.claim_after_ms)
        case Renew(ids):
            return queue.renew(consumer, ids)
        case Flush(records, ids):
            with _lease(queue, consumer, ids, settings):
                return flush(records)
        case Ack(ids, restores):
            return queue.ack(ids, restores)
        case Bury(ids, error):
            return queue.bury(ids, error)
        case Sleep(seconds, ids):
            with _lease(queue, consumer, ids, settings):
                time.sleep(seconds)
    return None


def _lease(queue: Queue, consumer: str, ids: tuple[str, ...], settings: Settings
           ) -> contextlib.AbstractContextManager[None]:
    """Keep the lease on ``ids`` for the block (durable queues only)."""
    if not queue.durable:
        return contextlib.nullcontext()
    return _Keeper(lambda: queue.renew(consumer, ids), settings.claim_after / 3)


async def _do_async(op: Op, queue: AsyncQueue, consumer: str,
                    flush: Callable[[list[Any]], Awaitable[object]], settings: Settings) -> Any:
    match op:
        case Take(count):
            return await queue.take(consumer, count, settings.claim_after_ms)
        case Renew(ids):
            return await queue.renew(consumer, ids)
        case Flush(records, ids):
            return await _aleased(flush(records), queue, consumer, ids, settings)
        case Ack(ids, restores):
            return await queue.ack(ids, restores)
        case Bury(ids, error):
            return await queue.bury(ids, error)
        case Sleep(seconds, ids):
            await _aleased(asyncio.sleep(seconds), queue, consumer, ids, settings)
    return None


async def _aleased(work: Awaitable[Any], queue: AsyncQueue, consumer: str,
                   ids: tuple[str, ...], settings: Settings) -> Any:
    """Await ``work`` keeping the lease on ``ids`` (durable queues only)."""
    if not queue.durable:
        return await work
    every = settings.claim_after / 3
    keeper = asyncio.create_task(_keep(lambda: queue.renew(consumer, ids), every))
    try:
        return await work
    finally:
        keeper.cancel()
        await asyncio.wait([keeper])


def run_sync(flow: Flow, queue: Queue, consumer: str, flush: Callable[[list[Any]], object],
             settings: Settings) -> None:
    """Carry out a flow in this thread; a failing operation's error goes back into the flow."""
    held: tuple[str, ...] = ()
    result: Any = None
    error: Exception | None = None
    try:
        while True:
            try:
                op = flow.send(result) if error is None else flow.throw(error)
            except StopIteration:
                return
            result, error = None, None
            try:
                result = _do_sync(op, queue, consumer, flush, settings)
            except Exception as exc:
                error = exc
            if isinstance(op, Take) and error is None:
                held = tuple(m.id for m in result[0])
    except BaseException:
        flow.close()
        if held:
            with contextlib.suppress(Exception):
                queue.release(consumer, held, settings.claim_after_ms)
        raise


async def run_async(flow: Flow, queue: AsyncQueue, consumer: str,
                    flush: Callable[[list[Any]], Awaitable[object]], settings: Settings) -> None:
    """Carry out a flow in this task; see :func:`run_sync`."""
    held: tuple[str, ...] = ()
    result: Any = None
    error: Exception | None = None
    try:
        while True:
            try:
                op = flow.send(result) if error is None else flow.throw(error)
            except StopIteration:
                return
            result, error = None, None
            try:
                result = await _do_async(op, queue, consumer, flush, settings)
            except Exception as exc:
                error = exc
            if isinstance(op, Take) and error is None:
                held = tuple(m.id for m in result[0])
    except BaseException:
        flow.close()
        if held:
            with contextlib.suppress(Exception):
                await asyncio.shield(queue.release(consumer, held, settings.claim_after_ms))
        raise


class ThreadWorker:
    """Drains a sync flush's queue from a daemon thread."""

    def __init__(self, name: str, interval: float, drain: Callable[[Stop], None],
                 final: Callable[[], None]) -> None:
        self.name = name
        self.interval = interval
        self._drain = drain
        self._final = final
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.stopping = False

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def ensure(self) -> None:
        """Start the thread unless it runs."""
        if self.running:
            return
        with self._lock:
            if self.running:
                return
            self.stopping = False
            self._wake.clear()
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"cachedeco-write-behind:{self.name}")
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
                logger.exception("cachedeco: the write-behind worker of %s failed", self.name)
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


class TaskWorker:
    """Drains an async flush's queue from an asyncio task: on the running loop of its first
    use, or, when it is first used outside any loop, on a loop of its own in a thread."""

    def __init__(self, name: str, interval: float, drain: Callable[[Stop], Awaitable[None]],
                 final: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self.interval = interval
        self._drain = drain
        self._final = final
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._host: threading.Thread | None = None
        self.stopping = False

    @property
    def running(self) -> bool:
        """Whether the task is alive on an open loop."""
        task, loop = self._task, self.loop
        return task is not None and not task.done() and loop is not None and not loop.is_closed()

    def ensure(self) -> None:
        """Start the task unless it runs (on this thread's loop, or on a loop of its own)."""
        if self.running:
            return
        with self._lock:
            if self.running:
                return
            self.stopping = False
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                ready = threading.Event()
                self._host = threading.Thread(target=self._run_host, args=(ready,), daemon=True,
                                              name=f"cachedeco-write-behind:{self.name}")
                self._host.start()
                ready.wait()
            else:
                self._host = None
                self._start(loop)

    def _start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
        self._wake = asyncio.Event()
        self.loop = loop
        self._task = loop.create_task(self._run())
        return self._task

    def _run_host(self, ready: threading.Event) -> None:
        async def main() -> None:
            task = self._start(asyncio.get_running_loop())
            ready.set()
            await task

        asyncio.run(main())

    def notify(self) -> None:
        """Drain now rather than at the next interval (from any thread)."""
        loop, wake = self.loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop
                loop.call_soon_threadsafe(wake.set)

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.interval)
            wake.clear()
            if self.stopping:
                break
            try:
                await self._drain(lambda: self.stopping)
            except Exception:
                logger.exception("cachedeco: the write-behind worker of %s failed", self.name)
        await self._final()

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
