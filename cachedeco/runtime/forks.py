"""What a forked child must redo: objects that keep per-process state (a lock, a report
cursor, a background thread) register here; ``before_fork()`` (if they have one) runs in the
parent just before ``os.fork()``, ``after_fork()`` in every child."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol

__all__ = ["Forkable", "redo_after_fork"]


class Forkable(Protocol):
    """Something with per-process state to reset in a forked child."""

    def after_fork(self) -> None: ...


_objects: weakref.WeakSet[Forkable] = weakref.WeakSet()
_lock = threading.Lock()
_hooked: list[bool] = []


def redo_after_fork(obj: Forkable) -> None:
    """Call ``obj.after_fork()`` in every child this process forks while ``obj`` lives."""
    with _lock:
        if not _hooked and hasattr(os, "register_at_fork"):
            os.register_at_fork(before=_before, after_in_child=_after)
            _hooked.append(True)
        _objects.add(obj)


def _before() -> None:
    for obj in list(_objects):
        before = getattr(obj, "before_fork", None)
        if before is not None:
            before()


def _after() -> None:
    for obj in list(_objects):
        obj.after_fork()
