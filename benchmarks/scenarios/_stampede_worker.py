"""A stampede worker process: one library's share of the callers, timed from the go.

``python -m benchmarks.scenarios._stampede_worker --worker LIB URL TOKEN SHARE LOAD`` (started by
:mod:`benchmarks.scenarios.stampede`): it sets the library up, warms it, prints ``ready``,
waits for ``go`` on stdin, runs its callers (asyncio tasks, or threads released together by
one ``threading.Event``) and prints a JSON report: loads, errors, each caller's latency.

A caller thread stays alive once its call has returned and its time is noted, as a pool's
worker goes back to its queue, and all of them leave together after the last one is timed.
A thread that exits at once tears its state down (about 40 µs of CPU here, most of it under
the GIL) while the threads still waiting need that GIL to return: with 250 threads that
teardown alone tripled a no-op's p99 (the row "floor (threads exit after their call)").

Before ``ready`` a worker moves what its set-up made (some 45,000 objects of the imported
modules) out of the collector's way with ``gc.freeze()``, as a pre-fork server does after
start-up; every library alike. Without it a full collection over them falls in the waiters'
wake-up of every run (the burst of allocations there triggers it): 50-70 ms on the 2-core
VM with 4 processes, measured by the row that leaves it out.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["WORKERS", "Worker"]


class Worker:
    """One process's share: the library's decorated function, its callers and their times."""

    def __init__(self, url: str, token: str, share: int, load: float) -> None:
        self.url, self.token, self.share, self.load = url, token, share, load
        self.runs = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        #: What the parent subtracts from each latency: the load (nothing for a no-op).
        self.offset_ms = load * 1000
        self.freeze = True  # gc.freeze() what the set-up made, before ``ready``
        self.linger = True  # caller threads stay until all are timed (as a pool's would)

    def ran(self) -> dict[str, str]:
        with self.lock:
            self.runs += 1
        return {"value": "v" * 100}

    def report(self) -> str:
        return json.dumps({"runs": self.runs, "errors": self.errors,
                           "latencies_ms": self.latencies, "offset_ms": self.offset_ms})


def _wait_for_go(worker: Worker) -> float:
    if worker.freeze:
        gc.collect()
        gc.freeze()
    print("ready", flush=True)
    sys.stdin.readline()
    return time.perf_counter()


async def _tasks(worker: Worker, call: Callable[[int], Any], close: Any = None) -> None:
    # warm: as many connections as callers, the scripts loaded
    await asyncio.gather(*(call(-1) for _ in range(worker.share)))
    worker.runs = 0

    async def one(go: float) -> None:
        try:
            await call(1)
        except Exception:
            worker.errors += 1
        worker.latencies.append((time.perf_counter() - go) * 1000)

    go = _wait_for_go(worker)
    await asyncio.gather(*(one(go) for _ in range(worker.share)))
    if close is not None:
        await close()


def _threads(worker: Worker, call: Callable[[int], Any]) -> None:
    warm = [threading.Thread(target=call, args=(-1,)) for _ in range(worker.share)]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join()
    worker.runs = 0
    go, timed, leave = threading.Event(), threading.Event(), threading.Event()
    started = [0.0]

    def one() -> None:
        go.wait()
        try:
            call(1)
        except Exception:
            with worker.lock:
                worker.errors += 1
        with worker.lock:
            worker.latencies.append((time.perf_counter() - started[0]) * 1000)
            if len(worker.latencies) == worker.share:
                timed.set()
        if worker.linger:
            leave.wait()

    threads = [threading.Thread(target=one) for _ in range(worker.share)]
    for thread in threads:
        thread.start()
    started[0] = _wait_for_go(worker)
    go.set()
    timed.wait()
    leave.set()
    for thread in threads:
        thread.join()


def _cachedeco_async(worker: Worker) -> None:
    import cachedeco

    # stats_interval=0: the report of the counters at close is not the stampede's commands
    registry = cachedeco.Registry(worker.url, prefix=worker.token, stats_interval=0)

    @cachedeco.cached(ttl=3600, lock=True, registry=registry)
    async def value(x: int) -> dict[str, str]:
        await asyncio.sleep(worker.load)
        return worker.ran()

    asyncio.run(_tasks(worker, value, registry.aclose))


def _cachedeco_async_unfrozen(worker: Worker) -> None:
    worker.freeze = False
    _cachedeco_async(worker)


def _cachedeco_sync(worker: Worker) -> None:
    import cachedeco

    # stats_interval=0: the report of the counters at close is not the stampede's commands
    registry = cachedeco.Registry(worker.url, prefix=worker.token, stats_interval=0)

    @cachedeco.cached(ttl=3600, lock=True, registry=registry)
    def value(x: int) -> dict[str, str]:
        time.sleep(worker.load)
        return worker.ran()

    _threads(worker, value)
    registry.close()


def _cashews(worker: Worker) -> None:
    from cashews import Cache

    cache = Cache()
    cache.setup(worker.url, max_connections=worker.share + 10)

    @cache(ttl=3600, key=worker.token + ":cashews:{x}", lock=True)
    async def value(x: int) -> dict[str, str]:
        await asyncio.sleep(worker.load)
        return worker.ran()

    asyncio.run(_tasks(worker, value, cache.close))


def _aiocache(worker: Worker) -> None:
    from urllib.parse import urlsplit

    import aiocache
    from aiocache.serializers import JsonSerializer

    where = urlsplit(worker.url)

    def key_builder(_f: Any, *args: Any, **_kwargs: Any) -> str:
        return ":".join(map(str, args))

    @aiocache.cached_stampede(
        lease=2, ttl=3600, cache=aiocache.RedisCache, endpoint=where.hostname, port=where.port,
        db=int(where.path.strip("/") or 0), namespace=worker.token + ":aiocache:", timeout=0,
        key_builder=key_builder, serializer=JsonSerializer(), pool_max_size=worker.share + 10)
    async def value(x: int) -> dict[str, str]:
        await asyncio.sleep(worker.load)
        return worker.ran()

    asyncio.run(_tasks(worker, value, value.cache.close))


def _dogpile(worker: Worker) -> None:
    from dogpile.cache import make_region

    region = make_region(key_mangler=lambda key: f"{worker.token}:dogpile:{key}")
    region.configure("dogpile.cache.redis", expiration_time=3600, arguments={
        "url": worker.url, "redis_expiration_time": 3660, "distributed_lock": True,
        "lock_timeout": 30, "thread_local_lock": False,
        "connection_kwargs": {"max_connections": worker.share + 10}})

    @region.cache_on_arguments()
    def value(x: int) -> dict[str, str]:
        time.sleep(worker.load)
        return worker.ran()

    _threads(worker, value)


def _floor_noop(worker: Worker) -> None:
    """The floor of the thread rows: the same threads, released the same way, calling a
    function that returns at once (nothing subtracted: this is the release itself)."""
    worker.offset_ms = 0.0
    _threads(worker, lambda x: None)


def _floor_exiting(worker: Worker) -> None:
    """The no-op floor with threads that exit as soon as their call returns: what the
    teardown of the early ones adds to the late ones (shown, not a floor of the judged row)."""
    worker.linger = False
    _floor_noop(worker)


def _floor_event(worker: Worker) -> None:
    """Single-flight in one process with the standard library and no Redis: the first caller
    sleeps the load and sets a ``threading.Event`` the others wait on."""
    first = threading.Lock()
    done = threading.Event()

    def call(x: int) -> None:
        if x < 0:
            return
        if first.acquire(blocking=False):
            time.sleep(worker.load)
            worker.ran()
            done.set()
        else:
            done.wait()

    _threads(worker, call)


WORKERS: dict[str, Callable[[Worker], None]] = {
    "cachedeco": _cachedeco_async,
    "cachedeco (collector not frozen)": _cachedeco_async_unfrozen,
    "cachedeco (sync, threads)": _cachedeco_sync,
    "cashews": _cashews,
    "aiocache": _aiocache,
    "dogpile.cache": _dogpile,
    "floor (threads): no-op": _floor_noop,
    "floor (threads): one Event, no Redis": _floor_event,
    "floor (threads exit after their call): no-op": _floor_exiting,
}


def _worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="stampede worker")
    parser.add_argument("--worker", required=True, choices=sorted(WORKERS))
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("share", type=int)
    parser.add_argument("load", type=float)
    args = parser.parse_args(argv)
    worker = Worker(args.url, args.token, args.share, args.load)
    WORKERS[args.worker](worker)
    print(worker.report(), flush=True)


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
