"""Soak: steady reads, writes, invalidations and write-behind with key churn; nothing grows.

A registry on Redis serves, for 10 minutes (``SOAK_SECONDS`` in the environment changes it;
20 s with ``--quick``), four threads and an asyncio loop calling at a steady rate: tagged
reads with ``lock=True`` (sync and async), ``@write_through`` updates, ``invalidate_tags``
and ``@write_behind`` records flushed into SQLite. Keys churn: the ids in use move on every
second, so old entries, tag keys and leases expire (a short ``ttl`` and ``tag_ttl``) while
new ones come.

Every ``interval`` seconds it prints (stderr) the process's RSS, open file descriptors and
threads, Redis's connected clients, ``used_memory`` and key count (``DBSIZE``: on a shared
server it counts the others' keys too), and the sizes of the in-process structures: the
single-flight tables (loads in progress, landed loads remembered), the near cache (its
values, its tag index, its table of recent changes), the auto-recovery queues, the
write-behind queue (the stream's length and its dead letters, in Redis) and the registry's
bookkeeping (tracked functions, background tasks). After a warm-up of a few TTLs, each
series' mean over the last third of the samples is compared with its mean over the first
third: a series that grew beyond its tolerance (or, for a table with a fixed bound, above
that bound) is NOT MET, and the scenario fails (non-zero exit) naming it.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

import cachedeco
from benchmarks import progress
from benchmarks.servers import new_prefix, sweep, used_memory
from cachedeco.backends.near.store import CHANGED_LIMIT
from cachedeco.flows.spec import SPEC_ATTR
from cachedeco.runtime.singleflight import Flights

__all__ = ["NEEDS_REDIS", "run"]

NEEDS_REDIS = True
Row = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """How long, how fast, and how fast keys churn."""

    seconds: float
    interval: float  # between samples
    rate: float  # calls per second, all threads together
    ttl: float  # entries
    tag_ttl: float  # tag keys
    window: int  # ids in use at a time; the window moves by `churn` ids per second
    churn: int

    @property
    def warmup(self) -> float:
        """Seconds before the first sample that counts: entries and tag keys of the first
        ids have expired once."""
        return min(self.seconds / 4, 1.5 * max(self.ttl, self.tag_ttl))


FULL = Plan(seconds=float(os.environ.get("SOAK_SECONDS", "600")), interval=15.0, rate=600,
            ttl=10.0, tag_ttl=20.0, window=500, churn=20)
QUICK = Plan(seconds=20.0, interval=1.0, rate=400, ttl=2.0, tag_ttl=3.0, window=200, churn=40)


NEAR = 1000  # the near cache's size (entries kept in process)


@dataclass(frozen=True)
class Limit:
    """How much a series may grow from the first third to the last: ``rel`` of the first
    third's mean plus ``floor`` (absolute, in the series' unit); or, for a table with a
    fixed bound, never above ``cap`` plus ``over`` (what it may hold beyond its bound)."""

    rel: float
    floor: float
    cap: float | None = None
    over: float = 0.0


LIMITS: dict[str, Limit] = {
    "rss_mb": Limit(0.15, 8.0), "fds": Limit(0.0, 8.0), "threads": Limit(0.0, 3.0),
    "redis_clients": Limit(0.0, 8.0), "redis_used_mb": Limit(0.25, 2.0),
    "redis_keys": Limit(0.5, 500.0),
    "flights": Limit(0.0, 16.0),
    # landed loads remembered for late joiners: at most Flights.RECENT per function (2 here)
    "flights_recent": Limit(0.0, 0.0, cap=2 * Flights.RECENT),
    "near": Limit(0.0, 0.0, cap=NEAR),
    "near_tags": Limit(0.25, 64.0),
    # the names of one report are added before the bound is checked (a margin of 1,000)
    "near_changed": Limit(0.0, 0.0, cap=CHANGED_LIMIT, over=1000),
    "recoveries": Limit(0.0, 16.0), "wb_stream": Limit(0.5, 200.0), "wb_dead": Limit(0.0, 0.0),
    "functions": Limit(0.0, 2.0), "background": Limit(0.0, 8.0),
}


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Soak:
    """The registry, the functions, the load threads and the samples."""

    def __init__(self, redis_url: str, plan: Plan, tmp: Path) -> None:
        self.plan = plan
        self.prefix = new_prefix("soak")
        self.client = redis.Redis.from_url(redis_url, socket_timeout=10)
        self.reg = cachedeco.Registry(redis_url, prefix=self.prefix, ttl=plan.ttl,
                                      tag_ttl=plan.tag_ttl, stats_interval=0,
                                      near_cache=NEAR)
        self.db_path = tmp / "soak.db"
        with sqlite3.connect(self.db_path) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE events (id TEXT PRIMARY KEY, item INTEGER, n INTEGER)")
            db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v INTEGER)")
        self.local = threading.local()
        self.started = time.monotonic()
        self.stop = threading.Event()
        self.calls = 0
        self.errors = 0
        self.samples: list[dict[str, float]] = []
        self._build()

    def db(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self.local, "db", None)
        if conn is None:
            conn = self.local.db = sqlite3.connect(self.db_path, timeout=30,
                                                   isolation_level=None)
        return conn

    def _build(self) -> None:
        reg, db = self.reg, self.db

        @cachedeco.cached(tags=["item:{item}", "items"], lock=True, registry=reg)
        def get_item(item: int) -> dict[str, Any]:
            row = db().execute("SELECT v FROM items WHERE id = ?", (item,)).fetchone()
            return {"id": item, "v": row[0] if row else 0}

        @cachedeco.cached(tags=["item:{item}"], lock=True, registry=reg)
        async def aget_item(item: int) -> dict[str, Any]:
            return {"id": item, "v": -1}

        @cachedeco.write_through(get_item, registry=reg)
        def put_item(item: int, v: int) -> dict[str, Any]:
            db().execute("INSERT OR REPLACE INTO items VALUES (?, ?)", (item, v))
            return {"id": item, "v": v}

        def flush(records: list[dict[str, Any]]) -> None:
            with self.db() as conn:
                conn.executemany("INSERT OR IGNORE INTO events VALUES (:id, :item, :n)",
                                 records)

        @cachedeco.cached(registry=reg)
        def get_event(eid: str) -> dict[str, Any] | None:
            return None

        @cachedeco.write_behind(get_event, flush=flush, batch_size=200, flush_interval=0.5,
                                registry=reg)
        def record_event(eid: str, item: int, n: int) -> dict[str, Any]:
            return {"id": eid, "item": item, "n": n}

        self.get_item, self.aget_item, self.put_item = get_item, aget_item, put_item
        self.record_event = record_event
        self.stream = reg.keyspace.queue(f"{record_event.__module__}."
                                         f"{record_event.__qualname__}")

    def item(self, rng: random.Random) -> int:
        """An id in the moving window."""
        base = int((time.monotonic() - self.started) * self.plan.churn)
        return base + rng.randrange(self.plan.window)

    def _one(self, rng: random.Random, n: int) -> None:
        item, roll = self.item(rng), rng.random()
        if roll < 0.75:
            self.get_item(item)
        elif roll < 0.85:
            self.put_item(item, n)
        elif roll < 0.90:
            self.reg.invalidate_tags(f"item:{item}")
        else:
            self.record_event(f"{threading.get_ident()}-{n}", item, n)

    def _thread(self, seed: int, rate: float) -> None:
        rng, n, due = random.Random(seed), 0, time.monotonic()
        while not self.stop.is_set():
            n += 1
            try:
                self._one(rng, n)
            except cachedeco.CacheError:
                self.errors += 1
            self.calls += 1
            due += 1 / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                due = time.monotonic()

    async def _async_loop(self, rate: float) -> None:
        rng = random.Random(99)
        while not self.stop.is_set():
            items = [self.item(rng) for _ in range(8)]
            try:
                await asyncio.gather(*(self.aget_item(i) for i in items))
            except cachedeco.CacheError:
                self.errors += 1
            self.calls += len(items)
            await asyncio.sleep(len(items) / rate)
        await self.reg.aclose()

    def sample(self) -> dict[str, float]:
        """One sample of every series."""
        flights = getattr(self.get_item, SPEC_ATTR).flights
        aflights = getattr(self.aget_item, SPEC_ATTR).flights
        recovery = self.reg.recovery
        near = self.reg.slot("default").near
        info = self.client.info("clients")
        return {
            "t": time.monotonic() - self.started, "calls": self.calls, "errors": self.errors,
            "rss_mb": _rss_mb(), "fds": _fds(), "threads": threading.active_count(),
            "redis_clients": int(info["connected_clients"]),
            "redis_used_mb": used_memory(self.client) / 2**20,
            "redis_keys": int(self.client.dbsize()),
            "flights": len(flights._flights) + len(aflights._flights),
            "flights_recent": len(flights._recent) + len(aflights._recent),
            "near": len(near) if near is not None else 0,
            "near_tags": len(near._by_tag) if near is not None else 0,
            "near_changed": len(near._changed) if near is not None else 0,
            "recoveries": recovery.pending,
            "wb_stream": int(self.client.xlen(self.stream.stream)),
            "wb_dead": int(self.client.xlen(self.stream.dead)) if self.client.exists(
                self.stream.dead) else 0,
            "functions": len(self.reg.ledger._live),
            "background": len(self.reg.background._tasks),
        }

    def run(self) -> None:
        threads = [threading.Thread(target=self._thread, args=(i, self.plan.rate * 0.2),
                                    daemon=True) for i in range(4)]
        threads.append(threading.Thread(
            target=lambda: asyncio.run(self._async_loop(self.plan.rate * 0.2)), daemon=True))
        for thread in threads:
            thread.start()
        steps = int(self.plan.seconds / self.plan.interval)
        progress.task("soak", steps)
        progress.bar.note("    " + _line(None))
        try:
            for step in range(1, steps + 1):
                time.sleep(max(0.0, self.started + step * self.plan.interval
                               - time.monotonic()))
                self.samples.append(self.sample())
                progress.bar.note("    " + _line(self.samples[-1]))
                progress.advance()
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(30)
            self.reg.close()

    def close(self) -> None:
        self.reg.close()
        sweep(self.client, self.prefix)
        self.client.close()


_COLUMNS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("t", "t s", lambda v: f"{v:6.0f}"), ("calls", "calls", lambda v: f"{v:9.0f}"),
    ("rss_mb", "RSS MB", lambda v: f"{v:7.1f}"), ("fds", "fds", lambda v: f"{v:4.0f}"),
    ("threads", "thr", lambda v: f"{v:4.0f}"),
    ("redis_clients", "clients", lambda v: f"{v:7.0f}"),
    ("redis_used_mb", "used MB", lambda v: f"{v:7.1f}"),
    ("redis_keys", "keys", lambda v: f"{v:6.0f}"),
    ("flights", "flights", lambda v: f"{v:7.0f}"),
    ("flights_recent", "landed", lambda v: f"{v:6.0f}"),
    ("near", "near", lambda v: f"{v:5.0f}"),
    ("recoveries", "recov", lambda v: f"{v:5.0f}"),
    ("wb_stream", "wb queue", lambda v: f"{v:8.0f}"), ("wb_dead", "dead", lambda v: f"{v:4.0f}"),
)


def _line(sample: dict[str, float] | None) -> str:
    """One printed line: the header when ``sample`` is None."""
    if sample is None:
        return " ".join(f"{title:>{len(fmt(0))}}" for _, title, fmt in _COLUMNS)
    return " ".join(fmt(sample[key]) for key, _, fmt in _COLUMNS)


def verdict(samples: list[dict[str, float]], warmup: float) -> list[Row]:
    """One row per series: the first third's mean against the last third's (after
    ``warmup``), NOT MET when it grew beyond its :data:`LIMITS` entry."""
    counted = [s for s in samples if s["t"] >= warmup] or samples
    third = max(1, len(counted) // 3)
    first, last = counted[:third], counted[-third:]
    rows = []
    for name, limit in LIMITS.items():
        before = statistics.fmean(s[name] for s in first)
        after = statistics.fmean(s[name] for s in last)
        top = max(s[name] for s in samples)
        if limit.cap is not None:
            most = limit.cap + limit.over
            target = f"never above {most:,g} (its bound" + (
                f", {limit.cap:,g}, plus {limit.over:,g})" if limit.over else ")")
            met = top <= most
        else:
            allowed = before * (1 + limit.rel) + limit.floor
            target = (f"last third <= {allowed:.1f} (first third x {1 + limit.rel:.2f} + "
                      f"{limit.floor:g})")
            met = after <= allowed
        rows.append({
            "group": "soak", "row": name, "first_third": round(before, 2),
            "last_third": round(after, 2), "max": top, "target": target, "met": met,
            "note": f"{len(samples)} samples, {len(counted)} after a {warmup:.0f} s warm-up",
        })
    return rows


def run(redis_url: str | None, quick: bool) -> list[Row]:
    """The soak; raises (the run fails) when a series grew without bound."""
    if redis_url is None:
        raise RuntimeError("the soak needs Redis")
    plan = QUICK if quick else FULL
    with tempfile.TemporaryDirectory() as tmp:
        soak = Soak(redis_url, plan, Path(tmp))
        try:
            soak.run()
        finally:
            soak.close()
    rows = verdict(soak.samples, plan.warmup)
    last = soak.samples[-1] if soak.samples else {"calls": 0, "errors": 0}
    rows.append({"group": "soak", "row": "calls", "ops_per_s": last["calls"] / plan.seconds,
                 "note": f"{last['calls']:.0f} calls, {last['errors']:.0f} errors, "
                         f"{plan.seconds:.0f} s"})
    grown = [r for r in rows if r.get("met") is False]
    if grown:
        for row in rows:
            progress.bar.note(f"    {row['row']:<15} {row.get('first_third', '')!s:>10} -> "
                              f"{row.get('last_third', '')!s:>10}  {row.get('target', '')}")
        raise AssertionError("grew without bound: " + "; ".join(
            f"{r['row']} {r['first_third']} -> {r['last_third']} ({r['target']})"
            for r in grown))
    return rows
