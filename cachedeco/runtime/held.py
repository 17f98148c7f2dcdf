"""The entries auto-recovery holds back: those whose key or one of whose tags has a change
waiting, which this process must not serve from the backend until the change lands."""

from __future__ import annotations

import collections
from collections.abc import Sequence

from cachedeco.runtime.changes import TAGS, Change

__all__ = ["Held"]


class Held:
    """How many waiting changes concern each (backend, key) and (backend, tag key)."""

    def __init__(self) -> None:
        self._keys: collections.Counter[tuple[str, str]] = collections.Counter()
        self._tags: collections.Counter[tuple[str, str]] = collections.Counter()

    def blocks(self, backend: str, key: str, tag_keys: Sequence[str]) -> bool:
        """Whether the entry at ``key`` (with ``tag_keys``) has a change pending."""
        if (backend, key) in self._keys:
            return True
        tags = self._tags
        return bool(tags) and any((backend, t) in tags for t in tag_keys)

    def hold(self, change: Change) -> None:
        """``change`` waits (a lease's release holds back no entry)."""
        if change.on_entries:
            (self._tags if change.kind == TAGS else self._keys)[
                (change.backend, change.target)] += 1

    def let_go(self, change: Change) -> None:
        """``change`` landed, was replaced or given up."""
        if not change.on_entries:
            return
        counter = self._tags if change.kind == TAGS else self._keys
        where = (change.backend, change.target)
        counter[where] -= 1
        if counter[where] <= 0:
            del counter[where]

    def clear(self) -> None:
        """Nothing waits (a forked child starts empty)."""
        self._keys.clear()
        self._tags.clear()
