"""The entries auto-recovery holds back: those whose key or one of whose tags has a change
waiting (every entry of a backend while an ``EVERY`` waits, or while its Sentinel primary moves
until a beat on the new one tells whether its data went back: :mod:`.lineage`), which this
process must not serve from the backend (nor from its near cache: :func:`unserved`) until the
change lands; the waiting drops that know their function, which ``changes.merge_drops`` may
merge (kept apart so that merging reads them, not a queue of records and invalidations that
may be long); and how many tag invalidations wait."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

from cachedeco.backends.open import BackendSlot
from cachedeco.runtime.changes import DROP, EVERY, TAGS, Change

__all__ = ["MOVE_HOLD", "Held", "unserved"]

#: The most seconds a move holds its backend's entries back: a beat that never comes (the
#: lineage's worker stopped) must not leave them unserved for good.
MOVE_HOLD: Final = 3.0

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
        #: backend -> (the watch's epoch it moves to, until when at most: monotonic)
        self._moving: dict[str, tuple[int, float]] = {}

    def blocks(self, backend: str, key: str, tag_keys: Sequence[str]) -> bool:
        """Whether the entry at ``key`` (with ``tag_keys``) has a change pending."""
        if (backend, key) in self._keys or (self._every and backend in self._every):
            return True
        if self._moving and (move := self._moving.get(backend)) and time.monotonic() < move[1]:
            return True
        tags = self._tags
        return bool(tags) and any((backend, t) in tags for t in tag_keys)

    def family_drops(self, backend: str) -> list[Change]:
        """The drops waiting for ``backend`` that know their function, oldest first."""
        return list(self._drops.get(backend, {}).values())

    def tag_changes(self, backend: str) -> int:
        """How many tag invalidations wait for ``backend``."""
        return self._tag_counts[backend]

    @property
    def moves(self) -> int:
        """How many backends are held by a move."""
        return len(self._moving)

    def hold_move(self, backend: str, epoch: int) -> None:
        """Every entry of ``backend`` waits: its primary moves (to the watch's ``epoch``)."""
        self._moving[backend] = (epoch, time.monotonic() + MOVE_HOLD)

    def end_move(self, backend: str, epoch: int) -> bool:
        """A beat sent at ``epoch`` answered: a move to that epoch or an earlier one is over
        (one that came after is not, unless its time ran out); whether one ended."""
        move = self._moving.get(backend)
        if move is None or (move[0] > epoch and time.monotonic() < move[1]):
            return False
        del self._moving[backend]
        return True

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
        self._moving.clear()


def unserved(slot: Callable[[str], BackendSlot], changes: Sequence[Change]) -> None:
    """This process must not serve the old values from its near cache either (the change
    stream reports nothing for a change that never reached the backend): told once they
    are held, so that a read either sees them held or began before and is refused."""
    for change in changes:
        near = slot(change.backend).near
        if near is None or not change.on_entries:
            continue
        if change.kind == EVERY:  # a replay of one (its target is a glob)
            near.flushed()
        else:
            near.changed([change.target])


def _less(counter: collections.Counter[_T], where: _T) -> None:
    """One fewer at ``where``; gone at zero (a lookup then finds nothing)."""
    counter[where] -= 1
    if counter[where] <= 0:
        del counter[where]
