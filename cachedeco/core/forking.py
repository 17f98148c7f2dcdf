"""Per-process state at a fork: what a forked child makes anew.

Objects that keep per-process state (a lock, a background thread, a connection) register with
:func:`redo_after_fork`. ``before_fork()`` (if they have one) runs in the parent just before
``os.fork()``. In the child, the locks of every registered object are made anew first (those in
its attributes, and in the attributes of the package's objects it holds), then each one's
``after_fork()`` (if it has one) runs. A child has only the thread that forked: a lock another
thread of the parent held at the fork would stay held there for good, and an ``after_fork()``
may call into another registered object. Here in ``core`` so that the backends, which keep
such locks too, register with the same hooks as the runtime.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Final

__all__ = ["forks", "redo_after_fork"]


_objects: weakref.WeakSet[object] = weakref.WeakSet()
_lock = threading.Lock()
_forks = [0]  # the children this process forked (a child starts at 0)


def redo_after_fork(obj: object) -> None:
    """In every child this process forks while ``obj`` lives, make its locks anew (see the
    module's docstring), then call its ``after_fork()`` if it has one."""
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


_LOCK: Final = type(threading.Lock())
_RLOCK: Final = type(threading.RLock())
_PACKAGE: Final = __name__.split(".")[0] + "."


def _fresh_locks(objects: list[object]) -> None:
    """Replace the locks held in the attributes of ``objects`` with new, free ones, and those
    of the package's objects their attributes hold, to any depth (not those in containers)."""
    seen: set[int] = set()
    todo = list(objects)
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        slots = getattr(type(obj), "__slots__", ())
        slots = [slots] if isinstance(slots, str) else slots
        for name in [*getattr(obj, "__dict__", ()), *slots]:
            value = getattr(obj, name, None)
            kind = type(value)
            if kind is _LOCK:
                setattr(obj, name, threading.Lock())
            elif kind is _RLOCK:
                setattr(obj, name, threading.RLock())
            elif kind.__module__.startswith(_PACKAGE):
                todo.append(value)


def _after() -> None:
    global _lock
    _lock = threading.Lock()  # a parent's thread may have been registering at the fork
    _forks[0] = 0
    objects = list(_objects)
    _fresh_locks(objects)  # every lock first: an after_fork() may take another object's
    for obj in objects:
        after = getattr(obj, "after_fork", None)
        if after is not None:
            after()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before, after_in_child=_after)
