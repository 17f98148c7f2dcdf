"""Writing a kept change to the spool, what a spool that cannot keep it means, and reading
back the changes other processes left there."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence

from cachedeco.errors import BackendError
from cachedeco.runtime.changes import RECORD, Change, decode_change, encode_change
from cachedeco.runtime.guard import LogLimit
from cachedeco.runtime.spool import Spool

__all__ = ["akeep_in_spool", "forget", "keep_in_spool", "readable", "replace_in_spool"]

logger = logging.getLogger("cachedeco")


def keep_in_spool(spool: Spool, prefix: str, changes: Sequence[Change], log: LogLimit) -> None:
    """Write the changes of ``changes`` that concern entries to ``spool``, in one transaction
    (each change's row noted on it). When the spool cannot keep them, a record among them is
    an error (it was not queued); other changes stay in memory only (logged, rate-limited by
    ``log``)."""
    kept = [change for change in changes if change.on_entries]
    if not kept:
        return
    try:
        rows = spool.add_many(prefix, [(change.backend, change.ident, encode_change(change),
                                        change.kind != RECORD) for change in kept])
    except sqlite3.Error as exc:
        if (record := next((c for c in kept if c.kind == RECORD), None)) is not None:
            raise BackendError(f"the spool {str(spool.path)!r} cannot keep a write-behind "
                               f"record ({exc}): it was not queued",
                               key=record.target, function=record.function) from exc
        if (held := log.allow()) is not None:
            logger.error("cachedeco: the spool %s cannot keep a change (%s); it is kept in "
                         "memory only%s", spool.path, exc,
                         f" ({held} similar errors suppressed)" if held else "")
        return
    for change, row in zip(kept, rows, strict=True):
        change.row, change.spooled = row, spool


async def akeep_in_spool(spool: Spool, prefix: str, changes: Sequence[Change], log: LogLimit,
                         then: Callable[[], None]) -> None:
    """:func:`keep_in_spool` in a thread, then ``then()`` (keep them in memory). The event
    loop goes on meanwhile: a write syncs the file and may wait for another process's
    transaction, and the changes of the loop's other tasks join the same one (the spool's
    group commit). A caller cancelled meanwhile does not undo the write, whose changes
    ``then()`` keeps all the same once it is done, as a returned call's."""
    writing = asyncio.ensure_future(asyncio.to_thread(keep_in_spool, spool, prefix, changes,
                                                      log))
    try:
        await asyncio.shield(writing)
    except asyncio.CancelledError:
        writing.add_done_callback(
            lambda done: None if done.cancelled() or done.exception() else then())
        raise
    then()


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


def readable(spool: Spool, rows: Iterable[tuple[int, bytes]]) -> Iterator[Change]:
    """The changes of ``rows`` taken from ``spool``; a row that cannot be read is logged and
    dropped from the spool."""
    for row, body in rows:
        try:
            yield decode_change(body, row, spool)
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("cachedeco: a change in the spool %s cannot be read (%s); dropped",
                         spool.path, exc)
            spool.done([row])
