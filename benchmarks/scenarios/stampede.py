"""1,000 callers over 4 processes on one cold key: loads, waiter latency, commands per waiter.

Each library runs in 4 fresh worker processes (``python -m benchmarks.scenarios.stampede
--worker LIB ...``). A worker sets its library up with stampede protection across processes
(cachedeco ``lock=True``, cashews ``lock=True``, aiocache ``cached_stampede`` (RedLock),
dogpile.cache ``distributed_lock=True``), warms its connections on another key and says
``ready``. When all four are ready the parent snapshots ``INFO commandstats`` and tells them to
go; each starts its share of the callers at once (asyncio tasks; threads for the sync rows), the
function sleeping ``LOAD`` seconds and counting its runs. Reported per library: loads (target:
exactly 1), each caller's latency from the go minus the load time, p50 and p99 (target: p99 at
most 20 ms), and Redis commands per caller (commandstats delta without INFO; commands run
inside Lua scripts count too). ``--quick``: cachedeco's rows only, 100 callers over 2
processes, a 0.05 s load.
Peers run with their documented options and a connection pool of one connection per caller
of a process (their defaults are smaller); their rows are left out when not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import redis

from benchmarks import progress, verdicts
from benchmarks.harness import quantiles

__all__ = ["NEEDS_REDIS", "run"]

NEEDS_REDIS = True
PROCESSES = 4
ROUNDS = 3  # full runs: each library's row is the median of this many runs
ROOT = Path(__file__).resolve().parents[2]
TARGET_P99_MS = 20.0
#: Rows: name, the module that must import, whether its callers are threads.
LIBRARIES: tuple[tuple[str, str, bool], ...] = (
    ("cachedeco", "cachedeco", False),
    ("cachedeco (sync, threads)", "cachedeco", True),
    ("cashews", "cashews", False),
    ("aiocache", "aiocache", False),
    ("dogpile.cache", "dogpile.cache", True),
)
NOTES = {
    "cachedeco": "lock=True",
    "cachedeco (sync, threads)": "lock=True",
    "cashews": "lock=True (waiters poll)",
    "aiocache": "cached_stampede, lease=2 (RedLock; waiters poll)",
    "dogpile.cache": "distributed_lock=True (redis-py Lock, sleep=0.1)",
}


# --- the parent ------------------------------------------------------------------------------


def run(redis_url: str | None, quick: bool) -> list[dict[str, Any]]:
    """One row per library that is installed (see the module docstring): the median of
    ``ROUNDS`` runs (one with ``quick``), the libraries taking turns in each round."""
    if redis_url is None:
        return []
    callers, load, rounds, processes = ((100, 0.05, 1, 2) if quick else
                                        (1000, 0.2, ROUNDS, PROCESSES))
    names = [name for name, module, _ in LIBRARIES if _installed(module)
             and (not quick or name.startswith("cachedeco"))]  # --quick: no peers
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    failed: dict[str, str] = {}
    with redis.Redis.from_url(redis_url) as client:
        for round_ in range(rounds):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                if name in failed:
                    continue
                token = f"cdbench-stampede-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                try:
                    samples[name].append(
                        _measure(client, redis_url, name, token, callers=callers, load=load,
                                 processes=processes))
                except Exception as exc:  # one broken peer must not hide the other rows
                    failed[name] = f"failed: {type(exc).__name__}: {exc}"
                finally:
                    _sweep(client, token)
    return [_row(name, samples[name], callers, failed.get(name)) for name in names]


def _installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _measure(client: redis.Redis, url: str, name: str, token: str, *, callers: int,
             load: float, processes: int = PROCESSES) -> dict[str, Any]:
    """Run one library's stampede in worker processes once: loads, errors, waits, commands."""
    share = callers // processes
    # a worker's stderr (a peer's tracebacks, hundreds under load) is kept out of the log
    with contextlib.ExitStack() as files:
        logs = [files.enter_context(tempfile.TemporaryFile("w+")) for _ in range(processes)]
        return _run_workers(client, url, name, token, logs, share=share, load=load)


def _run_workers(client: redis.Redis, url: str, name: str, token: str, logs: Sequence[IO[str]], *,
                 share: int, load: float) -> dict[str, Any]:
    """Start a worker per log file, wait until all are ready, say go and collect reports."""
    workers = [_start(name, url, token, share, load, log=log) for log in logs]
    try:
        for worker, log in zip(workers, logs, strict=True):
            line = worker.stdout.readline() if worker.stdout else ""
            if line.strip() != "ready":
                worker.kill()
                worker.communicate()
                raise RuntimeError(f"a worker did not start: {line.strip()!r}; its stderr "
                                   f"ends: {_stderr(log)[-1:]!r}")
        before = _commands(client)
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        reports = [json.loads(worker.communicate(timeout=120)[0]) for worker in workers]
        commands = _commands(client) - before
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    tracebacks = sum("Traceback" in line for log in logs for line in _stderr(log))
    if tracebacks:
        progress.bar.note(f"    stampede · {name}: {tracebacks} traceback(s) in its workers' "
                          "stderr (not shown)")
    waits = sorted(max(ms - load * 1000, 0.0) for r in reports for ms in r["latencies_ms"])
    return {"loads": sum(r["runs"] for r in reports), "errors": sum(r["errors"] for r in reports),
            "p50": _percentile(waits, 0.5), "p99": _percentile(waits, 0.99),
            "commands": commands / (share * len(logs))}


def _row(name: str, samples: list[dict[str, Any]], callers: int,
         failure: str | None) -> dict[str, Any]:
    """A table row from one library's samples (medians; the worst loads; errors summed)."""
    row: dict[str, Any] = {"scenario": "stampede", "row": name}
    if not samples:
        return {**row, "note": failure or "no sample"}
    loads = max(sample["loads"] for sample in samples)
    errors = sum(sample["errors"] for sample in samples)
    p99 = statistics.median(sample["p99"] for sample in samples)
    row.update({
        "loads": loads, "p50_ms": round(statistics.median(s["p50"] for s in samples), 2),
        "p99_ms": round(p99, 2),
        "commands_per_waiter": round(statistics.median(s["commands"] for s in samples), 2),
        "callers": callers, "rounds": len(samples),
        "note": "; ".join(filter(None, [NOTES[name], f"{errors} calls raised" if errors else "",
                                        failure or ""])),
    })
    if name.startswith("cachedeco"):  # judged on the p10-p90 of the runs' p99 (noisy)
        low, _, high = quantiles([sample["p99"] for sample in samples])
        row["target"] = f"loads = 1, p99 <= {TARGET_P99_MS:g} ms"
        row["met"] = loads == 1 and errors == 0 and p99 <= TARGET_P99_MS
        row["verdict"] = (verdicts.judge(low, high, TARGET_P99_MS) if loads == 1 and not errors
                          else verdicts.NOT_MET)
        runs = ", ".join(f"{sample['p99']:.1f}" for sample in samples)
        row["result"] = f"{loads} load(s), waiter p99 {p99:.1f} ms (runs: {runs} ms)"
    return row


def _percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of sorted ``values``."""
    if not values:
        return math.nan
    return values[min(len(values) - 1, max(math.ceil(q * len(values)) - 1, 0))]


def _commands(client: redis.Redis) -> int:
    """Commands the server has run, INFO left out (``INFO commandstats``)."""
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items()
               if k.startswith("cmdstat_") and k != "cmdstat_info")


def _start(name: str, url: str, token: str, share: int, load: float, *, log: IO[str]
           ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.scenarios.stampede", "--worker", name, url, token,
         str(share), str(load)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)


def _stderr(log: IO[str]) -> list[str]:
    """The lines a worker wrote to its stderr file (each cut to 200 characters)."""
    log.seek(0)
    return [line.strip()[:200] for line in log if line.strip()]


def _sweep(client: redis.Redis, token: str) -> None:
    """Delete every key holding the run's token (SCAN + UNLINK; peers put their lock keys in
    front of ours, so match anywhere)."""
    batch = list(client.scan_iter(match=f"*{token}*", count=1000))
    for start in range(0, len(batch), 500):
        client.unlink(*batch[start:start + 500])


# --- the workers -----------------------------------------------------------------------------


class Worker:
    """One process's share: the library's decorated function, its callers and their times."""

    def __init__(self, url: str, token: str, share: int, load: float) -> None:
        self.url, self.token, self.share, self.load = url, token, share, load
        self.runs = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.lock = threading.Lock()

    def ran(self) -> dict[str, str]:
        with self.lock:
            self.runs += 1
        return {"value": "v" * 100}

    def report(self) -> str:
        return json.dumps({"runs": self.runs, "errors": self.errors,
                           "latencies_ms": self.latencies})


def _wait_for_go() -> float:
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

    go = _wait_for_go()
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
    go = threading.Event()
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

    threads = [threading.Thread(target=one) for _ in range(worker.share)]
    for thread in threads:
        thread.start()
    started[0] = _wait_for_go()
    go.set()
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


WORKERS: dict[str, Callable[[Worker], None]] = {
    "cachedeco": _cachedeco_async,
    "cachedeco (sync, threads)": _cachedeco_sync,
    "cashews": _cashews,
    "aiocache": _aiocache,
    "dogpile.cache": _dogpile,
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
