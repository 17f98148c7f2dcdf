"""The entries auto-recovery holds back: those whose key or one of whose tags has a change
waiting (every entry of a backend while an ``EVERY`` waits), which this process must not serve
from the backend until the change lands; the waiting drops that know their function, which
``changes.merge_drops`` may merge (kept apart so that merging reads them, not a queue of
records and invalidations that may be long); and how many tag invalidations wait."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import TypeVar

from cachedeco.runtime.changes import DROP, EVERY, TAGS, Change

__all__ = ["Held"]

_T = TypeVar("_T")


class Held:
    """How many waiting changes concern each (backend, key) and (backend, tag key), and each
    backend's waiting drops that know their function, in the order they came."""

    def __init__(self) -> None:
        self._keys: collections.Counter[tuple[str, str]] = collections.Counter()
        self._tags: collections.Counter[tuple[str, str]] = collections.Counter()
        self._drops: dict[str, dict[str, Change]] = {}  # backend -> ident -> drop
        self._tag_counts: collections.Counter[str] = collections.Counter()  # backend -> TAGS
        self._every: collections.Counter[str] = collections.Counter()  # backend -> EVERY

    def blocks(self, backend: str, key: str, tag_keys: Sequence[str]) -> bool:
        """Whether the entry at ``key`` (with ``tag_keys``) has a change pending."""
        if (backend, key) in self._keys or (self._every and backend in self._every):
            return True
        tags = self._tags
        return bool(tags) and any((backend, t) in tags for t in tag_keys)

    def family_drops(self, backend: str) -> list[Change]:
        """The drops waiting for ``backend`` that know their function, oldest first."""
        return list(self._drops.get(backend, {}).values())

    def tag_changes(self, backend: str) -> int:
        """How many tag invalidations wait for ``backend``."""
        return self._tag_counts[backend]

    def hold(self, change: Change) -> None:
        """``change`` waits (a lease's release holds back no entry)."""
        if change.kind == EVERY:
            self._every[change.backend] += 1
            return
        if change.on_entries:
            (self._tags if change.kind == TAGS else self._keys)[
                (change.backend, change.target)] += 1
        if change.kind == TAGS:
            self._tag_counts[change.backend] += 1
        if change.kind == DROP and change.family:
            self._drops.setdefault(change.backend, {})[change.ident] = change

    def let_go(self, change: Change) -> None:
        """``change`` landed, was replaced or given up."""
        if not change.on_entries:
            return
        if change.kind == EVERY:
            _less(self._every, change.backend)
            return
        if change.kind == TAGS:
            _less(self._tag_counts, change.backend)
        drops = self._drops.get(change.backend)
        if drops is not None and drops.get(change.ident) is change:
            del drops[change.ident]
        _less(self._tags if change.kind == TAGS else self._keys, (change.backend, change.target))

    def clear(self) -> None:
        """Nothing waits (a forked child starts empty)."""
        self._keys.clear()
        self._tags.clear()
        self._drops.clear()
        self._tag_counts.clear()
        self._every.clear()


def _less(counter: collections.Counter[_T], where: _T) -> None:
    """One fewer at ``where``; gone at zero (a lookup then finds nothing)."""
    counter[where] -= 1
    if counter[where] <= 0:
        del counter[where]
