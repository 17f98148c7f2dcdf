"""Every counter of a registry by function, kept for the life of the process, and the book of
every registry's ledger that exporters read.

A decorated function counts into its own :class:`~cachedeco.core.stats.Stats` (on the hit
path: one integer increment, nothing more). The ledger holds those Stats objects, so what a
function counted outlives the function: when it is garbage-collected its counts are folded
into the ledger's retired sums under its name, and when a registry is collected its ledger
stays in the book under its prefix. Counters never go down while the process lives.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

from cachedeco.core.forking import redo_after_fork
from cachedeco.core.stats import Stats

__all__ = ["REGISTRY_WIDE", "Cursor", "Ledger", "book", "enrol"]

REGISTRY_WIDE: Final = ""  # the function name of registry-wide operations (invalidate_tags)


class Ledger:
    """One registry's counters: its own (registry-wide operations), those of every function
    bound to it, live or collected, and those of its services (write-behind queues)."""

    def __init__(self, own: Stats, prefix: str) -> None:
        self.own = own
        self.prefix = prefix  # the registry's, kept current by configure()
        self._lock = threading.Lock()
        self._live: dict[int, tuple[weakref.ref[object], str, Stats]] = {}
        self._named: dict[str, set[int]] = {}  # the keys of _live by name
        self._retired: dict[str, Stats] = {}
        self._services: dict[str, Callable[[], Stats]] = {}
        #: Counts made under the registry's earlier prefixes (configure() changed it), by
        #: (prefix, function), and every function's counts when the current prefix began.
        self._earlier: dict[tuple[str, str], Stats] = {}
        self._base: dict[str, Stats] = {}
        self._naming = threading.Lock()
        redo_after_fork(self)

    def rename(self, prefix: str) -> None:
        """configure() gave the registry ``prefix``: what was counted so far stays under the
        old one, in exporters (a series of the old prefix keeps its value, the new one
        starts from zero); ``total()`` and ``by_function()`` go on counting everything."""
        with self._naming:
            if prefix == self.prefix:
                return
            now = self.by_function()
            for name, gained in self._current(now).items():
                if not any(v for _, v in gained.counters()):
                    continue  # nothing counted there: no series of the old prefix
                key = (self.prefix, name)
                have = self._earlier.get(key)
                self._earlier[key] = gained.retired() if have is None else have + gained.retired()
            self._base = {name: stats.retired() for name, stats in now.items()}
            self.prefix = prefix

    def _current(self, now: dict[str, Stats]) -> dict[str, Stats]:
        """The counts of ``now`` (``by_function()``) made under the current prefix."""
        base = self._base
        return {name: stats if name not in base else stats.since(base[name])
                for name, stats in now.items()}

    def by_prefix(self) -> dict[tuple[str, str], Stats]:
        """A snapshot per (prefix, function): the current prefix's counts, and those made
        under the registry's earlier prefixes."""
        with self._naming:  # never halfway through a rename: a scrape would count twice
            out = dict(self._earlier)
            for name, stats in self._current(self.by_function()).items():
                have = out.get((self.prefix, name))
                out[self.prefix, name] = stats if have is None else have + stats
        return out

    def track(self, owner: object, name: str, stats: Stats) -> None:
        """Count ``stats`` under ``name`` while ``owner`` lives, and after (once per owner)."""
        with self._lock:
            held = self._live.get(id(owner))
            if held is not None and held[0]() is owner:
                return
            self._fold()
            self._live[id(owner)] = (weakref.ref(owner), name, stats)
            self._named.setdefault(name, set()).add(id(owner))

    def namesakes(self, owner: object, name: str) -> list[object]:
        """The other live owners tracked under ``name``."""
        with self._lock:
            found = [self._live[k][0]() for k in self._named.get(name, ())]
        return [o for o in found if o is not None and o is not owner]

    def attach(self, name: str, read: Callable[[], Stats]) -> None:
        """Count what ``read()`` returns under ``name`` (a service lives as long as we do)."""
        with self._lock:
            self._services[name] = read

    def _fold(self) -> None:
        """Move the counts of collected functions into the retired sums (lock held)."""
        dead = [k for k, (ref, _, _) in self._live.items() if ref() is None]
        for k in dead:
            _, name, stats = self._live.pop(k)
            named = self._named[name]
            named.discard(k)
            if not named:
                del self._named[name]
            self._retired[name] = self._retired.get(name, Stats()) + stats.snapshot().retired()

    def by_function(self) -> dict[str, Stats]:
        """A snapshot per function name (``""``: registry-wide operations), every function
        ever counted included."""
        with self._lock:
            self._fold()
            parts = [(REGISTRY_WIDE, self.own), *self._retired.items(),
                     *((name, stats) for _, name, stats in self._live.values())]
            services = list(self._services.items())
        out: dict[str, Stats] = {}
        for name, stats in [*parts, *((name, read()) for name, read in services)]:
            have = out.get(name)
            out[name] = stats.snapshot() if have is None else have + stats
        return out

    def total(self) -> Stats:
        """Every counter summed over the functions."""
        total = Stats()
        for stats in self.by_function().values():
            total = total + stats
        return total

    def absorb(self, name: str, stats: Stats) -> None:
        """Take over what a function of a registry that is gone counted under this prefix."""
        with self._lock:
            self._retired[name] = self._retired.get(name, Stats()) + stats.retired()


# --- the book of every registry's ledger -----------------------------------------------------

_enrolled: dict[int, tuple[weakref.ref[object], Ledger]] = {}
_retired: dict[str, Ledger] = {}  # ledgers of collected registries, by their last prefix


class _BookLock:
    """The book's lock, made again in a forked child."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        redo_after_fork(self)


_book = _BookLock()


def enrol(owner: object, ledger: Ledger) -> None:
    """Put a registry's ledger in the book (for exporters covering every registry)."""
    with _book.lock:
        _fold_book()
        _enrolled[id(owner)] = (weakref.ref(owner), ledger)


def _fold_book() -> None:
    """Keep the ledgers of collected registries, merged by prefix (book lock held)."""
    for key, (ref, ledger) in list(_enrolled.items()):
        if ref() is None:
            del _enrolled[key]
            for (prefix, name), stats in ledger.by_prefix().items():
                _retired.setdefault(prefix, Ledger(Stats(), prefix)).absorb(name, stats)


def book() -> list[Ledger]:
    """Every ledger of the process: each live registry's, then those of collected ones."""
    with _book.lock:
        _fold_book()
        return [ledger for _, ledger in _enrolled.values()] + list(_retired.values())


# --- what was already reported ---------------------------------------------------------------

K = TypeVar("K", bound=Hashable)


class Cursor(Generic[K]):
    """How far a reader's counters were reported somewhere: :meth:`take` what is new,
    :meth:`give_back` what could not be delivered. In a forked child it starts from what the
    parent counted, which the parent reports itself."""

    def __init__(self, read: Callable[[], dict[K, int]]) -> None:
        self._read = read
        self._sent: dict[K, int] = {}
        self._at_fork: dict[K, int] = {}
        self._lock = threading.Lock()
        redo_after_fork(self)

    def take(self, now: dict[K, int] | None = None) -> dict[K, int]:
        """The counts added since the last take (non-zero ones), now counted as sent;
        ``now``: a reading the caller just made (else one is made)."""
        if now is None:
            now = self._read()
        with self._lock:
            sent, self._sent = self._sent, now
        return {k: v - sent.get(k, 0) for k, v in now.items() if v != sent.get(k, 0)}

    def give_back(self, taken: dict[K, int]) -> None:
        """Counts :meth:`take` returned that were not delivered: they are taken again next."""
        with self._lock:
            for k, v in taken.items():
                self._sent[k] = self._sent.get(k, 0) - v

    def before_fork(self) -> None:
        """In the parent, about to fork: what it counted so far is its own to report."""
        self._at_fork = self._read()

    def after_fork(self) -> None:
        """In a child: report only what this process counts from now on."""
        self._sent, self._at_fork = self._at_fork, {}
