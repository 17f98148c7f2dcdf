"""Single-flight in one process, on every deployment: callers of one key share one run of the
function (threads and tasks), errors reach every waiter and are not cached, a cancelled leader
hands over, and a call made after an invalidation, a refresh or a write never joins a load
that began before it."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cachedeco import Registry, cached, write_through
from tests.support.calls import Calls
from tests.support.deployments import BACKENDS
from tests.support.polling import apoll, poll

pytestmark = pytest.mark.deployments(*BACKENDS)


def test_single_flight_with_threads(reg: Registry) -> None:
    calls = Calls()
    release = threading.Event()

    @cached(registry=reg)
    def slow(x: int) -> dict[str, int]:
        calls(x)
        release.wait(5)
        return {"x": x}

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(slow, 1) for _ in range(16)]
        poll(lambda: slow.stats().singleflight_joins == 15)  # every caller read and joined
        release.set()
        results = [f.result(5) for f in futures]
    assert results == [{"x": 1}] * 16
    assert calls.log == [1]
    assert slow.stats().singleflight_joins == 15


async def test_single_flight_with_tasks(reg: Registry) -> None:
    calls = Calls()
    release = asyncio.Event()

    @cached(registry=reg)
    async def slow(x: int) -> int:
        calls(x)
        await release.wait()
        return x * 10

    tasks = [asyncio.create_task(slow(2)) for _ in range(20)]
    await apoll(lambda: slow.stats().singleflight_joins == 19)  # every caller read and joined
    release.set()
    assert await asyncio.gather(*tasks) == [20] * 20
    assert calls.log == [2]
    assert slow.stats().singleflight_joins == 19


def test_single_flight_separates_keys(reg: Registry) -> None:
    calls = Calls()
    barrier = threading.Barrier(4, timeout=5)

    @cached(registry=reg)
    def slow(x: int) -> int:
        calls(x)
        barrier.wait()  # all four keys load at once: none waits for another
        return x

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(slow, range(4))) == [0, 1, 2, 3]
    assert sorted(calls.log) == [0, 1, 2, 3]


@pytest.mark.parametrize("error", [ValueError, KeyError, TimeoutError, RuntimeError])
def test_exception_reaches_every_waiting_thread_and_is_not_cached(
        reg: Registry, error: type[Exception]) -> None:
    calls = Calls()
    release = threading.Event()

    @cached(registry=reg)
    def boom(x: int) -> int:
        calls(x)
        release.wait(5)
        if len(calls) == 1:
            raise error("boom")
        return x

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(boom, 1) for _ in range(8)]
        poll(lambda: boom.stats().singleflight_joins == 7)  # every caller read and joined
        release.set()
        outcomes = [type(f.exception(5)) for f in futures]
    assert outcomes == [error] * 8
    assert len(calls) == 1  # the function ran once for all eight callers
    assert boom(1) == 1  # and the error was not cached
    assert len(calls) == 2


@pytest.mark.parametrize("error", [ValueError, TimeoutError])
async def test_exception_reaches_every_waiting_task_and_is_not_cached(
        reg: Registry, error: type[Exception]) -> None:
    calls = Calls()
    release = asyncio.Event()

    @cached(registry=reg)
    async def boom(x: int) -> int:
        calls(x)
        await release.wait()
        if len(calls) == 1:
            raise error("boom")
        return x

    tasks = [asyncio.create_task(boom(1)) for _ in range(8)]
    await apoll(lambda: boom.stats().singleflight_joins == 7)  # every caller read and joined
    release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(o) for o in outcomes] == [error] * 8
    assert len(calls) == 1
    assert await boom(1) == 1
    assert len(calls) == 2


def test_single_flight_threads_over_a_round_trip(reg: Registry) -> None:
    """Callers that read the miss while a load runs get its value, even when their read
    returns after the load landed: one run per key, always (the single-flight promise)."""
    calls = Calls()

    @cached(registry=reg)
    def f(x: int) -> int:
        calls(x)
        return x

    with ThreadPoolExecutor(48) as pool:
        for round_ in range(20):
            barrier = threading.Barrier(48, timeout=5)

            def call(_: int, round_: int = round_, barrier: threading.Barrier = barrier) -> int:
                barrier.wait()
                return int(f(round_))

            assert list(pool.map(call, range(48))) == [round_] * 48
    assert calls.log == list(range(20))


async def test_single_flight_tasks_over_a_round_trip(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg)
    async def f(x: int) -> int:
        calls(x)
        await asyncio.sleep(0.002)
        return x

    for round_ in range(10):
        assert await asyncio.gather(*(f(round_) for _ in range(32))) == [round_] * 32
    assert calls.log == list(range(10))


async def test_a_cancelled_leader_hands_its_waiters_one_new_load(reg: Registry) -> None:
    runs = iter(range(1, 100))
    started, never = asyncio.Event(), asyncio.Event()

    @cached(registry=reg)
    async def load(x: int) -> int:
        run = next(runs)
        started.set()
        if run == 1:
            await never.wait()  # the first load lasts until its caller is cancelled
        await asyncio.sleep(0.1 if run <= 2 else 0)
        return run

    leader = asyncio.create_task(load(1))
    await started.wait()
    waiters = [asyncio.create_task(load(1)) for _ in range(5)]
    await apoll(lambda: load.stats().singleflight_joins == 5, timeout=10)  # they wait for it
    leader.cancel()
    # one of the waiters leads the next load and the others join it (each ran its own)
    assert await asyncio.gather(*waiters) == [2] * 5
    assert next(runs) == 3
    with pytest.raises(asyncio.CancelledError):
        await leader


def test_call_after_invalidate_never_joins_an_older_load(reg: Registry) -> None:
    started, release = threading.Event(), threading.Event()
    counter = iter(range(100))

    @cached(registry=reg)
    def load(x: int) -> int:
        value = next(counter)
        if value == 0:
            started.set()
            release.wait(5)
        return value

    with ThreadPoolExecutor(1) as pool:
        old = pool.submit(load, 1)
        assert started.wait(5)
        load.invalidate(1)
        assert load(1) == 1  # a new load, not the one that began before the invalidation
        release.set()
        assert old.result(5) == 0
    assert load(1) == 1  # the older load did not store over the newer value


async def test_task_after_refresh_never_joins_an_older_load(reg: Registry) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    counter = iter(range(100))

    @cached(registry=reg)
    async def load(x: int) -> int:
        value = next(counter)
        if value == 0:
            started.set()
            await release.wait()
        return value

    old = asyncio.create_task(load(1))
    await started.wait()
    assert await load.refresh(1) == 1
    assert await load(1) == 1
    release.set()
    assert await old == 0
    assert await load(1) == 1


def test_call_after_write_through_never_joins_an_older_load(reg: Registry) -> None:
    started, release = threading.Event(), threading.Event()
    calls = Calls()

    @cached(registry=reg)
    def get(item_id: int) -> dict[str, Any]:
        calls(item_id)
        started.set()
        release.wait(5)
        return {"id": item_id, "v": "old"}

    @write_through(get, registry=reg)
    def put(item_id: int, v: str) -> dict[str, Any]:
        return {"id": item_id, "v": v}

    with ThreadPoolExecutor(1) as pool:
        old = pool.submit(get, 1)
        assert started.wait(5)
        put(1, "new")
        assert get(1) == {"id": 1, "v": "new"}
        release.set()
        assert old.result(5) == {"id": 1, "v": "old"}
    assert get(1) == {"id": 1, "v": "new"}
    assert len(calls) == 1


async def test_a_call_after_an_invalidation_never_joins_the_older_load(reg: Registry) -> None:
    runs = iter(range(1, 100))
    started, gate = asyncio.Event(), asyncio.Event()

    @cached(registry=reg)
    async def load(x: int) -> int:
        run = next(runs)
        if run == 1:
            started.set()
            await gate.wait()
        return run

    old = asyncio.create_task(load(1))
    # The old load must have begun before the invalidation (a cluster's first call connects
    # first, which can take longer than any fixed sleep).
    await asyncio.wait_for(started.wait(), 10)
    await load.invalidate(1)
    assert await load(1) == 2  # did not wait for (nor get) the load that began before
    gate.set()
    assert await old == 1
