"""Near cache across processes: invalidation reach, and a Zipf workload on 4 processes.

Reach: process B calls a near-cached function in a loop; process A (this one) calls
``invalidate_tags()`` on its tag, ``TRIALS`` times (15 with ``--quick``) 20 ms apart. The
reach of a trial is the time from A's call returning to the start of B's first call that is
not a near hit (0 when that call began before A's call returned: Redis told B first); the
time the missing call then takes (a Redis read, the function, a store) is not the reach.
Reported: p50 and p99, for a B that calls in a busy loop (its main thread holds the GIL,
which the change stream's thread must wait for: up to ``sys.getswitchinterval()``, 5 ms, per
blocking call; B's near hits apply what arrived themselves, every 0.2 ms) and for a B that
waits 1 ms between calls, as a service between requests does (``--quick``: this one only).
Target: p99 <= 2 ms.

Zipf: a hot set, 40,000 calls over 100 keys drawn from Zipf(1.1) (400 calls per key on
average), 400 callers, a 50 ms function, split over 4 worker processes (asyncio tasks,
``lock=True`` so that the processes share one load per key), once without and once with
``near_cache``, on the same stream, in ``ZIPF_ROUNDS`` rounds taking turns going first (the
rows shown are the round with the median ratio; the verdict reads the rounds' p10-p90);
``--quick`` leaves it out (at a smoke run's size it would say nothing). A key costs a fixed
number of commands whatever its calls: every process reads it once before it can keep it
near (the process that stored it too: Redis reports a process's own store back to it, and
that report cannot be told apart from another client's change made in the same instant),
plus the lease, the store and the release; so the commands per call measure that fixed cost
against the calls per key. Reported: loads against distinct keys, Redis commands per call
(``INFO commandstats`` delta over the run, every process's, commands run by scripts
included), and wall time. Targets with the near cache: loads = distinct, commands per call
<= 0.05 and wall <= 0.5x the run without it.

Workers are ``python -m benchmarks.scenarios.near_procs --worker reach|zipf ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis

import cachedeco
from benchmarks import verdicts
from benchmarks.harness import quantiles
from benchmarks.servers import command_calls, new_prefix, sweep
from benchmarks.workload import zipf_keys

__all__ = ["NEEDS_REDIS", "run"]

NEEDS_REDIS = True
ROOT = Path(__file__).resolve().parents[2]
TRIALS = 200
REACH_P99_MS = 2.0
PROCESSES = 4
#: calls, keys, callers (all processes), seconds per load: full and --quick. The full stream
#: is a hot set sized to fit the full run's time budget on a 2-core machine (every call of
#: the run without near cache is a round trip).
ZIPF = {False: (40_000, 100, 400, 0.05), True: (1_200, 200, 40, 0.005)}  # True: by hand
#: Rounds of the Zipf pair (the near cache on and off, taking turns going first): the wall
#: time of one 4-process run moves a lot between runs on a small machine.
ZIPF_ROUNDS = 3


# --- the parent --------------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.scenarios.near_procs",
                             "--worker", *args], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def _expect(proc: subprocess.Popen[str], what: str) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"a worker ended before saying {what!r}")
    found: dict[str, Any] = json.loads(line)
    if what not in found:
        raise RuntimeError(f"a worker said {found!r}, not {what!r}")
    return found


def _tell(proc: subprocess.Popen[str], line: str = "go") -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def _reach(url: str, quick: bool, pause: float) -> dict[str, Any]:
    prefix = new_prefix("near-reach")
    trials = 15 if quick else TRIALS
    reg = cachedeco.Registry(url, prefix=prefix, stats_interval=0)
    worker = _spawn("reach", url, prefix, str(pause))
    try:
        _expect(worker, "ready")
        calls: list[tuple[float, float]] = []  # (before A's call, after it)
        for _ in range(trials):
            time.sleep(0.02)
            start = time.time()
            reg.invalidate_tags("reach")
            calls.append((start, time.time()))
        time.sleep(0.05)
        _tell(worker, "stop")
        left = sorted(_expect(worker, "left")["left"])
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
        reg.close()
        with redis.Redis.from_url(url) as client:
            sweep(client, prefix)
    reaches = []
    for start, done in calls:
        seen = next((t for t in left if t >= start), None)
        if seen is not None:
            reaches.append(max(0.0, seen - done) * 1000)
    p50 = statistics.median(reaches) if reaches else float("nan")
    p99 = statistics.quantiles(reaches, n=100, method="inclusive")[98] if len(
        reaches) > 1 else float("nan")
    row = ("B calls in a busy loop (holds the GIL)" if not pause
           else f"B waits {pause * 1e3:g} ms between calls")
    return {"group": "invalidation reach: invalidate_tags() in A to B's next miss", "row": row,
            "trials": trials, "seen": len(reaches), "p50_ms": p50, "p99_ms": p99,
            "target": f"p99 <= {REACH_P99_MS:g} ms",
            "result": f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
            "met": (met := len(reaches) == trials and p99 <= REACH_P99_MS),
            "verdict": verdicts.MET if met else verdicts.NOT_MET}


def _zipf(url: str, quick: bool, near: bool) -> dict[str, Any]:
    calls, keys, callers, sleep = ZIPF[quick]
    prefix = new_prefix("near-zipf")
    workers = [_spawn("zipf", url, prefix, str(int(near)), str(i), *map(str, ZIPF[quick]),
                      str(int(quick))) for i in range(PROCESSES)]
    try:
        for worker in workers:
            _expect(worker, "ready")
        with redis.Redis.from_url(url) as client:
            before = command_calls(client)
            start = time.perf_counter()
            for worker in workers:
                _tell(worker)
            done = [_expect(worker, "loads") for worker in workers]
            wall = time.perf_counter() - start
            commands = command_calls(client) - before - 1  # the INFO of command_calls
            for worker in workers:
                _tell(worker, "stop")
                worker.wait(30)
            sweep(client, prefix)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    distinct = len(set(zipf_keys(calls, keys)))
    loads = sum(d["loads"] for d in done)
    return {"group": "zipf, 4 processes", "row": "near_cache on" if near else "no near cache",
            "calls": calls, "callers": callers, "distinct": distinct, "loads": loads,
            "loads_per_distinct": loads / distinct, "cmds_per_op": commands / calls,
            "wall_s": wall, "ops_per_s": calls / wall,
            "near_hits": sum(d["near_hits"] for d in done),
            "note": f"lock=True; {sleep * 1000:g} ms loads"}


def run(redis_url: str | None, quick: bool) -> list[dict[str, Any]]:
    """The reach and the Zipf rows; see the module docstring."""
    if redis_url is None:
        return []
    rows = [_reach(redis_url, quick, pause) for pause in ((0.001,) if quick else (0.0, 0.001))]
    if quick:  # a Zipf stream small enough for a smoke run says nothing: 8 processes for it
        return rows
    pairs = []
    for turn in range(ZIPF_ROUNDS):  # the two take turns going first
        order = (False, True) if turn % 2 == 0 else (True, False)
        runs = {near: _zipf(redis_url, quick, near) for near in order}
        pairs.append((runs[False], runs[True]))
    return [*rows, *_zipf_rows(pairs)]


def _zipf_rows(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    """The rows without and with the near cache: those of the round with the median wall-time
    ratio, judged on the p10-p90 of the rounds' ratios (and on every round's loads)."""
    ratios = [on["wall_s"] / off["wall_s"] for off, on in pairs]
    median = statistics.median_low(ratios)
    off, on = pairs[ratios.index(median)]
    low, _, high = quantiles(ratios)
    off.update(baseline="(baseline)", ratio=1.0)
    counts_ok = (all(run["loads"] == run["distinct"] for _, run in pairs)
                 and on["cmds_per_op"] <= 0.05)
    runs = ", ".join(f"{ratio:.2f}x" for ratio in ratios)
    on.update(baseline=off["row"], rounds=len(pairs), ratio=median,
              target="loads = distinct; <= 0.05 cmds/call; <= 0.5x wall",
              met=counts_ok and median <= 0.5,
              result=f"{on['loads']:,} loads for {on['distinct']:,} distinct keys, "
              f"{on['cmds_per_op']:.2f} commands per call, {median:.2f}x the wall time "
              f"(rounds: {runs})",
              verdict=verdicts.judge(low, high, 0.5) if counts_ok else verdicts.NOT_MET)
    return [off, on]


# --- the workers -------------------------------------------------------------------------------


def _reach_worker(url: str, prefix: str, pause: str) -> None:
    """Call a near-cached function in a loop (``pause`` seconds apart: a service waiting
    for its next request); note when a call stops being a near hit."""
    wait = float(pause)
    reg = cachedeco.Registry(url, prefix=prefix, near_cache=10, stats_interval=0)

    @reg.cached(ttl=3600, key="reach", tags=["reach"])
    def value() -> int:
        return 1

    stop = threading.Event()
    left: list[float] = []
    near = False
    while not near:  # up: the change stream, and the value kept near
        before = value.stats().near_hits
        value()
        near = value.stats().near_hits > before
    print(json.dumps({"ready": True}), flush=True)

    def stop_on_input() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=stop_on_input, daemon=True).start()
    stats = value.stats
    while not stop.is_set():
        before = stats().near_hits
        began = time.time()  # a miss is decided as the call begins: its near lookup
        value()
        hit = stats().near_hits > before
        if near and not hit:
            left.append(began)
        near = hit
        if wait:
            time.sleep(wait)
    print(json.dumps({"left": left}), flush=True)
    reg.close()


def _zipf_worker(url: str, prefix: str, near: bool, index: int,  # noqa: PLR0917
                 calls: int, keys: int, callers: int, sleep: float, quick: bool) -> None:
    """Run this process's share of the Zipf stream with its share of the callers."""
    reg = cachedeco.Registry(url, prefix=prefix, near_cache=keys if near else 0,
                             max_connections=callers, stats_interval=0)
    loads = 0

    @reg.cached(ttl=3600, lock=True)
    async def load(key: int) -> dict[str, int]:
        nonlocal loads
        loads += 1
        await asyncio.sleep(sleep)
        return {"key": key}

    stream = iter(zipf_keys(calls, keys)[index::PROCESSES])

    async def caller() -> None:
        for key in stream:
            await load(key)

    async def main() -> None:
        await load(-1 - index)  # warm: connections, scripts
        if near:
            await asyncio.sleep(0.3)  # the change stream connects
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        warm = loads
        await asyncio.gather(*(caller() for _ in range(max(1, callers // PROCESSES))))
        print(json.dumps({"loads": loads - warm, "near_hits": load.stats().near_hits}),
              flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await reg.aclose()

    asyncio.run(main())
    del quick


def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs="+", required=True)
    what, *args = parser.parse_args().worker
    if what == "reach":
        _reach_worker(*args)
    else:
        url, prefix, near, index, calls, keys, callers, sleep, quick = args
        _zipf_worker(url, prefix, near == "1", int(index), int(calls), int(keys), int(callers),
                     float(sleep), quick == "1")


if __name__ == "__main__":
    _main()
