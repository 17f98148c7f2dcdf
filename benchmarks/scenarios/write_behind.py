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
``write-behind, replicas=1``  (on Redis only) the same, each call waiting until a replica
                     holds the record (``WAIT 1``): the price of a failover that loses nothing.
                     A server without a replica gets a local one for the run.

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
from urllib.parse import urlsplit

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


@contextlib.contextmanager
def _with_replica(redis_url: str | None) -> Iterator[bool]:
    """Whether ``replicas=1`` can be measured: the server has a replica, or a local one is
    started for the run (``tools.servers``, from a repository checkout)."""
    if redis_url is None:
        yield False
        return
    def replicas() -> int:
        with redis.Redis.from_url(redis_url) as client:
            info: Any = client.info("replication")
            return int(info.get("connected_slaves", 0))

    if replicas() >= 1:
        yield True
        return
    try:
        from tools.servers.process import HOST, launch, server_args, wait_until
    except ImportError:
        yield False
        return
    where = urlsplit(redis_url)
    if where.hostname not in (HOST, "localhost") or where.port is None:
        yield False
        return
    replica = launch("bench-replica", lambda ports, d: [
        *server_args(ports[0], d), "--replicaof", HOST, str(where.port)])
    try:
        wait_until("the benchmark replica to link", lambda: replicas() >= 1)
        yield True
    finally:
        replica.stop()


def run(redis_url: str | None, quick: bool) -> list[Row]:
    """Both groups: (n, rounds) sized so that the whole scenario takes seconds."""
    sizes = {"fsync": (100, 3), "wal": (300, 3)} if quick else {"fsync": (300, 5),
                                                                 "wal": (2000, 9)}
    progress.task("write-behind into SQLite", sum(rounds for _, rounds in sizes.values()))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp, _with_replica(redis_url) as replicated:
        for group, (n, rounds) in sizes.items():
            with _registry(redis_url) as reg:
                rows += _group(reg, Path(tmp), group, n, rounds, on_redis=redis_url is not None,
                               replicated=replicated)
    return rows


def _group(reg: cachedeco.Registry, tmp: Path, group: str, n: int, rounds: int, *,
           on_redis: bool, replicated: bool = False) -> list[Row]:
    """Measure the ways of recording ``n`` events into one kind of SQLite file."""
    direct, through, behind, behind1 = (_Table(tmp / f"{group}-{name}.db", group)
                                        for name in ("direct", "through", "behind", "behind1"))

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

    @cachedeco.write_behind(key="event1:{event_id}", flush=behind1.insert_many,
                            batch_size=BATCH, flush_interval=0.05, replicas=1,
                            replicas_timeout=5.0, registry=reg)
    def record_replicated(event_id: str, i: int) -> dict[str, Any]:
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

    def replicated_calls(n: int) -> None:
        for i in range(n):
            record_replicated(f"ev{i}", i)

    def build_calls(n: int) -> None:
        for i in range(n):
            _event(i)

    keys = ["insert", "through", "behind", *(["behind1"] if replicated else [])]
    walls: dict[str, list[float]] = {key: [] for key in keys}
    calls: dict[str, list[float]] = {key: [] for key in keys}
    added: dict[str, list[float]] = {key: [] for key in keys}

    runs = {"insert": insert_calls, "through": through_calls, "behind": behind_calls,
            "behind1": replicated_calls}

    def measure(key: str) -> None:
        """One variant's calls; a write-behind one's wall time runs until flush() returned."""
        start = time.perf_counter()
        calls[key].append(_timed(runs[key], n))
        if key.startswith("behind"):
            reg.flush()
        walls[key].append(time.perf_counter() - start)

    order = keys
    tables = (direct, through, behind, *([behind1] if replicated else []))
    for round_ in range(rounds):
        for table in tables:
            table.clear()
        shift = round_ % len(order)
        for key in order[shift:] + order[:shift]:
            measure(key)
        build = _timed(build_calls, n)
        added["insert"].append(0.0)
        added["through"].append(calls["through"][-1] - walls["insert"][-1])
        added["behind"].append(calls["behind"][-1] - build)
        if replicated:
            added["behind1"].append(calls["behind1"][-1] - build)
        if any(table.count() != n for table in tables):
            raise AssertionError("a variant did not write every record")
        progress.advance()
    for table in (direct, through, behind, behind1):
        table.db.close()
    note = f"n={n}, rounds={rounds}, backend={'redis' if on_redis else 'memory'}"
    return _rows(group, n, note, keys, (walls, calls, added))


_NAMES = {"insert": "insert per call", "through": "write-through", "behind": "write-behind",
          "behind1": "write-behind, replicas=1"}


def _rows(group: str, n: int, note: str, keys: list[str],
          samples: tuple[dict[str, list[float]], ...]) -> list[Row]:
    """One row per variant: medians per record, and the ratio to the baseline."""
    walls, calls, added = samples

    def median_us(values: list[float]) -> float:
        return statistics.median(values) / n * 1e6

    base_us = median_us(walls["insert"])
    rows = []
    for key in keys:
        name = _NAMES[key]
        per_record = median_us(walls[key])
        rows.append({
            "scenario": "write-behind", "group": f"sqlite {group}", "row": name, "name": name,
            "baseline": "" if key == "insert" else "insert per call",
            "records_per_s": 1e6 / per_record, "median_us": per_record,
            "call_us": median_us(calls[key]), "added_latency_us": median_us(added[key]),
            "ratio": per_record / base_us,
            "note": note + (f", batch={BATCH}" if key.startswith("behind") else ""),
        })
    return rows


if __name__ == "__main__":
    import sys

    urls = [a for a in sys.argv[1:] if not a.startswith("--")]
    for row in run(urls[0] if urls else None, quick="--quick" in sys.argv):
        print(f"{row['group']:12} {row['name']:25} {row['records_per_s']:>10.0f} records/s  "
              f"call {row['call_us']:8.1f} us  added {row['added_latency_us']:8.1f} us  "
              f"ratio {row['ratio']:.3f}")
