"""1,000 callers over 4 processes on one cold key: loads, waiter latency, commands per waiter.

Each library runs in 4 fresh worker processes (:mod:`benchmarks.scenarios._stampede_worker`).
A worker sets its library up with stampede protection across processes (cachedeco
``lock=True``, cashews ``lock=True``, aiocache ``cached_stampede`` (RedLock), dogpile.cache
``distributed_lock=True``), warms its connections on another key and says ``ready``. When all
four are ready the parent snapshots ``INFO commandstats`` and tells them to go; each starts
its share of the callers at once (asyncio tasks; threads for the sync rows, all parked on one
``threading.Event`` that the go sets), the function sleeping ``LOAD`` seconds and counting its
runs. Reported per library: loads (target: exactly 1), each caller's latency from the go
minus the load time, p50 and p99 (target: p99 at most 20 ms), and Redis commands per caller
(commandstats delta without INFO; commands run inside Lua scripts count too). Every worker
freezes (``gc.freeze()``) what its set-up made before it says ready (see
:mod:`benchmarks.scenarios._stampede_worker`); the row "cachedeco (collector not frozen)"
leaves that out, and its p99 is printed beside the cachedeco row (not judged).
Two floor rows show what the machine imposes on the thread rows, measured in the same rounds:
the same threads released the same way calling a no-op (latency from the go, nothing
subtracted), and a single flight per process with a plain ``threading.Event`` and no Redis
(minus the load). The sync row is judged as the target is written, its floors printed beside.
A caller thread stays alive after its call until every caller of its process is timed, as a
pool's worker would; the row "floor (threads exit after their call)" shows the no-op with
threads that exit at once instead (their teardown delays the threads still to return; until
2026-12-05 every thread row ran so). Not in ``--quick``.
``--quick``: cachedeco's rows and the floors, one run, 100 callers over 2 processes, a 0.05 s
load. Peers run with their documented options and a connection pool of one connection per
caller of a process (their defaults are smaller); their rows are left out when not installed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import redis

from benchmarks import progress, verdicts
from benchmarks.harness import quantiles
from benchmarks.servers import UNCOUNTED

__all__ = ["NEEDS_REDIS", "run"]

NEEDS_REDIS = True
PROCESSES = 4
ROUNDS = 3  # full runs: each library's row is the median of this many runs
ROOT = Path(__file__).resolve().parents[2]
TARGET_P99_MS = 20.0
#: Rows: name, the module that must import, whether its callers are threads.
LIBRARIES: tuple[tuple[str, str, bool], ...] = (
    ("cachedeco", "cachedeco", False),
    ("cachedeco (collector not frozen)", "cachedeco", False),
    ("cachedeco (sync, threads)", "cachedeco", True),
    ("cashews", "cashews", False),
    ("aiocache", "aiocache", False),
    ("dogpile.cache", "dogpile.cache", True),
    ("floor (threads): no-op", "threading", True),
    ("floor (threads): one Event, no Redis", "threading", True),
    ("floor (threads exit after their call): no-op", "threading", True),
)
EXITING = "floor (threads exit after their call): no-op"  # shown, not beside the sync row
FLOORS = tuple(name for name, _, _ in LIBRARIES if name.startswith("floor") and name != EXITING)
UNFROZEN = "cachedeco (collector not frozen)"  # shown beside the async row, not judged
JUDGED = ("cachedeco", "cachedeco (sync, threads)")
NOTES = {
    "cachedeco": "lock=True",
    "cachedeco (collector not frozen)": "lock=True; no gc.freeze() after set-up: a full "
    "collection falls in the wake-up",
    "cachedeco (sync, threads)": "lock=True",
    "cashews": "lock=True (waiters poll)",
    "aiocache": "cached_stampede, lease=2 (RedLock; waiters poll)",
    "dogpile.cache": "distributed_lock=True (redis-py Lock, sleep=0.1)",
    "floor (threads): no-op": "the thread rows' release alone: latency from the go",
    "floor (threads): one Event, no Redis": "a load per process, its threads wait on an Event",
    EXITING: "the no-op floor, each thread exiting as soon as it is timed",
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
             and (not quick or (name.startswith(("cachedeco", "floor"))
                                and name not in (UNFROZEN, EXITING)))]  # --quick: no peers
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
    rows = [_row(name, samples[name], callers, failed.get(name)) for name in names]
    return _beside(rows)


def _beside(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The floors' p99 written into the sync row's result and the unfrozen row's into the
    async one's, so their verdicts read with them."""
    floors = [f"{row['row'].split(': ')[1]} {row['p99_ms']:.1f} ms" for row in rows
              if row["row"] in FLOORS and "p99_ms" in row]
    unfrozen = [row["p99_ms"] for row in rows if row["row"] == UNFROZEN and "p99_ms" in row]
    for row in rows:
        if row["row"] == "cachedeco (sync, threads)" and "result" in row and floors:
            row["result"] += f"; floors' p99: {', '.join(floors)}"
        if row["row"] == "cachedeco" and "result" in row and unfrozen:
            row["result"] += f"; collector not frozen: p99 {unfrozen[0]:.1f} ms"
    return rows


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
    waits = sorted(max(ms - r["offset_ms"], 0.0) for r in reports for ms in r["latencies_ms"])
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
    if name in JUDGED:  # judged on the p10-p90 of the runs' p99 (noisy)
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
    """Commands the server has run, INFO and the lineage beats left out (``INFO
    commandstats``)."""
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items()
               if k.startswith("cmdstat_") and k not in UNCOUNTED)


def _start(name: str, url: str, token: str, share: int, load: float, *, log: IO[str]
           ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.scenarios._stampede_worker", "--worker", name, url,
         token, str(share), str(load)],
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
