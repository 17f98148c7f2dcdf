"""The hand-written sync/async twins everything else is generated around: waiting for a
flight, keeping something alive while work runs, background work, and the write-behind
workers. A thread (sync) or a task on the running loop (asyncio) does each, never both;
``tools/unasync.py`` maps each ``aname`` here to its ``name`` twin.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any

from cachedeco.runtime.guard import logger
from cachedeco.runtime.singleflight import Flight, Read, WaitTimeout

__all__ = [
    "Background",
    "Stop",
    "TaskWorker",
    "ThreadWorker",
    "ajoin_flight",
    "akeep_alive",
    "asleep",
    "await_woken",
    "join_flight",
    "keep_alive",
    "sleep",
    "wait_woken",
]

Stop = Callable[[], bool]  # asked by a drain between batches: True means end now
ErrorHook = Callable[[Exception], None]


# --- waiting for a flight ------------------------------------------------------------------


def join_flight(flight: Flight | Read, timeout: float | None) -> Any:
    """Wait for a flight in a thread; WaitTimeout after ``timeout`` seconds. Waiters block on
    the flight's latch, so its landing wakes them all at once."""
    if not flight.latch.wait(timeout):
        raise WaitTimeout
    if flight.error is not None:
        raise flight.error
    return flight.value


async def ajoin_flight(flight: Flight | Read, timeout: float | None) -> Any:
    """Wait for a flight in a task without ever cancelling the shared future."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: concurrent.futures.Future[Any]) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody left to wake
            loop.call_soon_threadsafe(_settle, waiter)

    flight.future.add_done_callback(wake)
    try:
        await asyncio.wait_for(waiter, timeout)
    except TimeoutError:
        raise WaitTimeout from None
    return flight.future.result()


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def wait_woken(woken: concurrent.futures.Future[None], timeout: float) -> bool:
    """Block until ``woken`` completes (True) or ``timeout`` seconds pass (False)."""
    with contextlib.suppress(concurrent.futures.TimeoutError):
        woken.result(timeout)
    return woken.done()


async def await_woken(woken: concurrent.futures.Future[None], timeout: float) -> bool:
    """:func:`wait_woken` in a task, without ever cancelling ``woken`` (it may be shared)."""
    if woken.done():
        return True
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: concurrent.futures.Future[None]) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody left to wake
            loop.call_soon_threadsafe(_settle, waiter)

    woken.add_done_callback(wake)
    try:
        await asyncio.wait_for(waiter, timeout)
    except TimeoutError:
        return False
    return True


# --- sleeping ------------------------------------------------------------------------------


def sleep(seconds: float) -> None:
    """Block this thread for ``seconds``."""
    time.sleep(seconds)


async def asleep(seconds: float) -> None:
    """Suspend this task for ``seconds``."""
    await asyncio.sleep(seconds)


# --- keeping something alive while work runs -----------------------------------------------


@contextlib.contextmanager
def keep_alive(renew: Callable[[], object], every: float, on_error: ErrorHook) -> Iterator[None]:
    """Call ``renew()`` every ``every`` seconds from a thread while the block runs; stop early
    when it returns False (what it kept is lost). Its errors go to ``on_error``."""
    done = threading.Event()

    def run() -> None:
        while not done.wait(every):
            try:
                if renew() is False:
                    return
            except Exception as exc:
                on_error(exc)

    thread = threading.Thread(target=run, name="cachedeco-keep-alive", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@contextlib.asynccontextmanager
async def akeep_alive(renew: Callable[[], Awaitable[object]], every: float,
                      on_error: ErrorHook) -> AsyncIterator[None]:
    """The asyncio form of :func:`keep_alive`: a task on the running loop."""

    async def run() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                if await renew() is False:
                    return
            except Exception as exc:
                on_error(exc)

    task = asyncio.get_running_loop().create_task(run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait([task])


# --- background work -----------------------------------------------------------------------


class Background:
    """A registry's background work: a small thread pool and a set of tasks, kept referenced
    until they end and waited for on close."""

    def __init__(self, threads: int = 4) -> None:
        self._threads = threads
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False  # set by close: work that retries stops at its next try

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the thread pool."""
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        self._threads, thread_name_prefix="cachedeco")
        self._pool.submit(fn, *args)

    def aspawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run the coroutine ``fn(*args)`` as a task on the running loop."""
        task = asyncio.get_running_loop().create_task(fn(*args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Wait for the threads' work and stop the pool."""
        self.closing = True
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    async def aclose(self) -> None:
        """Wait for the tasks (of this loop) to end."""
        self.closing = True
        loop = asyncio.get_running_loop()
        mine = [t for t in self._tasks if t.get_loop() is loop]
        if mine:
            await asyncio.gather(*mine, return_exceptions=True)


# --- write-behind workers ------------------------------------------------------------------


class ThreadWorker:
    """Drains a sync flush's queue (or does any periodic work) from a daemon thread."""

    def __init__(self, name: str, interval: float, drain: Callable[[Stop], None],
                 final: Callable[[], None], role: str = "write-behind") -> None:
        self.name = name
        self.role = role  # what the thread's name says it does
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
                logger.exception("cachedeco: the %s worker of %s failed", self.role, self.name)
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
    use, or, when it is first used outside any loop, on a loop of its own in a thread, which
    awaits ``last()`` (closing what was opened on it) before it ends."""

    def __init__(self, name: str, interval: float, drain: Callable[[Stop], Awaitable[None]],
                 final: Callable[[], Awaitable[None]], *,
                 last: Callable[[], Awaitable[None]] | None = None,
                 role: str = "write-behind") -> None:
        self.name = name
        self.role = role
        self.interval = interval
        self._drain = drain
        self._final = final
        self._last = last
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
                                              name=f"cachedeco-{self.role}:{self.name}")
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
                logger.exception("cachedeco: the %s worker of %s failed", self.role, self.name)
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
