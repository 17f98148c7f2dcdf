"""Writing a kept change to the spool, what a spool that cannot keep it means, and reading
back the changes other processes left there."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator

from cachedeco.errors import BackendError
from cachedeco.runtime.changes import RECORD, Change, decode_change, encode_change
from cachedeco.runtime.guard import LogLimit
from cachedeco.runtime.spool import Spool

__all__ = ["forget", "keep_in_spool", "readable", "replace_in_spool"]

logger = logging.getLogger("cachedeco")


def keep_in_spool(spool: Spool, prefix: str, change: Change, log: LogLimit) -> None:
    """Write ``change`` to ``spool`` (its row noted on it); a record that cannot be written
    there is an error (it was not queued), another change stays in memory only (logged,
    rate-limited by ``log``)."""
    try:
        change.row = spool.add(prefix, change.backend, change.ident, encode_change(change),
                               replace=change.kind != RECORD)
        change.spooled = spool
    except sqlite3.Error as exc:
        if change.kind == RECORD:
            raise BackendError(f"the spool {str(spool.path)!r} cannot keep a write-behind "
                               f"record ({exc}): it was not queued",
                               key=change.target, function=change.function) from exc
        if (held := log.allow()) is not None:
            logger.error("cachedeco: the spool %s cannot keep a change (%s); it is kept in "
                         "memory only%s", spool.path, exc,
                         f" ({held} similar errors suppressed)" if held else "")


def replace_in_spool(spool: Spool, prefix: str, made: list[Change], gone: list[Change],
                     log: LogLimit) -> None:
    """Changes merged into others (see ``changes.merge_drops``): the new ones written
    first, then the rows of those they replace forgotten (a crash in between leaves both:
    applied twice, harmless)."""
    for change in made:
        keep_in_spool(spool, prefix, change, log)
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
