"""Stampede protection against a real redis-server: single-flight in one process (tasks and
threads), ``lock=True`` across processes (one run, waiters woken when the value lands), a holder
that dies, a load slower than ``lock_timeout``, lease extension, and the cost of it all.

Two ``@cached`` functions made by one factory share their key and tags but not their in-process
flights, so within one test process they stand for two processes; the tests that need real
processes start them with ``subprocess``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.connection
import redis.connection

import cachedeco
from cachedeco import Registry
from cachedeco.backends.redis._async.leases import AsyncRedisLeases
from tools.redis_servers import commandstats

# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def reg(redis_url: str, prefix: str) -> Iterator[Registry]:
    registry = Registry(redis_url, prefix=prefix, jitter=0)
    yield registry
    registry.close()


@pytest.fixture
async def areg(redis_url: str, prefix: str) -> AsyncIterator[Registry]:
    registry = Registry(redis_url, prefix=prefix, jitter=0)
    yield registry
    await registry.aclose()


class Runs:
    """Counts a function's runs (thread-safe) and can make it slow or failing."""

    def __init__(self, delays: tuple[float, ...] = (0.0,), fail: int = 0) -> None:
        self.count = 0
        self.delays = delays
        self.fail = fail
        self._lock = threading.Lock()

    def next(self) -> tuple[int, float]:
        with self._lock:
            self.count += 1
            n = self.count
        return n, self.delays[min(n, len(self.delays)) - 1]

    def check(self, n: int) -> None:
        if n <= self.fail:
            raise RuntimeError(f"load {n} fails")


def async_twins(reg: Registry, runs: Runs, **options: Any) -> Callable[[], Any]:
    """A factory of async cached functions sharing one key: one per simulated process."""

    def make() -> Any:
        @cachedeco.cached(ttl=60, registry=reg, **options)
        async def load(x: int) -> dict[str, int]:
            n, delay = runs.next()
            await asyncio.sleep(delay)
            runs.check(n)
            return {"x": x, "run": n}

        return load

    return make


def sync_twins(reg: Registry, runs: Runs, **options: Any) -> Callable[[], Any]:
    """The sync form of :func:`async_twins`."""

    def make() -> Any:
        @cachedeco.cached(ttl=60, registry=reg, **options)
        def load(x: int) -> dict[str, int]:
            n, delay = runs.next()
            time.sleep(delay)
            runs.check(n)
            return {"x": x, "run": n}

        return load

    return make


def calls(client: redis.Redis, before: dict[str, int]) -> dict[str, int]:
    """Commands run since ``before`` (a commandstats snapshot), without the INFO calls."""
    after = commandstats(client)
    delta = {k: v - before.get(k, 0) for k, v in after.items()}
    return {k: v for k, v in delta.items() if v and k != "info"}


# --- in one process ----------------------------------------------------------------------------


@pytest.mark.parametrize("lock", [False, True])
async def test_200_tasks_on_a_cold_key_run_the_function_once(areg: Registry, lock: bool) -> None:
    runs = Runs(delays=(0.05,))
    load = async_twins(areg, runs, lock=lock)()
    values = await asyncio.gather(*(load(1) for _ in range(200)))
    assert runs.count == 1
    assert all(v == {"x": 1, "run": 1} for v in values)
    stats = load.stats()
    assert (stats.loads, stats.singleflight_joins, stats.lock_waits) == (1, 199, 0)


@pytest.mark.parametrize("lock", [False, True])
def test_32_threads_on_a_cold_key_run_the_function_once(reg: Registry, lock: bool) -> None:
    runs = Runs(delays=(0.05,))
    load = sync_twins(reg, runs, lock=lock)()
    barrier = threading.Barrier(32)
    values: list[Any] = []

    def call() -> None:
        barrier.wait()
        values.append(load(1))

    threads = [threading.Thread(target=call) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert runs.count == 1
    assert values == [{"x": 1, "run": 1}] * 32


async def test_an_exception_reaches_every_waiter_and_is_not_cached(areg: Registry) -> None:
    runs = Runs(delays=(0.05, 0.0), fail=1)
    load = async_twins(areg, runs, lock=True)()
    results = await asyncio.gather(*(load(1) for _ in range(20)), return_exceptions=True)
    assert runs.count == 1
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await load(1) == {"x": 1, "run": 2}
    assert load.stats().load_errors == 1


# --- across "processes" (twins) ----------------------------------------------------------------


class CountingConnection(redis.asyncio.connection.Connection):
    """Records the name of every command sent (one per round trip here: no pipelines)."""

    sent: list[str]

    async def send_command(self, *args: Any, **kwargs: Any) -> None:
        type(self).sent.append(str(args[0]).lower())
        await super().send_command(*args, **kwargs)


@pytest.fixture
async def counted(redis_url: str, prefix: str) -> AsyncIterator[tuple[Registry, list[str]]]:
    """A registry whose client records every command it sends."""
    sent: list[str] = []
    url = redis.connection.parse_url(redis_url)
    pool = redis.asyncio.ConnectionPool(
        connection_class=type("Counting", (CountingConnection,), {"sent": sent}),
        host=url["host"], port=url["port"], db=url.get("db", 0))
    registry = Registry(redis.asyncio.Redis(connection_pool=pool), prefix=prefix, jitter=0)
    yield registry, sent
    await registry.aclose()
    await pool.aclose()


async def test_a_waiter_costs_four_commands_and_wakes_when_the_value_lands(
        areg: Registry, counted: tuple[Registry, list[str]]) -> None:
    runs = Runs(delays=(0.2,))
    make = async_twins(areg, runs, lock=True)
    other, sent = counted
    holder, waiter = make(), async_twins(other, runs, lock=True)()
    await holder(0), await waiter(0)  # warm: connections open, scripts loaded
    runs.count = 0
    sent.clear()
    task = asyncio.create_task(holder(1))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    value = await waiter(1)
    waited = time.perf_counter() - started
    landed = await task
    assert value == landed == {"x": 1, "run": 1}
    assert runs.count == 1
    assert waited < 0.15 + 0.05  # woken when the value landed, not after a poll
    assert waiter.stats().lock_waits == 1
    # a miss, a lease attempt (held), one block until the release, one read of the value
    assert sent == ["mget", "evalsha", "blmove", "mget"]


async def test_a_hit_never_touches_the_lease(areg: Registry, redis_client: redis.Redis) -> None:
    load = async_twins(areg, Runs(), lock=True)()
    await load(1)
    before = commandstats(redis_client)
    for _ in range(10):
        assert await load(1) == {"x": 1, "run": 1}
    assert calls(redis_client, before) == {"mget": 10}  # the entry and its function tag


async def test_lease_keys_live_under_the_prefix_with_ttls(
        areg: Registry, redis_client: redis.Redis, prefix: str) -> None:
    seen: dict[str, int] = {}

    def make() -> Any:
        @cachedeco.cached(ttl=60, registry=areg, lock=True, lock_timeout=4.0)
        async def load(x: int) -> int:
            for key in redis_client.scan_iter(match=f"{prefix}:~lease*"):
                seen[key.decode()] = int(redis_client.pttl(key))
            return x

        return load

    load = make()
    await load(1)
    lease = f"{prefix}:~lease:{{{load.key(1)}}}"
    assert list(seen) == [lease]
    assert 0 < seen[lease] <= 2000  # lease_ttl(4.0): half the wait bound
    assert redis_client.exists(lease) == 0
    wake = f"{prefix}:~leasewake:{{{load.key(1)}}}"
    assert 0 < redis_client.pttl(wake) <= 10_000
    assert redis.crc.key_slot(lease.encode()) == redis.crc.key_slot(load.key(1).encode())


async def test_a_failed_load_sends_the_waiter_back_to_the_lease(areg: Registry) -> None:
    runs = Runs(delays=(0.1, 0.0), fail=1)
    make = async_twins(areg, runs, lock=True)
    holder, waiter = make(), make()
    task = asyncio.create_task(holder(1))
    await asyncio.sleep(0.03)
    assert await waiter(1) == {"x": 1, "run": 2}
    with pytest.raises(RuntimeError):
        await task
    assert runs.count == 2


async def test_a_load_slower_than_lock_timeout_lets_the_waiter_compute(areg: Registry) -> None:
    runs = Runs(delays=(1.0, 0.05))
    make = async_twins(areg, runs, lock=True, lock_timeout=0.3)
    holder, waiter = make(), make()
    task = asyncio.create_task(holder(1))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    assert await waiter(1) == {"x": 1, "run": 2}
    assert 0.3 <= time.perf_counter() - started < 0.3 + 0.4
    assert await task == {"x": 1, "run": 1}
    assert waiter.stats().lock_waits == 1


async def test_a_long_async_load_keeps_its_lease(areg: Registry) -> None:
    runs = Runs(delays=(0.9,))
    make = async_twins(areg, runs, lock=True, lock_timeout=1.5)  # a 0.75 s lease
    holder, waiter = make(), make()
    task = asyncio.create_task(holder(1))
    await asyncio.sleep(0.05)
    assert await waiter(1) == {"x": 1, "run": 1}
    assert runs.count == 1
    await task


def test_a_long_sync_load_keeps_its_lease(reg: Registry) -> None:
    runs = Runs(delays=(0.9,))
    make = sync_twins(reg, runs, lock=True, lock_timeout=1.5)
    holder, waiter = make(), make()
    thread = threading.Thread(target=holder, args=(1,))
    thread.start()
    time.sleep(0.05)
    assert waiter(1) == {"x": 1, "run": 1}
    thread.join()
    assert runs.count == 1
    assert waiter.stats().lock_waits == 1


async def test_a_lease_fault_falls_back_to_computing(
        areg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any) -> Any:
        raise redis.ConnectionError("lease script unreachable")

    monkeypatch.setattr(AsyncRedisLeases, "acquire", broken)
    runs = Runs()
    load = async_twins(areg, runs, lock=True)()
    assert await load(1) == {"x": 1, "run": 1}
    assert load.stats().backend_errors == 1
    assert await load(1) == {"x": 1, "run": 1}  # stored all the same


def test_lock_on_memory_is_in_process_single_flight() -> None:
    registry = Registry("memory://")
    runs = Runs(delays=(0.05,))
    load = sync_twins(registry, runs, lock=True)()
    threads = [threading.Thread(target=load, args=(1,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert runs.count == 1
    assert load.stats().lock_waits == 0


# --- real processes ----------------------------------------------------------------------------

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


def test_a_holder_that_dies_is_replaced_when_its_lease_ends(
        reg: Registry, redis_url: str, prefix: str, redis_client: redis.Redis) -> None:
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



def test_lock_true_on_redis_cluster(cluster_url: str, prefix: str) -> None:
    registry = Registry(cluster_url, prefix=prefix, jitter=0)
    runs = Runs(delays=(0.2,))
    make = sync_twins(registry, runs, lock=True)
    holder, waiter = make(), make()
    thread = threading.Thread(target=holder, args=(1,))
    thread.start()
    time.sleep(0.05)
    started = time.perf_counter()
    assert waiter(1) == {"x": 1, "run": 1}
    assert time.perf_counter() - started < 0.15 + 0.1
    thread.join()
    assert runs.count == 1
    assert waiter.stats().lock_waits == 1
    registry.close()
