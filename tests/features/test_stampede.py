"""Stampede protection on every deployment: a cold key under many callers runs the function
once (with and without ``lock=True``), and with ``lock=True`` across "processes": one run,
waiters woken when the value lands, a failed or slow holder, lease extension, and where the
lease keys live.

Two ``@cached`` functions made by one factory share their key and tags but not their in-process
flights, so within one test process they stand for two processes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.crc

import cachedeco
from cachedeco import Registry
from tests.support.deployments import (
    BACKENDS,
    REDIS_BACKENDS,
    SERVERS,
    Deployment,
)
from tests.support.polling import apoll, poll

pytestmark = pytest.mark.deployments(*BACKENDS)

#: Twins stand for processes only where a lease is shared: on a server (memory:// is one
#: process: ``lock=True`` is single-flight there). The slow ones (~1 s each) run on the two
#: kinds of lease.
TWINS = pytest.mark.deployments(*SERVERS)
SLOW_TWINS = pytest.mark.deployments(*REDIS_BACKENDS)


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


# --- a cold key, in one process ----------------------------------------------------------------


@pytest.mark.parametrize("lock", [False, True])
async def test_200_tasks_on_a_cold_key_run_the_function_once(reg: Registry, lock: bool) -> None:
    runs = Runs(delays=(0.05,))
    load = async_twins(reg, runs, lock=lock)()
    values = await asyncio.gather(*(load(1) for _ in range(200)))
    assert runs.count == 1
    assert all(v == {"x": 1, "run": 1} for v in values)
    stats = load.stats()
    # A caller whose read comes back after the value landed (it waited for a connection) hits.
    assert (stats.loads, stats.singleflight_joins + stats.hits, stats.lock_waits) == (1, 199, 0)


@pytest.mark.parametrize("lock", [False, True])
def test_32_threads_on_a_cold_key_run_the_function_once(reg: Registry, lock: bool) -> None:
    runs = Runs(delays=(0.05,))
    load = sync_twins(reg, runs, lock=lock, tags=["t"])()
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


@pytest.mark.parametrize("lock", [False, True])
async def test_an_exception_reaches_every_waiter_and_is_not_cached(reg: Registry,
                                                                  lock: bool) -> None:
    runs = Runs(delays=(0.5, 0.0), fail=1)  # long enough for every caller to read and join
    load = async_twins(reg, runs, lock=lock)()
    results = await asyncio.gather(*(load(1) for _ in range(20)), return_exceptions=True)
    assert runs.count == 1
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await load(1) == {"x": 1, "run": 2}
    assert load.stats().load_errors == 1


def test_lock_in_one_process_is_single_flight(reg: Registry) -> None:
    """Threads of one process share the flight: none waits on the lease."""
    runs = Runs(delays=(0.05,))
    load = sync_twins(reg, runs, lock=True)()
    threads = [threading.Thread(target=load, args=(1,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert runs.count == 1
    assert load.stats().lock_waits == 0


# --- lock=True across "processes" (twins) ------------------------------------------------------


@TWINS
def test_a_waiter_wakes_when_the_value_lands(reg: Registry) -> None:
    runs = Runs(delays=(0.2,))
    make = sync_twins(reg, runs, lock=True)
    holder, waiter = make(), make()
    thread = threading.Thread(target=holder, args=(1,))
    thread.start()
    poll(lambda: runs.count == 1)  # the holder is inside its load, holding the lease
    started = time.perf_counter()
    assert waiter(1) == {"x": 1, "run": 1}
    assert time.perf_counter() - started < 0.2 + 0.5  # woken when it lands, not polling
    thread.join()
    assert runs.count == 1
    assert waiter.stats().lock_waits == 1


@TWINS
async def test_lease_keys_live_under_the_prefix_with_ttls(reg: Registry, deployment: Deployment,
                                                          prefix: str) -> None:
    raw = deployment.raw
    seen: dict[str, int] = {}

    def make() -> Any:
        @cachedeco.cached(ttl=60, registry=reg, lock=True, lock_timeout=4.0)
        async def load(x: int) -> int:
            for key in raw.scan_iter(match=f"{prefix}:~lease*"):
                seen[key.decode()] = int(raw.pttl(key))
            return x

        return load

    load = make()
    await load(1)
    lease = f"{prefix}:~lease:{{{load.key(1)}}}"
    assert list(seen) == [lease]
    assert 0 < seen[lease] <= 2000  # lease_ttl(4.0): half the wait bound
    assert raw.exists(lease) == 0
    wake = f"{prefix}:~leasewake:{{{load.key(1)}}}"
    assert raw.exists(wake) == 0  # nobody blocked on the wake list: nothing pushed to it
    assert redis.crc.key_slot(lease.encode()) == redis.crc.key_slot(load.key(1).encode())


@TWINS
async def test_a_failed_load_sends_the_waiter_back_to_the_lease(reg: Registry) -> None:
    runs = Runs(delays=(0.3, 0.0), fail=1)
    make = async_twins(reg, runs, lock=True)
    holder, waiter = make(), make()
    task = asyncio.create_task(holder(1))
    await apoll(lambda: runs.count == 1)  # the holder is inside its load, holding the lease
    assert await waiter(1) == {"x": 1, "run": 2}
    with pytest.raises(RuntimeError):
        await task
    assert runs.count == 2


@TWINS
async def test_a_load_slower_than_lock_timeout_lets_the_waiter_compute(reg: Registry) -> None:
    runs = Runs(delays=(1.0, 0.05))
    make = async_twins(reg, runs, lock=True, lock_timeout=0.3)
    holder, waiter = make(), make()
    task = asyncio.create_task(holder(1))
    await apoll(lambda: runs.count == 1)  # the holder is inside its load, holding the lease
    started = time.perf_counter()
    assert await waiter(1) == {"x": 1, "run": 2}
    assert 0.3 <= time.perf_counter() - started < 0.3 + 0.6
    assert await task == {"x": 1, "run": 1}
    assert waiter.stats().lock_waits == 1


@TWINS
async def test_a_long_async_load_keeps_its_lease(reg: Registry) -> None:
    runs = Runs(delays=(0.9,))
    make = async_twins(reg, runs, lock=True, lock_timeout=1.5)  # a 0.75 s lease
    holder, waiter = make(), make()
    task = asyncio.create_task(holder(1))
    await apoll(lambda: runs.count == 1)  # the holder is inside its load, holding the lease
    assert await waiter(1) == {"x": 1, "run": 1}
    assert runs.count == 1
    await task


@SLOW_TWINS
def test_a_long_sync_load_keeps_its_lease(reg: Registry) -> None:
    runs = Runs(delays=(0.9,))
    make = sync_twins(reg, runs, lock=True, lock_timeout=1.5)
    holder, waiter = make(), make()
    thread = threading.Thread(target=holder, args=(1,))
    thread.start()
    poll(lambda: runs.count == 1)  # the holder is inside its load, holding the lease
    assert waiter(1) == {"x": 1, "run": 1}
    thread.join()
    assert runs.count == 1
    assert waiter.stats().lock_waits == 1
