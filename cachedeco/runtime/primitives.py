"""The hand-written sync/async twins everything else is generated around: waiting for a
flight, keeping something alive while work runs, and background work. A thread (sync) or a
task on the running loop (asyncio) does each, never both; ``tools/unasync.py`` maps each
``aname`` here to its ``name`` twin. The periodic workers are in
:mod:`cachedeco.runtime.workers`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, Final

from cachedeco.runtime.singleflight import Flight, Read, WaitTimeout

__all__ = [
    "Background",
    "Stop",
    "acancel_lost",
    "acollected",
    "ahere",
    "ajoin_flight",
    "akeep_alive",
    "asleep",
    "cancel_lost",
    "collected",
    "here",
    "join_flight",
    "keep_alive",
    "never",
    "sleep",
]

Stop = Callable[[], bool]  # asked by a drain between batches: True means end now
ErrorHook = Callable[[Exception], None]


def cancel_lost() -> bool:
    """The sync form of :func:`acancel_lost`: a thread has no cancel to lose."""
    return False


def here() -> asyncio.AbstractEventLoop | None:
    """The sync form of :func:`ahere`: a thread has no loop to note."""
    return None


def ahere() -> asyncio.AbstractEventLoop | None:
    """The running loop, as a long-lived coroutine notes it to ask :func:`acollected` later."""
    return asyncio.get_running_loop()


def collected(loop: asyncio.AbstractEventLoop | None) -> bool:
    """The sync form of :func:`acollected`: a thread always runs."""
    return False


def acollected(loop: asyncio.AbstractEventLoop | None) -> bool:
    """Whether this coroutine no longer runs on ``loop``, where it started: the collector
    closes it, its loop closed under it (``loop.close()`` with tasks pending), from no loop or
    from another loop's task. A step that failed for that (a command cut off) must not lead
    to another: nothing can be awaited any more."""
    try:
        return asyncio.get_running_loop() is not loop
    except RuntimeError:
        return True


def acancel_lost() -> bool:
    """Whether the running task was asked to cancel and the request was lost on its way (on
    Python 3.11, redis-py's ``asyncio.wait_for`` returns a command's reply when the cancel
    comes as the command completes): a long-lived task must then end as if cancelled, or
    ``asyncio.run()``, which cancels the tasks left and waits for them, waits for good."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


# --- waiting for a flight ------------------------------------------------------------------


def join_flight(flight: Flight | Read, timeout: float | None) -> Any:
    """Wait for a flight in a thread; WaitTimeout after ``timeout`` seconds. Waiters block on
    the flight's latch, so its landing wakes them all at once."""
    if not flight.latch.wait(timeout):
        raise WaitTimeout
    return _landed(flight)


def _landed(flight: Flight | Read) -> Any:
    """What a flight that landed gives its waiters: its value, or its error raised."""
    if flight.error is not None:
        raise flight.error
    return flight.value


async def ajoin_flight(flight: Flight | Read, timeout: float | None) -> Any:
    """Wait for a flight in a task; WaitTimeout after ``timeout`` seconds. The landing wakes
    the loop's waiting tasks together; one that landed already answers at once."""
    if flight.latch.is_open:  # no future to make, no lock to take
        return _landed(flight)
    loop = asyncio.get_running_loop()
    waiter = flight.waiter(loop)
    if waiter is None:
        return _landed(flight)
    expiry = None if timeout is None else loop.call_later(timeout, _expire, waiter)
    try:
        await waiter
    finally:
        if expiry is not None:
            expiry.cancel()
    return _landed(flight)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(WaitTimeout())


# --- sleeping ------------------------------------------------------------------------------


#: How often a sleep that may end early asks whether it should (seconds).
NAP: Final = 0.1


def never() -> bool:
    """A stop condition that never asks to stop (a drain, a sleep that may end early)."""
    return False


def sleep(seconds: float, until: Stop = never) -> None:
    """Block this thread for ``seconds``, or until ``until()`` is true (asked every NAP)."""
    if until is never:
        time.sleep(seconds)
        return
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0 and not until():
        time.sleep(min(left, NAP))


async def asleep(seconds: float, until: Stop = never) -> None:
    """Suspend this task for ``seconds``, or until ``until()`` is true (asked every NAP)."""
    if until is never:
        await asyncio.sleep(seconds)
        return
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0 and not until():
        await asyncio.sleep(min(left, NAP))


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
    """The asyncio form of :func:`keep_alive`: a task on the running loop, stopped by a flag
    as well as cancelled: a cancellation that reaches it inside ``renew()`` may be lost there
    (on Python 3.11, redis-py's ``asyncio.wait_for`` returns a command's reply when the cancel
    comes as the command completes), and the block's exit must not wait for a task that
    renews on."""
    stopped = False

    async def run() -> None:
        while True:
            await asyncio.sleep(every)
            if stopped:
                return
            try:
                if await renew() is False:
                    return
            except Exception as exc:
                on_error(exc)

    loop = asyncio.get_running_loop()
    task = loop.create_task(run())
    try:
        yield
    finally:
        stopped = True
        if not acollected(loop):  # else closed unfinished, its loop gone: nothing to wait for
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
        #: How many times close ran: work that retries stops at its next try once it
        #: changed (a registry used again after close() retries its new work again).
        self.closes = 0

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
        self.closes += 1
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    async def aclose(self) -> None:
        """Wait for the tasks (of this loop) to end."""
        self.closes += 1
        loop = asyncio.get_running_loop()
        mine = [t for t in self._tasks if t.get_loop() is loop]
        if mine:
            await asyncio.gather(*mine, return_exceptions=True)
