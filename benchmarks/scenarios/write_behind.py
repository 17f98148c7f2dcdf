"""Write-behind into SQLite: records per second into the database file, and the latency each
call adds, for ``@write_behind`` against one INSERT per call and against ``@write_through``.

The three rows record the same events into SQLite files, interleaved round by round in a
rotating order, in two groups: ``fsync`` (SQLite's defaults: every commit is synced to disk,
what a durable database costs per transaction) and ``wal`` (WAL with ``synchronous=NORMAL``:
a commit is a WAL append, about as cheap as a database write gets):

``insert per call``  the baseline: an INSERT and its COMMIT in every call.
``write-through``    the same INSERT + COMMIT, then the row stored as a ``@cached`` entry.
``write-behind``     the call stores the record as the entry and queues it (one round trip);
                     the worker writes batches of ``BATCH`` in one transaction each.

``records_per_s`` counts records durable in SQLite: for write-behind the time runs until
``reg.flush()`` returned, so the background batches are included. ``call_us`` is what a
caller waits per call; ``added_latency_us`` is that minus the undecorated function's own time
(the INSERT for write-through, building the dict for write-behind), the median of per-round
differences. ``ratio`` is the wall time per record over the baseline's (below 1: faster).
With ``redis_url`` the cache and the queue are in Redis, else in memory.
"""

from __future__ import annotations

import contextlib
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

import cachedeco
from benchmarks import progress
from benchmarks.servers import new_prefix, sweep

__all__ = ["run"]

BATCH = 500
Row = dict[str, Any]


class _Table:
    """One SQLite file with an events table and a connection kept open, as a service would."""

    def __init__(self, path: Path, group: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        if group == "wal":
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE events (id TEXT PRIMARY KEY, user_id TEXT, n INTEGER)")
        self.db.commit()

    def insert(self, event: dict[str, Any]) -> None:
        """One INSERT, committed."""
        with self.db:
            self.db.execute("INSERT INTO events VALUES (:id, :user_id, :n)", event)

    def insert_many(self, events: list[dict[str, Any]]) -> None:
        """A batch in one transaction; idempotent on the id (delivery is at least once)."""
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO events VALUES (:id, :user_id, :n)",
                                events)

    def count(self) -> int:
        """Rows written so far."""
        result: int = self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        return result

    def clear(self) -> None:
        """Start the next round on an empty table."""
        with self.db:
            self.db.execute("DELETE FROM events")


def _event(i: int) -> dict[str, Any]:
    return {"id": f"ev{i}", "user_id": f"u{i % 100}", "n": i}


def _timed(calls: Callable[[int], None], n: int) -> float:
    start = time.perf_counter()
    calls(n)
    return time.perf_counter() - start


@contextlib.contextmanager
def _registry(redis_url: str | None) -> Iterator[cachedeco.Registry]:
    """A registry under a fresh prefix; afterwards its entries and its queue are removed."""
    prefix = new_prefix("write_behind")
    reg = cachedeco.Registry(redis_url or "memory://", prefix=prefix)
    try:
        yield reg
    finally:
        reg.close()
        if redis_url is not None:
            reg.clear()
            with redis.Redis.from_url(redis_url) as client:
                sweep(client, prefix)  # clear() spares cachedeco's own keys, queues included
            reg.close()


def run(redis_url: str | None, quick: bool) -> list[Row]:
    """Both groups: (n, rounds) sized so that the whole scenario takes seconds."""
    sizes = {"fsync": (100, 3), "wal": (300, 3)} if quick else {"fsync": (300, 5),
                                                                 "wal": (2000, 9)}
    progress.task("write-behind into SQLite", sum(rounds for _, rounds in sizes.values()))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for group, (n, rounds) in sizes.items():
            with _registry(redis_url) as reg:
                rows += _group(reg, Path(tmp), group, n, rounds, on_redis=redis_url is not None)
    return rows


def _group(reg: cachedeco.Registry, tmp: Path, group: str, n: int, rounds: int, *,
           on_redis: bool) -> list[Row]:
    """Measure the three ways of recording ``n`` events into one kind of SQLite file."""
    direct, through, behind = (_Table(tmp / f"{group}-{name}.db", group)
                               for name in ("direct", "through", "behind"))

    @cachedeco.cached(registry=reg)
    def get_event(event_id: str) -> dict[str, Any] | None:
        return None

    @cachedeco.write_through(get_event)
    def update_event(event_id: str, i: int) -> dict[str, Any]:
        event = _event(i)
        through.insert(event)
        return event

    @cachedeco.write_behind(get_event, flush=behind.insert_many, batch_size=BATCH,
                            flush_interval=0.05)
    def record_event(event_id: str, i: int) -> dict[str, Any]:
        return _event(i)

    def insert_calls(n: int) -> None:
        for i in range(n):
            direct.insert(_event(i))

    def through_calls(n: int) -> None:
        for i in range(n):
            update_event(f"ev{i}", i)

    def behind_calls(n: int) -> None:
        for i in range(n):
            record_event(f"ev{i}", i)

    def build_calls(n: int) -> None:
        for i in range(n):
            _event(i)

    walls: dict[str, list[float]] = {"insert": [], "through": [], "behind": []}
    calls: dict[str, list[float]] = {"insert": [], "through": [], "behind": []}
    added: dict[str, list[float]] = {"insert": [], "through": [], "behind": []}

    def measure_insert() -> None:
        walls["insert"].append(_timed(insert_calls, n))
        calls["insert"].append(walls["insert"][-1])

    def measure_through() -> None:
        walls["through"].append(_timed(through_calls, n))
        calls["through"].append(walls["through"][-1])

    def measure_behind() -> None:
        start = time.perf_counter()
        calls["behind"].append(_timed(behind_calls, n))
        reg.flush()
        walls["behind"].append(time.perf_counter() - start)

    order = [measure_insert, measure_through, measure_behind]
    for round_ in range(rounds):
        for table in (direct, through, behind):
            table.clear()
        shift = round_ % len(order)
        for measure in order[shift:] + order[:shift]:
            measure()
        build = _timed(build_calls, n)
        added["insert"].append(0.0)
        added["through"].append(calls["through"][-1] - walls["insert"][-1])
        added["behind"].append(calls["behind"][-1] - build)
        if behind.count() != n or through.count() != n or direct.count() != n:
            raise AssertionError("a variant did not write every record")
        progress.advance()
    for table in (direct, through, behind):
        table.db.close()

    def median_us(samples: list[float]) -> float:
        return statistics.median(samples) / n * 1e6

    base_us = median_us(walls["insert"])
    rows = []
    for key, name in (("insert", "insert per call"), ("through", "write-through"),
                      ("behind", "write-behind")):
        per_record = median_us(walls[key])
        rows.append({
            "scenario": "write-behind", "group": f"sqlite {group}", "row": name, "name": name,
            "baseline": "" if key == "insert" else "insert per call",
            "records_per_s": 1e6 / per_record, "median_us": per_record,
            "call_us": median_us(calls[key]), "added_latency_us": median_us(added[key]),
            "ratio": per_record / base_us,
            "note": f"n={n}, rounds={rounds}, backend={'redis' if on_redis else 'memory'}"
                    + (f", batch={BATCH}" if key == "behind" else ""),
        })
    return rows


if __name__ == "__main__":
    import sys

    urls = [a for a in sys.argv[1:] if not a.startswith("--")]
    for row in run(urls[0] if urls else None, quick="--quick" in sys.argv):
        print(f"{row['group']:12} {row['name']:16} {row['records_per_s']:>10.0f} records/s  "
              f"call {row['call_us']:8.1f} us  added {row['added_latency_us']:8.1f} us  "
              f"ratio {row['ratio']:.3f}")
