"""A spool in tests: a registry whose server is down, writing to it; its file seen from
outside (another connection holding its write lock, the changes it keeps)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from cachedeco import Registry
from tools.servers.process import free_port

__all__ = ["FAST", "asaver", "down", "file_held", "spooled"]

#: Short timeouts (a call to the down server fails at once) and no stats reporter.
FAST = {"socket_timeout": 0.3, "socket_connect_timeout": 0.3, "stats_interval": 0}


def down(make: Callable[..., Registry], tmp_path: Path) -> Registry:
    """A registry made by ``make`` (a fixture) whose server is down (nothing listens on its
    port), with a spool at ``tmp_path / "spool.db"``."""
    return make(f"redis://127.0.0.1:{free_port()}/0", spool=tmp_path / "spool.db", **FAST)


def asaver(reg: Registry) -> Callable[[str], Awaitable[dict[str, Any]]]:
    """An asyncio write-behind function of ``reg`` (never flushed here: its server is down)."""

    @reg.write_behind(key="event:{id}", flush=print, flush_interval=60)
    async def save(id: str) -> dict[str, Any]:
        return {"id": id}

    return save


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
