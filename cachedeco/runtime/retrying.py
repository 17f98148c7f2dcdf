"""Auto-recovery's worker: a daemon thread that attempts what waits for backends with a sync
client (and looks at the spool now and then), a task on the caller's loop for backends given
an asyncio client only. It never dies of an error: it logs it and tries again later."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Final

from cachedeco.runtime.guard import warn
from cachedeco.runtime.primitives import acancel_lost
from cachedeco.runtime.reach import Reach

__all__ = ["ADOPT_EVERY", "REACH", "RETRY", "Retrying"]

RETRY: Final = 0.25  # seconds between two attempts while changes wait
ADOPT_EVERY: Final = 2.0  # seconds between two looks at the spool for changes left by others
#: The most seconds a worker probes (:mod:`.reach`) before a try, which then goes all the
#: same (a probe that cannot connect where the client can: once such a try lands, that
#: server's tries go unprobed). Long: a try that goes while the server is frozen may open a
#: connection its full accept queue never takes, and wait on it past the heal (up to
#: ``socket_connect_timeout``), which the probes are there to spare; a server that is down
#: refuses probes and tries alike, and the first probe that connects starts the try.
REACH: Final = 30.0


def _pause(began: float) -> float:
    """The wait before the next attempt: :data:`RETRY` from the start of the last one. One
    that timed out (a frozen server) is followed at once by the next, so an attempt is always
    under way and lands the moment the server answers again; one that failed at once waits."""
    return max(0.0, RETRY - (time.monotonic() - began))


def _current_task() -> asyncio.Task[Any] | None:
    """The task running here, if a loop runs here."""
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _failed(exc: Exception) -> None:
    warn("recovery", "the recovery worker failed (%s: %s)", type(exc).__name__, exc,
         level=logging.ERROR)


def _probe(step: Callable[..., None], *args: Any) -> None:
    """A step of the probes (:mod:`.reach`): one that fails is logged, and the try goes
    without it (a probe never holds a try back)."""
    try:
        step(*args)
    except Exception as exc:
        _probe_failed(exc)


async def _aprobe(step: Awaitable[None]) -> None:
    """The asyncio form of :func:`_probe`."""
    try:
        await step
    except Exception as exc:
        _probe_failed(exc)


def _probe_failed(exc: Exception) -> None:
    warn("reach", "a recovery probe failed (%s: %s); the try goes without it",
         type(exc).__name__, exc)


class Retrying:
    """Runs ``adopt`` then ``attempt`` (which returns how many changes still wait) every
    :data:`RETRY` seconds (or at once after an attempt that took that long) while changes
    wait, at once when kicked, and, while ``spooled()``, every :data:`ADOPT_EVERY` seconds
    even when nothing waits."""

    def __init__(self, attempt: Callable[[bool], int],
                 aattempt: Callable[[bool], Awaitable[int]],
                 adopt: Callable[[], None], spooled: Callable[[], bool],
                 reach: Reach | None = None) -> None:
        self._reach = reach
        self._attempt = attempt
        self._aattempt = aattempt
        self._adopt = adopt
        self._spooled = spooled
        self.reset()

    def reset(self) -> None:
        """Nothing runs (a new registry, or a forked child: the parent's thread is not here)."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.thread: threading.Thread | None = None
        self._hurrying = False  # an urgent attempt runs (see hurry)
        self._urgent: asyncio.Task[None] | None = None  # its task (a loop keeps weak ones)
        self._tasks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
            weakref.WeakKeyDictionary())
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self.closed = False

    def kick(self, sync: bool) -> None:
        """Attempt soon: the thread (``sync``: the backend has a sync client), else a task on
        the running loop (outside one, nothing: the next change kept on a loop kicks again,
        and the thread reaches the loop noted at bind through :meth:`kick_loop`)."""
        if sync:
            self.start()
            self._wake.set()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = self._tasks.get(loop)
        if task is None or task.done():
            self._tasks[loop] = loop.create_task(self._arun())

    def note_loop(self) -> None:
        """Remember the running loop, if any (a call of the registry runs on it): changes
        the thread takes over for a backend with an asyncio client only are attempted there."""
        with contextlib.suppress(RuntimeError):  # no loop runs here
            self._loop = weakref.ref(asyncio.get_running_loop())

    def kick_loop(self) -> None:
        """From the thread: have a task on the loop last noted attempt what waits (a backend
        with an asyncio client only is reached from its loop, not from here)."""
        loop = None if self._loop is None else self._loop()
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(self.kick, False)

    def hurry(self, sync: bool) -> None:
        """A call got an answer after failures while changes wait: the attempt under way may
        be stuck on a connection the server never took (frozen, its accept queue filled by
        the connections every process opened meanwhile: the connect waits for TCP to send it
        again, a second later, or times out; :mod:`.reach`'s probe spares a single server
        and a Sentinel primary that, not Cluster), and until the drops and tag
        invalidations land other processes serve the entries they concern. So those go now,
        from a thread (or a task on the running loop) of their own, one at a time, beside
        that attempt (a change sent twice drops or invalidates twice: at most one more
        miss). Not from inside an attempt: one whose change landed also tells the
        breaker."""
        if self._hurrying or threading.current_thread() is self.thread or (
                not sync and _current_task() in list(self._tasks.values())):
            return
        self._hurrying = True
        try:
            if sync:
                threading.Thread(target=self._hurried, daemon=True,
                                 name="cachedeco-recovery-hurry").start()
            else:
                self._urgent = asyncio.get_running_loop().create_task(self._ahurried())
        except RuntimeError:  # no loop runs here, or the interpreter shuts down
            self._hurrying = False

    def _hurried(self) -> None:
        try:
            self._attempt(True)
        except Exception as exc:  # as the thread: log; the regular attempts go on
            _failed(exc)
        finally:
            self._hurrying = False

    async def _ahurried(self) -> None:
        try:
            await self._aattempt(True)
        except Exception as exc:
            _failed(exc)
        finally:
            self._hurrying = False

    def wake(self) -> None:
        """Have the thread look again now (changes were taken over from the spool)."""
        self._wake.set()

    def start(self) -> None:
        """Start the thread unless it runs (or the worker is closed)."""
        with self._lock:
            if self.thread is None and not self.closed:
                thread = threading.Thread(target=self._run, daemon=True,
                                          name="cachedeco-recovery")
                with contextlib.suppress(RuntimeError):  # the interpreter shuts down
                    thread.start()
                    self.thread = thread

    def _run(self) -> None:
        while not self.closed:
            began = time.monotonic()
            try:
                self._adopt()
                if self._reach is not None:  # a try on a connection the server takes
                    _probe(self._reach.wait, REACH, lambda: self.closed)
                left = self._attempt(False)
                if self._reach is not None:
                    _probe(self._reach.settle)
            except Exception as exc:  # never let the worker die: log, and try again later
                _failed(exc)
                left = 1
            if self.closed:
                return
            self._wake.wait(_pause(began) if left else ADOPT_EVERY if self._spooled() else None)
            self._wake.clear()

    async def _arun(self) -> None:
        while not self.closed:
            began = time.monotonic()
            try:
                if self._reach is not None:
                    await _aprobe(self._reach.await_(REACH, lambda: self.closed))
                left = await self._aattempt(False)
                if self._reach is not None:
                    await _aprobe(self._reach.asettle())
                if not left:
                    return
            except Exception as exc:  # as the thread: log, and try again later
                _failed(exc)
            if acancel_lost():  # its loop shuts down, and an attempt swallowed the cancel
                raise asyncio.CancelledError
            await asyncio.sleep(_pause(began))

    def close(self) -> bool:
        """Stop the thread (waiting up to 5 s for its attempt); whether it stopped (then a
        registry used again starts anew)."""
        self.closed = True
        self._wake.set()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        stopped = thread is None or not thread.is_alive()
        if stopped:
            self.thread, self.closed = None, False
        return stopped
