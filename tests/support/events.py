"""A SQLite events table: the real database behind the write-behind tests' ``flush``."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["Events"]


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
        self.insert(records)

    def insert(self, records: list[dict[str, Any]], db: sqlite3.Connection | None = None
               ) -> None:
        """INSERT the records (on ``db``, inside its transaction, when given)."""
        rows = [(r["id"], r["v"]) for r in records]
        if db is not None:
            db.executemany("INSERT INTO events VALUES (?, ?)", rows)
            return
        with self.connect() as conn:
            conn.executemany("INSERT INTO events VALUES (?, ?)", rows)

    def rows(self) -> list[tuple[str, int]]:
        with self.connect() as db:
            return sorted(db.execute("SELECT id, v FROM events").fetchall())
