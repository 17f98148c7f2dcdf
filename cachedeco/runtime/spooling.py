"""Writing a kept change to the spool, what a spool that cannot keep it means, and reading
back the changes other processes left there."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence

from cachedeco.core.logs import say
from cachedeco.errors import BackendError
from cachedeco.runtime.changes import RECORD, Change, decode_change, encode_change
from cachedeco.runtime.guard import LogLimit
from cachedeco.runtime.spool import Spool

__all__ = ["akeep_in_spool", "forget", "keep_in_spool", "readable", "replace_in_spool"]


def keep_in_spool(spool: Spool, prefix: str, changes: Sequence[Change], log: LogLimit) -> None:
    """Write the changes of ``changes`` that concern entries to ``spool``, in one transaction
    (each change's row noted on it). When the spool cannot keep them, a record among them is
    an error (it was not queued); other changes stay in memory only (logged, rate-limited by
    ``log``)."""
    if kept := _on_entries(changes):
        try:
            rows = spool.add_many(prefix, _rows(kept))
        except sqlite3.Error as exc:
            _not_kept(spool, prefix, kept, exc, log)
        else:
            _noted(spool, kept, rows)


async def akeep_in_spool(spool: Spool, prefix: str, changes: Sequence[Change], log: LogLimit,
                         then: Callable[[], None]) -> None:
    """:func:`keep_in_spool` for an event loop, then ``then()`` (keep them in memory). The
    loop goes on while the spool's writer thread writes them (the write syncs the file and
    may wait for another process's transaction), and the changes of the loop's other tasks
    join the same transaction (the spool's group commit). A caller cancelled meanwhile does
    not undo the write, whose changes ``then()`` keeps all the same once it is done, as a
    returned call's."""
    if not (kept := _on_entries(changes)):
        then()
        return
    writing = asyncio.wrap_future(spool.submit_many(prefix, _rows(kept)))

    def settle(done: asyncio.Future[list[int]]) -> None:
        """As keep_in_spool after its write: rows noted, or what a failed spool means."""
        try:
            rows = done.result()
        except sqlite3.Error as exc:
            _not_kept(spool, prefix, kept, exc, log)
        else:
            _noted(spool, kept, rows)

    def after_cancel(done: asyncio.Future[list[int]]) -> None:
        """A cancelled caller's write, once done: its changes kept as a returned call's."""
        if done.cancelled() or not isinstance(done.exception(), sqlite3.Error | None):
            return
        with contextlib.suppress(BackendError):  # a record the spool failed: not queued
            settle(done)
            then()

    try:
        await asyncio.shield(writing)
    except asyncio.CancelledError:
        writing.add_done_callback(after_cancel)
        raise
    except sqlite3.Error:
        pass  # settle() says what it means
    settle(writing)
    then()


def _on_entries(changes: Sequence[Change]) -> list[Change]:
    """The changes the spool keeps: those about entries."""
    return [change for change in changes if change.on_entries]


def _rows(kept: list[Change]) -> list[tuple[str, str, bytes, bool]]:
    """The spool's rows for ``kept``: a drop or an invalidation replaces the one pending for
    its key or tag; a record never does."""
    return [(change.backend, change.ident, encode_change(change), change.kind != RECORD)
            for change in kept]


def _not_kept(spool: Spool, prefix: str, kept: list[Change], exc: sqlite3.Error,
              log: LogLimit) -> None:
    """The spool failed to keep ``kept``: an error for a record among them (it was not
    queued), a rate-limited log line for other changes (they stay in memory only)."""
    if (record := next((c for c in kept if c.kind == RECORD), None)) is not None:
        raise BackendError(f"the spool {str(spool.path)!r} cannot keep a write-behind "
                           f"record ({exc}): it was not queued",
                           key=record.target, function=record.function) from exc
    if (held := log.allow()) is not None:
        say(prefix, logging.ERROR, "the spool %s cannot keep a change (%s); it is kept in "
            "memory only%s", spool.path, exc,
            f" ({held} similar errors suppressed)" if held else "")


def _noted(spool: Spool, kept: list[Change], rows: list[int]) -> None:
    """Note on each change its row and the spool holding it (forgotten there once it lands)."""
    for change, row in zip(kept, rows, strict=True):
        change.row, change.spooled = row, spool


def replace_in_spool(spool: Spool, prefix: str, made: list[Change], gone: list[Change],
                     log: LogLimit) -> None:
    """Changes merged into others (see ``changes.merge_drops``): the new ones written
    first, then the rows of those they replace forgotten (a crash in between leaves both:
    applied twice, harmless)."""
    keep_in_spool(spool, prefix, made, log)
    forget(gone, spool)


def forget(changes: Iterable[Change], current: Spool | None) -> None:
    """Delete the rows of changes that landed or were replaced, each from the spool that
    holds it; one that ``configure()`` replaced (not ``current``) is closed again after."""
    rows: dict[Spool, list[int]] = {}
    for change in changes:
        if change.row is not None and change.spooled is not None:
            rows.setdefault(change.spooled, []).append(change.row)
    for spool, ids in rows.items():
        spool.done(ids)
        if spool is not current:
            spool.close()


def readable(spool: Spool, prefix: str, rows: Iterable[tuple[int, bytes]]
             ) -> Iterator[Change]:
    """The changes of ``rows`` taken from ``spool``; a row that cannot be read is logged and
    dropped from the spool."""
    for row, body in rows:
        try:
            yield decode_change(body, row, spool)
        except (ValueError, KeyError, TypeError) as exc:
            say(prefix, logging.ERROR, "a change in the spool %s cannot be read (%s); dropped",
                spool.path, exc)
            spool.done([row])
