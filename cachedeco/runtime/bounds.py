"""What a backend's pending changes become when too many wait: a long outage under many
writes keeps a few changes per function, not one per key or tag (each about 0.5 KB)."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Final

from cachedeco.core.keyspace import KeySpace
from cachedeco.runtime.changes import Change, merge_drops, merge_tags
from cachedeco.runtime.guard import warn
from cachedeco.runtime.held import Held

__all__ = ["MOST_PENDING", "MOST_TAGS", "Merge", "bound"]

#: Changes a backend may have waiting before the drops of each function's entries become one
#: invalidation of that function (its implicit tag).
MOST_PENDING: Final = 10_000
#: Tag invalidations a backend may have waiting (about 50 MB) before they become one
#: invalidation of every entry under the prefix: a guard against memory running out in a long
#: outage, not a saving, as it also makes every write-behind entry whose record is not
#: flushed yet a miss (its reader then loads the database's older row).
MOST_TAGS: Final = 100_000


@dataclass(frozen=True, slots=True)
class Merge:
    """Changes merged into others: those made (not yet held) and those they replace."""

    made: list[Change]
    gone: list[Change]
    everything: bool  # the tag invalidations became one invalidation of every entry

    def log(self, prefix: str, backend: str) -> None:
        """Say it once per backend: the next misses are many, and this is why."""
        if self.everything:
            warn(f"every:{prefix}:{backend}", "more than %d tag invalidations wait for backend "
                 "%r: they became one invalidation of every entry under the prefix (each "
                 "function's tag renewed when the backend answers)", MOST_TAGS, backend,
                 prefix=prefix)
        else:
            warn(f"merged:{prefix}:{backend}", "more than %d changes wait for backend %r: %d "
                 "entry drop(s) became %d invalidation(s) of their functions", MOST_PENDING,
                 backend, len(self.gone), len(self.made), prefix=prefix)


def bound(queue: collections.OrderedDict[str, Change], held: Held, change: Change,
          prefix: str) -> Merge | None:
    """After ``change`` joined ``queue``: the drops that know their function become one
    invalidation of it when the queue is over :data:`MOST_PENDING`; the tag invalidations
    (those just made too) become one ``EVERY`` when over :data:`MOST_TAGS` of them wait;
    ``held`` then holds the changes made and lets go of those they replace. None when
    nothing merged."""
    merge = _merge(queue, held, change, prefix)
    for merged in merge.made if merge else ():
        held.hold(merged)
    for merged in merge.gone if merge else ():
        held.let_go(merged)
    return merge


def _merge(queue: collections.OrderedDict[str, Change], held: Held, change: Change,
           prefix: str) -> Merge | None:
    """:func:`bound`'s merging of ``queue``, ``held`` left as it was."""
    made: list[Change] = []
    gone: list[Change] = []
    if len(queue) > MOST_PENDING and change.family:
        made, gone = merge_drops(queue, held.family_drops(change.backend))
    if held.tag_changes(change.backend) + len(made) <= MOST_TAGS:
        return Merge(made, gone, everything=False) if gone else None
    every, replaced = merge_tags(queue, change.backend, KeySpace(prefix).fn_tags)
    fresh = {id(c) for c in made}  # made here: never held nor spooled
    return Merge(every, gone + [c for c in replaced if id(c) not in fresh], everything=True)
