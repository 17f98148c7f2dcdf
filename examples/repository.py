"""A SQLite-backed repository with cachedeco: cached reads, write-through updates and
write-behind event recording.

    python examples/repository.py                          # cache in process memory
    python examples/repository.py redis://127.0.0.1:6379/0 # cache and event queue in Redis

* ``get_user`` is a ``@cached`` reader: the first call reads SQLite, the next ones the cache.
* ``rename_user`` is ``@write_through``: the UPDATE runs first, then the returned row becomes
  ``get_user``'s cached entry, so readers never see the old name.
* ``record_event`` is ``@write_behind``: the call only builds the event; cachedeco caches it
  at once (``get_event`` sees it) and queues it, and ``insert_events`` writes the queued
  events to SQLite in batches. On Redis the queue is durable: events of a process that dies
  are written by the next one. ``with cachedeco.registry:`` flushes what waits on exit.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cachedeco

DB = Path(tempfile.gettempdir()) / "cachedeco-example.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, kind TEXT NOT NULL, at REAL NOT NULL
);
"""


@contextlib.contextmanager
def connect() -> Iterator[sqlite3.Connection]:
    """A connection that commits on success and is always closed."""
    with contextlib.closing(sqlite3.connect(DB, timeout=10)) as db, db:
        yield db


# --- reads: cached ------------------------------------------------------------------------------


@cachedeco.cached(ttl=300)
def get_user(user_id: str) -> dict[str, Any] | None:
    """One user row, read through the cache."""
    with connect() as db:
        row = db.execute("SELECT id, name FROM users WHERE id = ?", (user_id,)).fetchone()
    return None if row is None else {"id": row[0], "name": row[1]}


@cachedeco.cached(ttl=300)
def get_event(event_id: str) -> dict[str, Any] | None:
    """One event row, read through the cache (recent events are served before they are written)."""
    with connect() as db:
        row = db.execute("SELECT id, user_id, kind, at FROM events WHERE id = ?",
                         (event_id,)).fetchone()
    return None if row is None else dict(zip(("id", "user_id", "kind", "at"), row, strict=True))


# --- updates: write-through ---------------------------------------------------------------------


@cachedeco.write_through(get_user)
def rename_user(user_id: str, name: str) -> dict[str, Any]:
    """UPDATE the row; its result becomes get_user's cached entry."""
    with connect() as db:
        db.execute("INSERT INTO users (id, name) VALUES (?, ?) "
                   "ON CONFLICT (id) DO UPDATE SET name = excluded.name", (user_id, name))
    return {"id": user_id, "name": name}


# --- events: write-behind -----------------------------------------------------------------------


def insert_events(events: list[dict[str, Any]]) -> None:
    """The bulk write behind record_event: one transaction per batch, idempotent on the id
    (delivery is at least once, so a batch may arrive twice after a crash)."""
    with connect() as db:
        db.executemany("INSERT OR IGNORE INTO events (id, user_id, kind, at) "
                       "VALUES (:id, :user_id, :kind, :at)", events)


@cachedeco.write_behind(get_event, flush=insert_events, batch_size=200, flush_interval=1.0)
def record_event(event_id: str, user_id: str, kind: str) -> dict[str, Any]:
    """Build the event; cachedeco caches it now and writes it later."""
    return {"id": event_id, "user_id": user_id, "kind": kind, "at": time.time()}


def count(table: str) -> int:
    """Rows in a table."""
    with connect() as db:
        result: int = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    return result


def main(backend: str = "memory://") -> None:
    """Run the tour against ``backend``."""
    DB.unlink(missing_ok=True)
    with connect() as db:
        db.executescript(SCHEMA)
    with cachedeco.configure(backend, prefix="example") as registry:
        rename_user("u1", "Ada")
        print("get_user   ", get_user("u1"), "(cached by the write-through)")
        rename_user("u1", "Ada Lovelace")
        print("get_user   ", get_user("u1"), "(never the old name)")

        start = time.perf_counter()
        for i in range(1000):
            record_event(f"ev{i}", "u1", "click")
        elapsed = time.perf_counter() - start
        print(f"recorded    1000 events in {elapsed * 1000:.1f} ms; "
              f"{count('events')} in SQLite so far")
        print("get_event  ", get_event("ev999"), "(from the cache, before it is written)")
        registry.flush()
        print(f"flushed     {count('events')} events in SQLite")
        record_event("ev-last", "u1", "logout")
    # leaving `with` flushed what was still queued and closed the connections
    stats = registry.stats()
    print(f"closed      {count('events')} events in SQLite; hits={stats.hits} "
          f"flushed={stats.write_behind_flushed} pending={stats.write_behind_pending}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
