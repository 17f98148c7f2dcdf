"""Work to end when the process exits without having been told.

:func:`at_exit` runs a function when the process ends normally, multiprocessing children
included (they end with ``os._exit``, which skips ``atexit``: uvicorn's workers are such
children); :func:`exit_with_process` calls an object's ``exit()`` then. What a forked child
makes anew is :mod:`cachedeco.core.forking`'s.
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["Leaving", "at_exit", "exit_with_process"]


class Leaving(Protocol):
    """Something with work to end when the process exits without having closed it."""

    def exit(self) -> None: ...


_lock = threading.Lock()


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # a parent's thread may have been enrolling at the fork


os.register_at_fork(after_in_child=_after_fork)


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
