"""The near cache's store: decoded values in process memory, least recently used first out,
dropped the moment Redis says their key or one of their tag keys changed.

A value is installed only after a read, and only when nothing it depends on changed while it
was being read: :meth:`NearStore.ticket` is taken before the read is sent, and
:meth:`NearStore.install` refuses when its key or one of its tag keys was reported changed
since (the "in flight" problem of client-side caching), or when the stream of change
messages was lost or is not up. A full store takes the value of a key read again recently
only (:meth:`NearStore.admits`, asked before the read): reads spread over more keys than fit
do not churn it. Hits take no lock: a dict lookup, a tuple comparison and a clock read.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Final, NamedTuple

from cachedeco.core.entry import Entry

__all__ = ["Kept", "Near", "NearStore", "Ticket", "Woken"]

#: Seconds between two looks, from the hit path, for change messages that arrived but were
#: not applied yet (see :meth:`NearStore.follow`): a ``poll(0)`` each, about a microsecond.
LOOK_EVERY: Final = 0.0002

#: How many changed names are remembered for in-flight reads before the memory is reset (a
#: reset only refuses the installs of the reads in flight at that moment).
CHANGED_LIMIT: Final = 65_536


class Near(NamedTuple):
    """One value kept near: the entry it was read from (marker, expiry, load time), the tag
    tokens read with it, the tag keys it depends on, the decoded value, its owner (what
    derived the tag keys from the key alone, if anything: see :meth:`NearStore.owned`) and
    its reader: how it was decoded (``codec.base.decoder``). Functions sharing a key are
    served each other's values only when they decode alike (the same type)."""

    entry: Entry
    tokens: tuple[str | None, ...]
    tag_keys: tuple[str, ...]
    value: Any
    owner: object = None
    reader: object = None


#: A value as the store keeps it: what a hit checks and returns first, as a plain tuple (its
#: fields read faster than a NamedTuple's): the owner, the soft expiry, the value, the tag
#: keys, the ``Near`` itself, then the reader.
Kept = tuple[object, float, Any, tuple[str, ...], Near, object]

#: What a read was started under: the store's epoch and its change counter at that moment.
Ticket = tuple[int, int]
#: Completed when one of the names it watches is reported changed (see :meth:`NearStore.watch`).
Woken = concurrent.futures.Future[None]


class NearStore:
    """Up to ``size`` decoded values, each valid while the stream of changes is up and
    neither its key nor its tag keys changed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.live = False  # the change stream is up: only then are values kept
        self._paused = False  # not live for a while, the values kept still current (pause())
        self._data: OrderedDict[str, Kept] = OrderedDict()
        self._by_tag: dict[str, set[str]] = {}  # tag key -> keys of the values carrying it
        self._changed: dict[str, int] = {}  # name -> change count when it last changed
        self._count = 0  # changes seen (keys named by Redis or by this process)
        self._epoch = 0  # bumped when the stream is lost or comes back, and on a reset
        self._lock = threading.Lock()
        self.due = float("inf")  # when a hit next looks for changes not applied yet
        #: When (monotonic) the stream stops vouching for the values: set by the tracker from
        #: its last answered ping; a hit looking after then is not served (see :meth:`behind`).
        self.quiet_after = float("inf")
        self._catch_up: Callable[[], None] | None = None
        self._watchers: dict[str, list[Woken]] = {}  # name -> futures woken by its change
        self._seen: OrderedDict[str, None] = OrderedDict()  # keys refused while full

    def __len__(self) -> int:
        return len(self._data)

    def entries(self) -> OrderedDict[str, Kept]:
        """The values kept (see ``Kept``), by key, least recently used first: for a compiled
        hit, which looks keys up and marks them used (``move_to_end``) itself, as :meth:`hit`
        does, and must not change them otherwise. This dict is emptied and changed in place,
        never replaced by another one, so a reference taken once stays the store's for its
        life."""
        return self._data

    # -- the hit path (no lock) -------------------------------------------------------------

    def hit(self, key: str, tag_keys: tuple[str, ...], reader: object) -> Near | None:
        """The fresh value kept for ``key`` read with ``tag_keys`` and decoded as ``reader``
        decodes (a function sharing the key may decode it to another type), or None."""
        kept = self._data.get(key)
        if kept is None or kept[5] is not reader or kept[3] != tag_keys or (
                now := time.time()) >= kept[1]:
            return None
        if now >= self.due and self.behind(now, key, kept):
            return None
        try:  # noqa: SIM105 (suppress() costs more on the hit path)
            self._data.move_to_end(key)
        except KeyError:  # dropped meanwhile by another thread: this hit still saw it valid
            pass
        return kept[4]

    def owned(self, key: str, owner: object) -> Near | None:
        """:meth:`hit` for a function whose tag keys follow from its key (``owner`` derives
        them): a value it installed is its own, with the same tag keys, so they need not be
        computed to be compared."""
        kept = self._data.get(key)
        if kept is None or kept[0] is not owner or (now := time.time()) >= kept[1]:
            return None
        if now >= self.due and self.behind(now, key, kept):
            return None
        try:  # noqa: SIM105 (suppress() costs more on the hit path)
            self._data.move_to_end(key)
        except KeyError:
            pass
        return kept[4]

    def behind(self, now: float, key: str, kept: Kept) -> bool:
        """Every ``LOOK_EVERY`` seconds, a hit first applies the change messages that arrived
        but were not applied yet; True when that dropped ``kept``, or while the stream has not
        answered lately (a frozen server: every hit looks again until it answers; the values
        stay, since what changed meanwhile is reported before the answer)."""
        quiet = self._look(now)
        if quiet is None:
            return False
        return quiet or self._data.get(key) is not kept

    def _look(self, now: float) -> bool | None:
        """Apply the change messages that arrived but were not applied yet, and look again
        ``LOOK_EVERY`` seconds from ``now``, or at the next hit while the stream has not
        answered lately (then True, whoever looked: a ticket's look must not let the hits
        after it skip that check); None when there is no stream to look at."""
        catch_up = self._catch_up
        if catch_up is None:
            self.due = now + LOOK_EVERY
            return None
        # set before the catch-up, which may wait: a hit meanwhile must not skip the check
        self.due = now if time.monotonic() >= self.quiet_after else now + LOOK_EVERY
        catch_up()
        if time.monotonic() < self.quiet_after:
            return False
        self.due = now
        return True

    # -- installing -------------------------------------------------------------------------

    def ticket(self) -> Ticket | None:
        """Taken before a read whose value may be installed; None while the stream is down.
        Every ``LOOK_EVERY`` seconds it first applies the change messages that arrived, as a
        hit does: an install needs no catch-up (a change the read did not see is reported after
        it), but a caller joining a read or a load under way must not miss a change that
        arrived long ago."""
        if (now := time.time()) >= self.due:
            self._look(now)
        return (self._epoch, self._count) if self.live else None

    def unchanged(self, ticket: Ticket, key: str, tag_keys: tuple[str, ...]) -> bool:
        """Whether neither ``key`` nor one of ``tag_keys`` was reported changed since
        ``ticket`` was taken, the stream staying up: a read now would find what a read then
        found, but for a change still on its way (the reach window)."""
        epoch, count = ticket
        with self._lock:
            if not self.live or epoch != self._epoch or time.monotonic() >= self.quiet_after:
                return False
            changed = self._changed
            return changed.get(key, 0) <= count and all(
                changed.get(tag, 0) <= count for tag in tag_keys)

    def install(self, ticket: Ticket, key: str, near: Near) -> bool:
        """Keep ``near`` for ``key`` unless ``key`` or one of its tag keys changed since
        ``ticket`` was taken, or the stream was lost meanwhile; True when kept (the least
        recently used value goes when the store is full)."""
        epoch, count = ticket
        tag_keys, data, by_tag = near.tag_keys, self._data, self._by_tag
        with self._lock:
            if not self.live or epoch != self._epoch:
                return False
            changed = self._changed
            if changed.get(key, 0) > count:
                return False
            for tag in tag_keys:
                if changed.get(tag, 0) > count:
                    return False
            if key in data:
                self._forget(key)
            data[key] = (near.owner, near.entry.soft, near.value, tag_keys, near, near.reader)
            for tag in tag_keys:
                keys = by_tag.get(tag)
                if keys is None:
                    by_tag[tag] = {key}
                else:
                    keys.add(key)
            while len(data) > self.size:
                self._forget(next(iter(data)))
            return True

    def admits(self, key: str) -> bool:
        """Whether a value read now for ``key`` is to be kept (asked before the read: one that
        is not is read like any other, without a ticket). Yes while there is room, or when
        ``key`` is kept already; once full, only when ``key`` was refused recently (one of the
        last ``size`` refused), i.e. read at least twice. So reads spread over more keys than
        fit (mostly misses) do not evict a value at every read, nor pay for the bookkeeping
        of an install (each eviction frees a value last touched long ago, cold in the CPU's
        caches), while a key read again soon is kept (TinyLFU's doorkeeper, simplified)."""
        data = self._data
        if len(data) < self.size or key in data:
            return True
        seen = self._seen
        with self._lock:
            if key in seen:
                del seen[key]
                return True
            seen[key] = None
            if len(seen) > self.size:
                seen.popitem(last=False)
            return False

    # -- changes ----------------------------------------------------------------------------

    def changed(self, names: Iterable[str]) -> None:
        """Keys that changed (entries or tag keys): drop every value depending on one, refuse
        the installs of reads in flight that depend on one, and wake who watches one."""
        woken: list[Woken] = []
        with self._lock:
            if len(self._changed) > CHANGED_LIMIT:
                self._changed.clear()
                self._epoch += 1
            watchers = self._watchers
            for name in names:
                self._count += 1
                self._changed[name] = self._count
                self._forget(name)
                for key in self._by_tag.pop(name, ()):
                    self._forget(key)
                if watchers and (waiting := watchers.pop(name, None)):
                    woken += waiting
        _wake(woken)

    def flushed(self) -> None:
        """Everything may have changed (``FLUSHDB``, ``FLUSHALL``): drop every value."""
        with self._lock:
            woken = self._reset()
        _wake(woken)

    def follow(self, catch_up: Callable[[], None]) -> None:
        """Have hits call ``catch_up`` every ``LOOK_EVERY`` seconds: it applies the change
        messages that arrived but that the stream's thread has not applied yet (it may be
        waiting for the GIL: up to a switch interval, 5 ms, while the caller's threads run)."""
        with self._lock:
            self._catch_up = catch_up
            self.due = 0.0

    def lost(self) -> None:
        """The stream of changes is lost: drop everything and keep nothing until it is back."""
        with self._lock:
            self.live, self._paused = False, False
            self._catch_up = None
            self.due = float("inf")
            woken = self._reset()
        _wake(woken)

    def up(self) -> None:
        """The stream of changes is up (tracking enabled on every primary): keep values."""
        with self._lock:
            self._epoch += 1
            self.live, self._paused = True, False

    def pause(self) -> None:
        """Keep no value read from now on, nor any read in flight, until :meth:`resume`; the
        values kept stay (the stream still reports their changes): a read is answered by a
        server the stream does not listen to."""
        with self._lock:
            if self.live:
                self._epoch += 1
                self.live, self._paused = False, True

    def resume(self) -> None:
        """Keep values again after a :meth:`pause`, unless the stream was lost meanwhile."""
        with self._lock:
            if self._paused:
                self._epoch += 1
                self.live, self._paused = True, False

    # -- watching for a change ---------------------------------------------------------------

    def watch(self, names: tuple[str, ...]) -> Woken:
        """A future completed when one of ``names`` is next reported changed, or when the
        stream is lost or the store reset (anything may have changed): how a caller waits for
        another process's load to land without a blocking command of its own. Stop watching
        with :meth:`unwatch`; a change before the watch began is :meth:`unchanged`'s to see."""
        woken: Woken = concurrent.futures.Future()
        with self._lock:
            for name in names:
                self._watchers.setdefault(name, []).append(woken)
        return woken

    def unwatch(self, names: tuple[str, ...], woken: Woken) -> None:
        """Stop watching ``names`` with ``woken`` (a no-op for names that woke it)."""
        with self._lock:
            for name in names:
                waiting = self._watchers.get(name)
                if waiting is not None:
                    if woken in waiting:
                        waiting.remove(woken)
                    if not waiting:
                        del self._watchers[name]

    def _reset(self) -> list[Woken]:
        """Forget everything (lock held); returns the watchers to wake."""
        self._data.clear()  # in place: entries() hands this very dict out
        self._by_tag.clear()
        self._seen.clear()
        self._changed.clear()
        self._epoch += 1
        woken = [w for waiting in self._watchers.values() for w in waiting]
        self._watchers.clear()
        return woken

    def _forget(self, key: str) -> None:
        """Drop the value kept for ``key`` and its tag index entries (lock held)."""
        kept = self._data.pop(key, None)
        if kept is None:
            return
        for tag in kept[3]:
            keys = self._by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_tag[tag]


def _wake(woken: list[Woken]) -> None:
    """Complete the futures of woken watchers (outside the store's lock: their callbacks run
    here). A future woken twice, through two of its names, is completed once."""
    for future in woken:
        if not future.done():
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # done meanwhile
                future.set_result(None)
