"""What the write-behind tests share: a SQLite events table (the real database behind
``flush``) and a reader/writer pair of functions on a registry."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cachedeco
from cachedeco import Registry


class Events:
    """A SQLite table of events: what ``flush`` writes and the tests read back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.batches: list[int] = []
        with self.connect() as db:
            db.execute("CREATE TABLE events (id TEXT, v INTEGER)")

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as db, db:
            yield db

    def flush(self, records: list[dict[str, Any]]) -> None:
        self.batches.append(len(records))
        with self.connect() as db:
            db.executemany("INSERT INTO events VALUES (?, ?)",
                           [(r["id"], r["v"]) for r in records])

    def rows(self) -> list[tuple[str, int]]:
        with self.connect() as db:
            return sorted(db.execute("SELECT id, v FROM events").fetchall())


def make(reg: Registry, flush: Any, **options: Any) -> tuple[Any, Any]:
    """A @cached reader (ttl 60 s) and a @write_behind writer of events on ``reg``."""

    @cachedeco.cached(registry=reg, ttl=60)
    def get_event(event_id: str) -> dict[str, Any] | None:
        return None

    options.setdefault("flush_interval", 3600)

    @cachedeco.write_behind(get_event, flush=flush, **options)
    def record_event(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    return get_event, record_event
