"""Load watchers: what an exporter (a Prometheus histogram, an OpenTelemetry span) asks to
see of each load, and nothing else.

A function's :class:`~cachedeco.flows.bound.Bound` gets a ``watch`` hook when it is bound:
None unless some exporter watches its registry (or every registry), so a hit, and a load
nobody watches, cost nothing more. Adding or removing a watcher makes every function of the
registries concerned bind again, once.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Protocol

__all__ = ["Begin", "Finish", "Watcher", "Watchers", "watch_everywhere"]

#: Called when a load ends: its duration in seconds and the exception it raised, if any.
Finish = Callable[[float, BaseException | None], None]
#: Called when a load begins (before the function runs); returns what to call at its end.
Begin = Callable[[], Finish]


class Watcher(Protocol):
    """An exporter's view of loads: the hook of one function of one registry."""

    def hook(self, prefix: str, function: str) -> Begin: ...


class _Revised(Protocol):
    def advance(self) -> None: ...


_everywhere: dict[Hashable, Watcher] = {}  # watchers of every registry of the process
_all: weakref.WeakSet[Watchers] = weakref.WeakSet()
_lock = threading.Lock()


class Watchers:
    """The watchers of one registry (and those of every registry)."""

    def __init__(self, owner: _Revised) -> None:
        self._owner = weakref.ref(owner)
        self._own: dict[Hashable, Watcher] = {}
        with _lock:
            _all.add(self)

    def add(self, key: Hashable, watcher: Watcher) -> None:
        """Watch this registry's loads; one watcher per ``key`` (a second one replaces it)."""
        with _lock:
            self._own[key] = watcher
        self.changed()

    def remove(self, key: Hashable) -> None:
        """Stop the watcher added under ``key`` (if any)."""
        with _lock:
            gone = self._own.pop(key, None)
        if gone is not None:
            self.changed()

    def changed(self) -> None:
        """Make every function of the registry bind again (and so take its new hook)."""
        owner = self._owner()
        if owner is not None:
            owner.advance()

    def hook(self, prefix: str, function: str) -> Begin | None:
        """The hook of one function: None when nothing watches (the usual case)."""
        with _lock:  # one key, one watcher, wherever it was added
            watchers = {**_everywhere, **self._own}
        if not watchers:
            return None
        begins = [w.hook(prefix, function) for w in watchers.values()]
        return begins[0] if len(begins) == 1 else _both(begins)


def watch_everywhere(key: Hashable, watcher: Watcher | None) -> None:
    """Watch the loads of every registry of the process, those made later too (None: stop)."""
    with _lock:
        if watcher is None:
            if _everywhere.pop(key, None) is None:
                return
        else:
            _everywhere[key] = watcher
        every = list(_all)
    for watchers in every:
        watchers.changed()


def _both(begins: list[Begin]) -> Begin:
    """One hook running several."""

    def begin() -> Finish:
        finishes = [b() for b in begins]

        def finish(seconds: float, exc: BaseException | None) -> None:
            for f in reversed(finishes):
                f(seconds, exc)

        return finish

    return begin
