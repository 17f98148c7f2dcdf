"""Stale-while-revalidate, fail-safe and early refresh against a real redis-server.

Past its soft expiry (``ttl``) an entry is served at once for ``stale_ttl`` more seconds while
one background refresh runs (one across processes with ``lock=True``); a refresh that raises
keeps the stale value. ``early_refresh`` (XFetch) recomputes before the soft expiry. TTLs are
at least one second, so each test waits about that long for an entry to go stale.

Each test waits about a second, so they run on the single server (sentinel and the cluster run
the same stale logic over their backends) and memory:// where it keeps its own expiry.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import cachedeco
from cachedeco import Registry
from tests.support.deployments import Deployment
from tests.support.polling import apoll, apoll_async, poll

TTL = 1.0  # the shortest TTL an entry gets
SLOW = 0.3  # seconds a load takes


class Loads:
    """A load that takes ``delay`` seconds, returns its run number, and fails on demand."""

    def __init__(self, delay: float = SLOW, failing: tuple[int, ...] = ()) -> None:
        self.runs = 0
        self.delay = delay
        self.failing = failing
        self._lock = threading.Lock()

    def begin(self) -> int:
        with self._lock:
            self.runs += 1
            return self.runs

    def end(self, run: int) -> int:
        if run in self.failing:
            raise RuntimeError(f"refresh {run} fails")
        return run


def async_maker(reg: Registry, loads: Loads, **options: Any) -> Callable[[], Any]:
    """Makes async cached functions that share a key (each stands for one process)."""

    def make() -> Any:
        @cachedeco.cached(ttl=TTL, registry=reg, **options)
        async def value(x: int) -> int:
            run = loads.begin()
            await asyncio.sleep(loads.delay)
            return loads.end(run)

        return value

    return make


def stored(value: Any, run: int) -> Callable[[], Awaitable[bool]]:
    """Whether ``value(1)``'s fresh entry holds ``run`` (read with ``value.get``, which neither
    loads nor counts): a refresh counts its load when the function returns and stores after
    that, so a call right after the count may still find the stale value."""

    async def check() -> bool:
        return bool(await value.get(1) == run)

    return check


async def timed(call: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = await call
    return result, time.perf_counter() - started


STALE = pytest.mark.deployments("memory", "redis")


@pytest.mark.parametrize(("deployment", "lock"),
                         [("memory", False), ("redis", False), ("redis", True)],
                         indirect=["deployment"])
async def test_a_stale_value_is_served_at_once_then_the_fresh_one(
        amake_registry: Callable[..., Registry], deployment: Deployment, lock: bool) -> None:
    reg = amake_registry(deployment.url, jitter=0)
    loads = Loads()
    value = async_maker(reg, loads, stale_ttl=30, lock=lock)()
    assert await value(1) == 1
    await asyncio.sleep(TTL + 0.05)
    stale, took = await timed(value(1))
    assert stale == 1
    assert took < SLOW / 3
    assert value.stats().stale_hits == 1
    await apoll(lambda: value.stats().loads == 2, timeout=3)
    await apoll_async(stored(value, 2), timeout=3)
    fresh, took = await timed(value(1))
    assert fresh == 2
    assert took < SLOW / 3
    assert value.stats().hits == 1


@pytest.mark.deployments("redis")
async def test_a_raising_refresh_keeps_serving_the_stale_value(
        amake_registry: Callable[..., Registry], deployment: Deployment,
        caplog: pytest.LogCaptureFixture) -> None:
    reg = amake_registry(deployment.url, jitter=0)
    loads = Loads(delay=0.05, failing=(2,))
    value = async_maker(reg, loads, stale_ttl=30)()
    assert await value(1) == 1
    await asyncio.sleep(TTL + 0.05)
    with caplog.at_level(logging.WARNING, logger="cachedeco"):
        assert await value(1) == 1
        await apoll(lambda: value.stats().load_errors == 1, timeout=3)
        await apoll(lambda: "refresh 2 fails" in caplog.text, timeout=3)  # logged after the count
    assert "background refresh" in caplog.text and "refresh 2 fails" in caplog.text
    assert await value(1) == 1  # still the stale value (and the next refresh starts)
    await apoll(lambda: value.stats().loads == 2, timeout=3)
    await apoll_async(stored(value, 3), timeout=3)
    assert await value(1) == 3


@pytest.mark.deployments("redis")  # twins stand for processes where a lease is shared
async def test_with_lock_one_process_refreshes_and_the_others_serve_stale(
        amake_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = amake_registry(deployment.url, jitter=0)
    loads = Loads()
    make = async_maker(reg, loads, stale_ttl=30, lock=True)
    first, second = make(), make()
    assert await first(1) == 1
    await asyncio.sleep(TTL + 0.05)
    assert await first(1) == 1  # its refresh takes the lease
    await apoll(lambda: loads.runs == 2, timeout=3)  # ... and loads under it
    stale, took = await timed(second(1))  # its refresh finds the lease taken: no wait
    assert stale == 1
    assert took < SLOW / 3
    await apoll(lambda: first.stats().loads == 2, timeout=3)
    await asyncio.sleep(0.05)
    assert loads.runs == 2
    assert second.stats().loads == 0
    assert second.stats().lock_waits == 0
    await apoll_async(stored(first, 2), timeout=3)
    assert await second(1) == 2


@pytest.mark.deployments("redis")
def test_a_sync_stale_value_is_served_at_once_then_the_fresh_one(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = make_registry(deployment.url, jitter=0)
    loads = Loads()

    @cachedeco.cached(ttl=TTL, stale_ttl=30, lock=True, registry=reg)
    def value(x: int) -> int:
        run = loads.begin()
        time.sleep(loads.delay)
        return loads.end(run)

    assert value(1) == 1
    time.sleep(TTL + 0.05)
    started = time.perf_counter()
    assert value(1) == 1
    assert time.perf_counter() - started < SLOW / 3
    # The refresh counts its load when the function returns, and stores after that: a read
    # in between still finds the stale value, so wait for the fresh one itself.
    poll(lambda: value(1) == 2, timeout=3)
    assert value.stats().loads == 2  # one refresh, however many calls saw the stale value


@STALE
@pytest.mark.parametrize("lock", [False, True])
async def test_early_refresh_recomputes_before_expiry(
        amake_registry: Callable[..., Registry], deployment: Deployment, lock: bool) -> None:
    reg = amake_registry(deployment.url, jitter=0)
    loads = Loads(delay=0.1)
    ttl = 2.0

    @cachedeco.cached(ttl=ttl, early_refresh=1000.0, lock=lock, registry=reg)
    async def value(x: int) -> int:
        run = loads.begin()
        await asyncio.sleep(loads.delay)
        return loads.end(run)

    started = time.monotonic()
    assert await value(1) == 1
    # delta * beta = 100 s against a 2 s TTL: nearly every hit triggers a refresh
    while value.stats().early_refreshes == 0:
        assert await value(1) == 1
    await apoll(lambda: value.stats().loads == 2, timeout=3)
    await apoll_async(stored(value, 2), timeout=3)
    assert await value(1) == 2
    assert time.monotonic() - started < ttl  # before the entry expired


@STALE
def test_early_refreshes_counts_the_refreshes_started_not_the_hits_that_wanted_one(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = make_registry(deployment.url, jitter=0)
    release = threading.Event()
    runs: list[int] = []

    @cachedeco.cached(ttl=10, early_refresh=1e6, registry=reg)
    def value(x: int) -> int:
        runs.append(x)
        time.sleep(0.05)  # a load time (delta) that early_refresh weighs
        if len(runs) > 1:
            release.wait(5)  # the refresh is under way while the hits below come
        return len(runs)

    assert value(1) == 1
    poll(lambda: value(1) == 1 and len(runs) == 2, timeout=5)  # a hit started the refresh
    for _ in range(5):  # every hit wants one; the one under way is enough
        assert value(1) == 1
    release.set()
    poll(lambda: value.stats().loads == 2, timeout=5)
    assert runs == [1, 1]
    assert value.stats().early_refreshes == 1


@STALE
async def test_hits_of_one_loop_turn_start_one_early_refresh(
        amake_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = amake_registry(deployment.url, jitter=0)
    runs: list[int] = []

    @cachedeco.cached(ttl=10, early_refresh=1e6, registry=reg)
    async def value(x: int) -> int:
        runs.append(x)
        await asyncio.sleep(0.05)  # a load time (delta) that early_refresh weighs
        return len(runs)

    assert await value(1) == 1
    # every hit wants a refresh; the spawned one joins its load only once it runs, after them
    assert await asyncio.gather(*(value(1) for _ in range(20))) == [1] * 20
    await apoll(lambda: value.stats().loads == 2, timeout=5)
    assert runs == [1, 1]
    assert value.stats().early_refreshes == 1


@STALE
def test_a_stale_hit_while_the_interpreter_shuts_down_serves_the_stale_value(
        make_registry: Callable[..., Registry], deployment: Deployment,
        monkeypatch: pytest.MonkeyPatch) -> None:
    reg = make_registry(deployment.url, jitter=0)
    runs: list[int] = []

    @cachedeco.cached(ttl=TTL, stale_ttl=30, registry=reg)
    def value(x: int) -> int:
        runs.append(x)
        return len(runs)

    assert value(1) == 1
    time.sleep(TTL + 0.05)

    def refused(*args: Any) -> None:
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr(reg.background, "spawn", refused)
    assert value(1) == 1  # the stale value, though no refresh can start
    assert value.stats().stale_hits == 1
    monkeypatch.undo()
    assert value(1) == 1  # a later stale hit starts the refresh (the key was not kept claimed)
    poll(lambda: value.stats().loads == 2, timeout=5)
