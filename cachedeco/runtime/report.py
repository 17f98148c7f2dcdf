"""The service-wide counters: every few seconds each process adds what its functions counted
since its last report to one hash under the prefix (``prefix:~stats``), which the operator's
``cachedeco stats`` reads.

Off the call path: a daemon thread of the registry (a task on the running loop when the
registry was given an asyncio client only), started when a function first binds to a
registry with a Redis backend, never on ``memory://``, stopped after a last report on
``close()`` (or at exit). One command per report (a script adding every count, atomically),
none when nothing was counted. A failed report is logged (rate-limited) and its counts are
sent with the next one. A forked child reports only what it counts itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from cachedeco.backends.base import BACKEND_ERRORS
from cachedeco.backends.open import BackendSlot
from cachedeco.core.forking import redo_after_fork
from cachedeco.core.stats import Stats, join_field
from cachedeco.errors import CacheError
from cachedeco.runtime.guard import Breaker, Guard
from cachedeco.runtime.ledger import Cursor, Ledger
from cachedeco.runtime.process import exit_with_process
from cachedeco.runtime.workers import Periodic, ThreadWorker

__all__ = ["INTERVAL", "Reporter"]

INTERVAL: Final = 5.0  # seconds between two reports of one registry, by default
Target = tuple[BackendSlot, str]  # the backend and the hash reports go to
_FAULTS: Final = (*BACKEND_ERRORS, CacheError)
Counts = dict[tuple[str, str], int]  # by (function, counter)


def _counts(ledger: Ledger) -> Counts:
    """Every non-zero counter of a ledger, by (function, counter)."""
    return {(function, name): value for function, stats in ledger.by_function().items()
            for name, value in stats.counters() if value}


class Reporter(Periodic):
    """Adds one registry's counts to the service-wide hash, now and then, off the call path."""

    def __init__(self, ledger: Ledger, where: Callable[[], Callable[[], Target | None] | None]
                 ) -> None:
        super().__init__("stats", "report")
        self.interval = INTERVAL  # 0: never report
        self._where = where  # a weak method of the registry: gives None once it is gone
        self._cursor: Cursor[tuple[str, str]] = Cursor(lambda: _counts(ledger))
        self._guard = Guard("stats", Stats(), raise_errors=False, breaker=Breaker())
        redo_after_fork(self)

    def ensure(self) -> None:
        """Start reporting unless it runs, the interval is 0 or no backend is Redis."""
        if self.running or self.interval <= 0:
            return
        target = self._target()
        if target is not None and self._launch("sync" in target[0].flavours, self.interval):
            exit_with_process(self)

    def exit(self) -> None:
        """The process exits without its registry closed: a thread reporter reports once
        more what was counted last (a task's loop is gone by then)."""
        if isinstance(self._worker, ThreadWorker):
            self.stop()

    def _target(self) -> Target | None:
        """Where reports go now: None on memory:// only, or once the registry is gone."""
        where = self._where()
        return None if where is None else where()

    # the thread (or task) reports each round, and once more when it stops
    def tick(self) -> None:
        self.report()

    async def atick(self) -> None:
        await self.areport()

    def last(self) -> None:
        self.report()

    async def alast(self) -> None:
        await self.areport()

    def _take(self) -> tuple[Target, Counts] | None:
        """Where to report and what (None: nothing, or the registry is gone)."""
        target = self._target()
        if target is None:
            self._end()
            return None
        taken = self._cursor.take()
        return (target, taken) if taken else None

    def _failed(self, taken: Counts, exc: BaseException, slot: BackendSlot) -> None:
        self._cursor.give_back(taken)
        # the log line names the backend the report went to, and its registry
        self._guard.name, self._guard.prefix = slot.name, slot.prefix
        self._guard.absorb(exc, action="report the service-wide counters")

    def report(self) -> None:
        """Add what was counted since the last report to the hash, in one command."""
        work = self._take()
        if work is None:
            return
        (slot, key), taken = work
        try:
            slot.backend().tally(key).add(_fields(taken))
        except _FAULTS as exc:
            self._failed(taken, exc, slot)

    async def areport(self) -> None:
        """The asyncio form of :meth:`report`."""
        work = self._take()
        if work is None:
            return
        (slot, key), taken = work
        try:
            await slot.abackend().tally(key).add(_fields(taken))
        except _FAULTS as exc:
            self._failed(taken, exc, slot)


def _fields(taken: Counts) -> dict[str, int]:
    return {join_field(function, name): count
            for (function, name), count in taken.items()}

