"""A spool's file seen from outside: another connection holding its write lock, and the
changes it keeps."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["file_held", "spooled"]


@contextlib.contextmanager
def file_held(path: Path) -> Iterator[Callable[[], None]]:
    """Another connection holds the file's write lock until the release it yields is called
    (or the block ends)."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")

    def release() -> None:
        if holder.in_transaction:
            holder.execute("COMMIT")

    try:
        yield release
    finally:
        release()
        holder.close()


def spooled(path: Path) -> list[str]:
    """The idents of the changes the spool at ``path`` keeps, in the order written."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [ident for (ident,) in conn.execute("SELECT ident FROM changes ORDER BY id")]
