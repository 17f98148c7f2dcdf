"""The application under fault: a SQLite catalogue and the decorated functions over it.

One SQLite file (WAL) per run is the source of truth: ``products(id, v)`` (the version of each
product, bumped by every write), ``acks(id, v, at, w)`` (each version whose write *returned*
to its caller, when (wall clock) and in which worker: a read that starts later must see at
least the newest) and ``events(id, w, n)`` (what write-behind delivered, one row per record,
at least once). :func:`build` makes
the decorated functions over a registry, the same in every process (one stream name for the
write-behind queue, whatever process delivers it).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cachedeco
from cachedeco import Registry
from tests.faults.staleness import Ack

__all__ = ["Catalogue", "Functions", "abuild", "build", "loading"]

PAD = "x" * 512  # product values are this much bigger: maxmemory fills with fewer keys

#: The products whose loader the current call ran (a thread's, or an asyncio task's, own).
_LOADED: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("loaded",
                                                                          default=None)


def loading() -> list[int]:
    """A list of the products the loader runs for from now on in this thread or task (a
    call's: set before each call, read after it)."""
    loaded: list[int] = []
    _LOADED.set(loaded)
    return loaded


def _loaded(pid: int) -> None:
    """The loader ran for ``pid`` (noted for the call under way, if any)."""
    loaded = _LOADED.get()
    if loaded is not None:
        loaded.append(pid)


class Catalogue:
    """The SQLite file: one connection per thread (autocommit, WAL, a generous busy wait), so
    that a write-behind flush in a worker thread never shares the caller's transaction."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.db.execute("PRAGMA journal_mode=WAL")

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "db", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.db = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @classmethod
    def create(cls, path: Path, keys: int) -> Catalogue:
        """A new file with ``keys`` products at version 1."""
        made = cls(path)
        with made.transaction() as db:
            db.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
            db.execute("CREATE TABLE acks (id INTEGER, v INTEGER, at REAL NOT NULL, "
                       "w INTEGER NOT NULL, PRIMARY KEY (id, v)) WITHOUT ROWID")
            db.execute("CREATE TABLE events (id TEXT PRIMARY KEY, w INTEGER, n INTEGER)")
            db.executemany("INSERT INTO products VALUES (?, 1)", [(i,) for i in range(keys)])
            db.executemany("INSERT INTO acks VALUES (?, 1, 0, -1)", [(i,) for i in range(keys)])
        return made

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def version(self, pid: int) -> int:
        return int(self.db.execute("SELECT v FROM products WHERE id = ?", (pid,)).fetchone()[0])

    def acked(self, pid: int) -> int:
        """The product's newest version whose write returned."""
        return int(self.db.execute("SELECT max(v) FROM acks WHERE id = ?", (pid,)).fetchone()[0])

    def acks(self, pid: int, newer: int) -> list[Ack]:
        """The product's acknowledged versions newer than ``newer``."""
        rows = self.db.execute("SELECT v, at, w FROM acks WHERE id = ? AND v > ?", (pid, newer))
        return [Ack(int(v), float(at), int(w)) for v, at, w in rows]

    def bump(self, pid: int) -> int:
        """The product's next version, committed."""
        row = self.db.execute("UPDATE products SET v = v + 1 WHERE id = ? RETURNING v",
                              (pid,)).fetchone()
        return int(row[0])

    def ack(self, pid: int, v: int, at: float, writer: int) -> None:
        """Version ``v`` of the product was written by worker ``writer``, whose call returned
        at ``at`` (wall clock)."""
        self.db.execute("INSERT OR IGNORE INTO acks VALUES (?, ?, ?, ?)", (pid, v, at, writer))

    def insert_events(self, records: list[dict[str, Any]]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO events VALUES (:id, :w, :n)", records)

    def event_ids(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT id FROM events")}

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


@dataclass
class Functions:
    """The decorated functions of one process (``async def`` ones from :func:`abuild`); see
    :func:`loading` for whether a call ran the loader."""

    get_product: Callable[[int], Any]
    update_product: Callable[[int], Any]
    record_event: Callable[[str, int, int], Any]


def build(reg: Registry, catalogue: Catalogue, *, claim_after: float = 1.0,
          flush_interval: float = 0.2, replicas: int = 0, slow_flush: Path | None = None
          ) -> Functions:
    """The catalogue's decorated functions over ``reg``.

    ``get_product`` is a tagged read with a distributed lock; ``update_product`` a
    write-through of it; ``record_event`` a write-behind into ``events``. With ``slow_flush``
    a flush first touches that file, then waits a second before inserting (the window in
    which a fault test kills the process); ``replicas`` is passed on when the library has it.
    """
    @cachedeco.cached(ttl=300, tags=["product:{pid}", "products"], lock=True, registry=reg)
    def get_product(pid: int) -> dict[str, Any]:
        _loaded(pid)
        return {"id": pid, "v": catalogue.version(pid), "pad": PAD}

    @cachedeco.write_through(get_product, registry=reg)
    def update_product(pid: int) -> dict[str, Any]:
        return {"id": pid, "v": catalogue.bump(pid), "pad": PAD}

    def flush(records: list[dict[str, Any]]) -> None:
        if slow_flush is not None:
            slow_flush.write_text(str(os.getpid()))
            time.sleep(1.0)
        catalogue.insert_events(records)

    @cachedeco.cached(ttl=300, registry=reg)
    def get_event(eid: str) -> dict[str, Any] | None:
        return None

    extra: dict[str, Any] = {"replicas": replicas} if replicas else {}

    @cachedeco.write_behind(get_event, flush=flush, batch_size=50, flush_interval=flush_interval,
                            claim_after=claim_after, registry=reg, **extra)
    def record_event(eid: str, w: int, n: int) -> dict[str, Any]:
        return {"id": eid, "w": w, "n": n}

    return Functions(get_product, update_product, record_event)



def abuild(reg: Registry, catalogue: Catalogue, *, claim_after: float = 1.0,
           flush_interval: float = 0.2, replicas: int = 0) -> Functions:
    """The same functions as :func:`build`, ``async def`` (for a registry whose backend is a
    ready ``redis.asyncio.Redis``: an ASGI service's set-up); the database stays sync."""
    @cachedeco.cached(ttl=300, tags=["product:{pid}", "products"], lock=True, registry=reg)
    async def get_product(pid: int) -> dict[str, Any]:
        _loaded(pid)
        return {"id": pid, "v": catalogue.version(pid), "pad": PAD}

    @cachedeco.write_through(get_product, registry=reg)
    async def update_product(pid: int) -> dict[str, Any]:
        return {"id": pid, "v": catalogue.bump(pid), "pad": PAD}

    @cachedeco.cached(ttl=300, registry=reg)
    async def get_event(eid: str) -> dict[str, Any] | None:
        return None

    extra: dict[str, Any] = {"replicas": replicas} if replicas else {}

    @cachedeco.write_behind(get_event, flush=catalogue.insert_events, batch_size=50,
                            flush_interval=flush_interval, claim_after=claim_after,
                            registry=reg, **extra)
    async def record_event(eid: str, w: int, n: int) -> dict[str, Any]:
        return {"id": eid, "w": w, "n": n}

    return Functions(get_product, update_product, record_event)
