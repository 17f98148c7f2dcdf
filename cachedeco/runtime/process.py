"""Per-process state at a fork and at exit.

Objects that keep per-process state (a lock, a report cursor, a background thread) register
with :func:`redo_after_fork`: ``before_fork()`` (if they have one) runs in the parent just
before ``os.fork()``, ``after_fork()`` in every child. :func:`at_exit` runs a function when
the process ends normally, multiprocessing children included (they end with ``os._exit``,
which skips ``atexit``: uvicorn's workers are such children).
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["Forkable", "Leaving", "at_exit", "exit_with_process", "forks", "redo_after_fork"]


class Forkable(Protocol):
    """Something with per-process state to reset in a forked child."""

    def after_fork(self) -> None: ...


class Leaving(Protocol):
    """Something with work to end when the process exits without having closed it."""

    def exit(self) -> None: ...


_objects: weakref.WeakSet[Forkable] = weakref.WeakSet()
_lock = threading.Lock()
_forks = [0]  # the children this process forked (a child starts at 0)


def redo_after_fork(obj: Forkable) -> None:
    """Call ``obj.after_fork()`` in every child this process forks while ``obj`` lives."""
    with _lock:
        _objects.add(obj)


def forks() -> int:
    """How many children this process forked: above 0 in a pre-fork server's master, whose
    children do the work."""
    return _forks[0]


def _before() -> None:
    _forks[0] += 1
    for obj in list(_objects):
        before = getattr(obj, "before_fork", None)
        if before is not None:
            before()


def _after() -> None:
    _forks[0] = 0
    for obj in list(_objects):
        obj.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before, after_in_child=_after)


def at_exit(func: Callable[[], None]) -> None:
    """Call ``func()`` when this process (or a multiprocessing child of it) exits normally;
    it may run twice, so it must be idempotent. Keep ``func`` module-level: it lives on."""
    from multiprocessing import util

    atexit.register(func)
    util.Finalize(None, func, exitpriority=100)
    # a forked multiprocessing child forgets its parent's finalizers: register again there
    util.register_after_fork(func, lambda _: util.Finalize(None, func, exitpriority=100))


_leaving: weakref.WeakKeyDictionary[Leaving, int] = weakref.WeakKeyDictionary()
_leaving_order = itertools.count()
_exit_hooked: list[bool] = []


def exit_with_process(obj: Leaving) -> None:
    """Call ``obj.exit()`` when this process exits normally (see :func:`at_exit`), if ``obj``
    lives then; the objects enrolled last exit first, as atexit's functions do."""
    with _lock:
        if not _exit_hooked:
            _exit_hooked.append(True)
            at_exit(_exit_all)  # at_exit's functions may run twice: each exit() is idempotent
        _leaving.setdefault(obj, next(_leaving_order))


def _exit_all() -> None:
    with _lock:
        leaving = sorted(_leaving.items(), key=lambda item: -item[1])
    for obj, _ in leaving:
        obj.exit()
