"""A Zipf workload: many concurrent callers, a skewed key popularity, a slow function.

Full run: 30,000 calls by 1,000 concurrent callers over 10,000 keys drawn from Zipf(1.1)
(seeded), the function sleeping 100 ms; ``--quick`` scales it down to 1,000 calls, 50
callers, 200 keys and 5 ms. The ideal number of loads is the number of distinct keys drawn:
more means concurrent callers of one key each ran the function (no single-flight) or entries
were evicted. Reported per library: loads against distinct keys, wall time, calls per second
and the wall time as a ratio to cachedeco's (a ratio above 1 is a slower peer). Target:
cachedeco loads = distinct keys and it is faster than every peer.

Async libraries run as tasks on one event loop; the sync peers (dogpile.cache, cachetools)
run the same stream on a pool of as many threads as there are callers. On Redis every library
gets a connection pool of one connection per caller (redis-py 8 defaults to 100, cashews to
10, cachedeco to 64: too few for 1,000 callers); one more row shows cachedeco with its default
pool. Calls that raise are counted as errors; cachedeco's backend errors (a read or store that
failed, the call then served by running the function: ``on_error="fallback"``) are counted
too. It runs on memory:// and, when the run has Redis, on Redis too; each library runs once
(one long pass, in a fixed order), on a cold cache.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cachedeco
from benchmarks import peers, progress
from benchmarks.rig import Rig
from benchmarks.workload import zipf_keys

__all__ = ["run"]


@dataclass(frozen=True)
class Sizes:
    """The shape of the workload."""

    calls: int
    callers: int
    keys: int
    sleep: float


FULL = Sizes(calls=30_000, callers=1_000, keys=10_000, sleep=0.1)
QUICK = Sizes(calls=1_000, callers=50, keys=200, sleep=0.005)


@dataclass
class Counted:
    """A workload's function, sync or async, with how often it ran (loads) and how many calls
    raised (errors: a library that gives up on its pool, say)."""

    sleep: float
    loads: int = 0
    errors: int = 0

    def sync(self) -> Callable[[int], dict[str, int]]:
        """A plain sync function that sleeps, then returns a small record."""

        def load(key: int) -> dict[str, int]:
            self.loads += 1
            time.sleep(self.sleep)
            return {"key": key}

        return load

    def async_(self) -> Callable[[int], Awaitable[dict[str, int]]]:
        """A plain ``async def`` that sleeps, then returns a small record."""

        async def load(key: int) -> dict[str, int]:
            self.loads += 1
            await asyncio.sleep(self.sleep)
            return {"key": key}

        return load


@dataclass
class Library:
    """One row: a cached function of ``counted`` and how to drive the stream through it."""

    name: str
    counted: Counted
    workload: Callable[[], None]
    note: str = ""
    call: object = None  # the decorated function (cachedeco's reports backend errors)

    def backend_errors(self) -> int | None:
        """Backend errors cachedeco counted (each one a fallback to an uncached call)."""
        stats = getattr(self.call, "stats", None)
        found = stats() if callable(stats) else None
        return found.backend_errors if isinstance(found, cachedeco.Stats) else None


def _drive_async(rig: Rig, call: Callable[[int], Awaitable[object]], stream: list[int],
                 callers: int, counted: Counted) -> None:
    todo = iter(stream)

    async def caller() -> None:
        for key in todo:
            try:
                await call(key)
            except Exception:
                counted.errors += 1

    async def main() -> None:
        await asyncio.gather(*(caller() for _ in range(callers)))

    rig.loop.run_until_complete(main())


def _drive_threads(call: Callable[[int], object], stream: list[int], callers: int,
                   counted: Counted) -> None:
    todo = iter(stream)  # a list iterator is safe to share between threads in CPython

    def caller() -> None:
        for key in todo:
            try:
                call(key)
            except Exception:
                counted.errors += 1

    with ThreadPoolExecutor(callers) as pool:
        for future in [pool.submit(caller) for _ in range(callers)]:
            future.result()


def _libraries(rig: Rig, sizes: Sizes) -> list[Library]:
    """cachedeco and every installed peer, each with a pool of one connection per caller."""
    stream = zipf_keys(sizes.calls, sizes.keys)
    found: list[Library] = []
    pool = sizes.callers

    def add_async(name: str, make: Callable[[Counted], Callable[[int], Awaitable[object]]],
                  note: str = "") -> None:
        counted = Counted(sizes.sleep)
        call = make(counted)
        found.append(Library(name, counted, lambda: _drive_async(
            rig, call, stream, sizes.callers, counted), note, call))

    def add_threads(name: str, make: Callable[[Counted], Callable[[int], object]],
                    note: str) -> None:
        counted = Counted(sizes.sleep)
        call = make(counted)
        found.append(Library(name, counted, lambda: _drive_threads(
            call, stream, sizes.callers, counted), note))

    pooled = f"pool {pool}" if rig.url is not None else ""
    add_async("cachedeco", lambda c: cachedeco.cached(ttl=3600, registry=rig.reg)(c.async_()),
              pooled)
    if rig.url is not None:  # what a user gets without sizing the pool for 1,000 callers
        default = cachedeco.Registry(rig.url, prefix=rig.key("default-pool"))
        rig.cleanups.append(default.aclose)
        add_async("cachedeco, default pool", lambda c: cachedeco.cached(
            ttl=3600, registry=default)(c.async_()), "BlockingConnectionPool(64), 5 s timeout")
    if peers.has("cashews"):
        cache = peers.cashews_cache(rig.url, mem_size=4 * sizes.keys, pool=pool)
        add_async("cashews", lambda c: rig.peer(peers.cashews_cached(
            cache, c.async_(), key=rig.key("cashews", "{key}"))).call, pooled)
    if peers.has("aiocache"):
        add_async("aiocache", lambda c: rig.peer(peers.aiocache_cached(
            c.async_(), rig.key("aiocache"), rig.url, pool=pool)).call,
            ", ".join(filter(None, ["timeout=0", pooled])))
    threads = f"{sizes.callers} threads"
    if peers.has("dogpile.cache"):
        add_threads("dogpile.cache", lambda c: rig.peer(peers.dogpile_cached(
            c.sync(), rig.key("zipf-dogpile"), rig.url, pool=pool)).call,
            ", ".join(filter(None, [threads, pooled])))
    if rig.url is None and peers.has("cachetools"):
        add_threads("cachetools", lambda c: peers.cachetools_cached(
            c.sync(), 4 * sizes.keys, single_flight=True).call, f"{threads}, Condition")
    return found


def _rows(rig: Rig, sizes: Sizes, group: str) -> list[dict[str, Any]]:
    """Run every library once on a cold cache; loads, errors, wall and CPU time."""
    distinct = len(set(zipf_keys(sizes.calls, sizes.keys)))
    libraries = _libraries(rig, sizes)
    rows: list[dict[str, Any]] = []
    for lib in libraries:
        progress.task(f"zipf on {group}: {lib.name}", 1)  # a duration per library in a log
        cpu0, wall0 = time.process_time(), time.perf_counter()
        lib.workload()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        loads = lib.counted.loads
        rows.append({"group": group, "row": lib.name, "calls": sizes.calls,
                     "callers": sizes.callers, "distinct": distinct, "loads": loads,
                     "loads_per_distinct": loads / distinct, "errors": lib.counted.errors,
                     "backend_errors": lib.backend_errors(),
                     "wall_s": wall, "ops_per_s": sizes.calls / wall,
                     "cpu_us": cpu / sizes.calls * 1e6, **({"note": lib.note} if lib.note else {})})
        progress.advance()
    ours = rows[0]
    for row in rows:
        row["ratio"] = row["wall_s"] / ours["wall_s"]
    peers_ = [r for r in rows[1:] if not r["row"].startswith("cachedeco")]
    rival = min(peers_, key=lambda r: r["ratio"], default=None)
    ours["result"] = f"{ours['loads']:,} loads for {distinct:,} distinct keys" + (
        f" ({ours['backend_errors']:,} backend errors)" if ours["backend_errors"] else "") + (
        f"; fastest peer {rival['row']}: {rival['ratio']:.2f}x cachedeco's wall time"
        if rival else "")
    ours.update(baseline="(ideal: loads = distinct)", target="loads = distinct; fastest",
                met=ours["loads"] == distinct and not ours["errors"]
                and not ours["backend_errors"] and all(r["ratio"] > 1 for r in peers_))
    return rows


def run(redis_url: str | None, quick: bool) -> list[dict[str, Any]]:
    """Run the workload on memory:// and (with Redis) on Redis for every library."""
    sizes = QUICK if quick else FULL
    rows: list[dict[str, Any]] = []
    for url, group in ((None, "memory://"), (redis_url, "redis")):
        if group == "redis" and url is None:
            continue
        with Rig(url, f"zipf-{'mem' if url is None else 'redis'}", maxsize=4 * sizes.keys,
                 max_connections=sizes.callers) as rig:
            rows += _rows(rig, sizes, group)
    return rows
