"""Stampede protection across real processes on the single server: four processes of 20 tasks
(or of 50 or 150 threads) run the function once, the threads' reads sharing round trips, and a
holder that dies holding the lease is replaced when the lease ends, well before
``lock_timeout``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import pytest
import redis

import cachedeco
from cachedeco import Registry
from tests.support.commands import commandstats, ran

WORKER = textwrap.dedent("""
    import asyncio, json, sys, time
    import redis.asyncio
    import cachedeco

    url, prefix, runs_key, tasks = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    reg = cachedeco.Registry(url, prefix=prefix)

    @cachedeco.cached(ttl=60, lock=True, registry=reg)
    async def load(x):
        client = redis.asyncio.Redis.from_url(url)
        await client.incr(runs_key)
        await client.aclose()
        await asyncio.sleep(0.3)
        return {"x": x, "by": runs_key}

    async def main():
        await load(-1)  # warm: the pool's connections, the scripts
        warm = load.stats()
        print("ready", flush=True)
        sys.stdin.readline()
        values = await asyncio.gather(*(load(7) for _ in range(tasks)))
        done = time.time()
        stats = load.stats()
        print(json.dumps({"values": values, "done": done,
                          "lock_waits": stats.lock_waits - warm.lock_waits,
                          "loads": stats.loads - warm.loads}), flush=True)
        await reg.aclose()

    asyncio.run(main())
""")


THREADS = textwrap.dedent("""
    import json, sys, threading, time
    import redis
    import cachedeco

    url, prefix, runs_key, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    reg = cachedeco.Registry(url, prefix=prefix, stats_interval=0)

    @cachedeco.cached(ttl=60, lock=True, registry=reg)
    def load(x):
        redis.Redis.from_url(url).incr(runs_key)
        time.sleep(0.3)
        return {"x": x}

    warm = [threading.Thread(target=load, args=(-1,)) for _ in range(threads)]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join()
    before = load.stats()
    go = threading.Event()
    values = []

    def call():
        go.wait()
        values.append(load(7))

    callers = [threading.Thread(target=call) for _ in range(threads)]
    for thread in callers:
        thread.start()
    print("ready", flush=True)
    sys.stdin.readline()
    go.set()
    for thread in callers:
        thread.join()
    stats = load.stats()
    print(json.dumps({"values": values, "loads": stats.loads - before.loads,
                      "lock_waits": stats.lock_waits - before.lock_waits}), flush=True)
    reg.close()
""")


VICTIM = textwrap.dedent("""
    import os, sys
    import redis
    import cachedeco

    url, prefix, runs_key = sys.argv[1], sys.argv[2], sys.argv[3]
    reg = cachedeco.Registry(url, prefix=prefix)

    @cachedeco.cached(ttl=60, key="victim:{x}", lock=True, lock_timeout=2.0, registry=reg)
    def load(x):
        redis.Redis.from_url(url).incr(runs_key)
        os._exit(3)  # dies holding the lease

    load(1)
""")


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_four_processes_of_20_tasks_run_the_function_once(
        redis_url: str, prefix: str, redis_client: redis.Redis) -> None:
    runs_key = f"{prefix}:runs"
    procs = [_spawn(WORKER, redis_url, prefix, runs_key, "20") for _ in range(4)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        redis_client.delete(runs_key)  # the warm-up loads counted too
        start = time.time()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = [json.loads(proc.communicate(timeout=20)[0]) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert int(redis_client.get(runs_key) or 0) == 1
    assert sum(r["loads"] for r in reports) == 1
    assert sum(r["lock_waits"] for r in reports) == 3  # one waiter per other process
    for report in reports:
        assert report["values"] == [{"x": 7, "by": runs_key}] * 20
    elapsed = max(r["done"] for r in reports) - start
    assert elapsed < 0.3 + 1.5, elapsed


@pytest.mark.parametrize("threads", [50, 150])
def test_four_processes_of_threads_run_the_function_once_and_share_reads(
        redis_url: str, prefix: str, redis_client: redis.Redis, threads: int) -> None:
    runs_key = f"{prefix}:runs"
    procs = [_spawn(THREADS, redis_url, prefix, runs_key, str(threads)) for _ in range(4)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        redis_client.delete(runs_key)  # the warm-up loads counted too
        before = commandstats(redis_client)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = [json.loads(proc.communicate(timeout=30)[0]) for proc in procs]
        after = commandstats(redis_client)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert int(redis_client.get(runs_key) or 0) == 1
    assert sum(r["loads"] for r in reports) == 1
    assert sum(r["lock_waits"] for r in reports) == 3  # one waiter per other process
    for report in reports:
        assert report["values"] == [{"x": 7}] * threads
    # Each thread reading on its own would be at least one command per thread: the reads of a
    # process share round trips, and one thread per process talks to the lease for all of its
    # waiters: one acquire each (4), the holder's store and release, one blocking wait in each
    # other process, however many threads wait. How many reads a batch gathers depends on how
    # the threads are scheduled: 42-62 commands in all for 4 x 150 threads on an idle 2-core
    # machine, 118 with the rest of the suite running beside (a CI run), 162 on Python 3.13
    # with the suite and other work beside; for 4 x 50 threads, 106-115 with three busy loops
    # beside, 138 in a CI run; one per thread would be 200 and 600, and more (with the scripts
    # and waits above, over 210 for 4 x 50: the bound stays well below it).
    spent = ran(before, after)
    assert spent.get("blmove", 0) == 3, spent
    # 4 acquires, the store and the release: 6 scripts; the counts are the server's, and a
    # registry an earlier test of this pytest process left open may run one or two of its own
    # meanwhile (a write-behind take, a counters report), as a full run in one process showed
    assert spent.get("evalsha", 0) <= 6 + 2, spent
    assert sum(spent.values()) <= max(170, 2 * threads), spent


def test_a_holder_that_dies_is_replaced_when_its_lease_ends(
        make_registry: Callable[..., Registry], redis_url: str, prefix: str,
        redis_client: redis.Redis) -> None:
    reg = make_registry(redis_url, jitter=0)
    runs_key = f"{prefix}:runs"
    victim = subprocess.run([sys.executable, "-c", VICTIM, redis_url, prefix, runs_key],
                            timeout=20, check=False)
    assert victim.returncode == 3
    assert int(redis_client.get(runs_key) or 0) == 1

    @cachedeco.cached(ttl=60, key="victim:{x}", lock=True, lock_timeout=2.0, registry=reg)
    def load(x: int) -> str:
        redis_client.incr(runs_key)
        return "replaced"

    lease = f"{prefix}:~lease:{{{load.key(1)}}}"
    left = redis_client.pttl(lease) / 1000
    assert 0 < left <= 1.0  # lease_ttl(2.0), never extended by the dead holder
    started = time.perf_counter()
    assert load(1) == "replaced"
    elapsed = time.perf_counter() - started
    assert left - 0.05 <= elapsed < 1.0 + 0.5  # after the lease, well before lock_timeout
    assert int(redis_client.get(runs_key) or 0) == 2
    assert load.stats().lock_waits == 1
