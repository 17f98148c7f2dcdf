"""A backend that is down: a breaker that opens probes again after its cooldown and uses the
server once it is back; while down, concurrent callers still share one load per key (an outage
must not become a stampede on the database), ``on_error="raise"`` never calls the function,
write-behind and locks that cannot reach the backend raise ``BackendError`` (and a close
drains what a loop's failed last drain left), and a lease that
fails falls back to computing. (Timeouts against a server that never answers:
``_async/test_outages.py``.)"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

import cachedeco
from cachedeco import BackendError, Registry, cached
from cachedeco.backends.redis._async.leases import AsyncRedisLeases
from tests.support.calls import Calls
from tests.support.events import Events
from tests.support.outages import dead_port
from tests.support.polling import apoll, poll
from tools.servers import Server


@pytest.fixture
def dead_url() -> str:
    """A Redis URL on a loopback port nobody listens on: connections are refused at once."""
    return f"redis://127.0.0.1:{dead_port()}/0"


def test_breaker_probes_again_after_the_cooldown(make_registry: Callable[..., Registry],
                                                 fresh_redis: Server) -> None:
    reg = make_registry(fresh_redis.url, socket_timeout=0.3, socket_connect_timeout=0.3,
                        breaker_cooldown=0.5)
    calls = Calls()

    @cached(registry=reg)
    def f(x: int) -> int:
        calls(x)
        return x

    assert (f(1), f(1)) == (1, 1)
    assert len(calls) == 1
    fresh_redis.kill()
    for x in range(8):
        assert f(x) == x  # down: computed, never raised
    errors = reg.stats().backend_errors
    assert errors >= 8
    fresh_redis.restart()
    time.sleep(0.6)
    f(100)  # the probe reaches the server again and stores
    before = len(calls)
    assert f(100) == 100
    assert len(calls) == before  # a hit: the backend is in use again
    assert f.stats().hits >= 2


async def test_concurrent_async_callers_share_one_load_while_the_backend_is_down(
        amake_registry: Callable[..., Registry], dead_url: str) -> None:
    reg = amake_registry(dead_url, socket_connect_timeout=0.2)
    calls = 0
    gate = asyncio.Event()

    @cached(registry=reg)
    async def value(x: int) -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return x

    callers = [asyncio.create_task(value(1)) for _ in range(50)]
    # the load lasts until every other caller has joined it, however slow their reads fail
    await apoll(lambda: value.stats().singleflight_joins == 49, timeout=10)
    gate.set()
    assert await asyncio.gather(*callers) == [1] * 50
    assert calls == 1
    assert value.stats().backend_errors >= 1
    assert value.stats().singleflight_joins == 49
    assert await value(1) == 1  # nothing is kept in process: a later call loads again
    assert calls == 2


def test_concurrent_threads_share_one_load_while_the_breaker_is_open(
        make_registry: Callable[..., Registry], dead_url: str) -> None:
    reg = make_registry(dead_url, socket_connect_timeout=0.2, breaker_threshold=1,
                        breaker_cooldown=60)
    calls = 0
    lock = threading.Lock()
    gate = threading.Event()

    @cached(registry=reg)
    def value(x: int) -> int:
        nonlocal calls
        with lock:
            calls += 1
        if x == 5:
            gate.wait(10)
        return x

    assert value(0) == 0  # the failure that opens the breaker
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(value(5))) for _ in range(16)]
    for thread in threads:
        thread.start()
    # the load lasts until every other thread has joined it, however late each one starts
    poll(lambda: value.stats().singleflight_joins == 15, timeout=10)
    gate.set()
    for thread in threads:
        thread.join()
    assert results == [5] * 16
    assert calls == 2


def test_on_error_raise_raises_instead_of_loading(make_registry: Callable[..., Registry],
                                                  dead_url: str) -> None:
    reg = make_registry(dead_url, socket_connect_timeout=0.2, on_error="raise")

    @cached(registry=reg)
    def value(x: int) -> int:
        raise AssertionError("not called when the backend error is raised")

    with pytest.raises(BackendError):
        value(1)


def test_a_write_behind_call_raises_backend_error_when_it_cannot_queue(
        make_registry: Callable[..., Registry], dead_url: str, events: Events) -> None:
    reg = make_registry(dead_url, socket_connect_timeout=0.2)
    calls = []

    @cachedeco.write_behind(key="e:{i}", flush=events.flush, registry=reg)
    def record(i: int) -> dict[str, Any]:
        calls.append(i)
        return {"id": str(i), "v": i}

    with pytest.raises(BackendError):
        record(1)
    assert calls == [1] and reg.stats().backend_errors == 1
    with pytest.raises(BackendError):
        reg.flush()


def test_close_delivers_what_a_loop_left_when_its_last_drain_failed(
        make_registry: Callable[..., Registry], fresh_redis: Server, events: Events) -> None:
    # asyncio.run() per job: the job's loop ends while the server does not answer, so the
    # worker's drain at that loop's shutdown fails; the registry's close, once the server is
    # back, drains again
    reg = make_registry(fresh_redis.url, socket_timeout=0.3, socket_connect_timeout=0.3,
                        breaker_threshold=1_000)

    async def flush(records: list[dict[str, Any]]) -> None:
        events.flush(records)

    @cachedeco.write_behind(key="e:{i}", flush=flush, flush_interval=3600, registry=reg)
    async def record(i: int) -> dict[str, Any]:
        return {"id": str(i), "v": i}

    async def job() -> None:
        await record(1)
        fresh_redis.pause()  # the drain as this loop shuts down times out

    try:
        asyncio.run(job())
        assert events.rows() == []
    finally:
        fresh_redis.resume()
    reg.close()
    assert events.rows() == [("1", 1)]


def test_a_lock_on_an_unreachable_backend_is_a_backend_error(
        make_registry: Callable[..., Registry], dead_url: str) -> None:
    registry = make_registry(dead_url)
    with pytest.raises(cachedeco.BackendError, match="acquire"), registry.lock("job"):
        pass


async def test_an_async_lock_on_an_unreachable_backend_is_a_backend_error(
        make_registry: Callable[..., Registry], dead_url: str) -> None:
    registry = make_registry(dead_url)
    with pytest.raises(cachedeco.BackendError, match="acquire"):
        async with registry.lock("job"):
            pass


@pytest.mark.deployments("redis", "sentinel")
async def test_a_lease_fault_falls_back_to_computing(reg: Registry,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("lease script unreachable")

    monkeypatch.setattr(AsyncRedisLeases, "acquire", broken)
    runs: list[int] = []

    @cachedeco.cached(ttl=60, registry=reg, lock=True)
    async def load(x: int) -> dict[str, int]:
        runs.append(x)
        return {"x": x, "run": len(runs)}

    assert await load(1) == {"x": 1, "run": 1}
    assert load.stats().backend_errors == 1
    assert await load(1) == {"x": 1, "run": 1}  # stored all the same


@pytest.mark.parametrize("change", ["write_through", "write_behind", "refresh", "invalidate"])
def test_a_call_after_a_change_during_an_outage_never_joins_an_older_load(
        make_registry: Callable[..., Registry], dead_url: str, change: str,
        tmp_path: Path) -> None:
    """Every read fails while the server is out, so every load runs from the same read state
    (nothing read): only forgetting the older load keeps a call made after a change from
    joining it and returning what it read before. (A write-behind record is kept in the
    spool meanwhile.)"""
    reg = make_registry(dead_url, stats_interval=0, spool=str(tmp_path / "spool.db"))
    db = {"v": "old"}
    started, release = threading.Event(), threading.Event()

    @cachedeco.cached(ttl=60, registry=reg)
    def get(x: int) -> str:
        value = db["v"]
        if value == "old":
            started.set()
            release.wait(5)
        return value

    @cachedeco.write_through(get, registry=reg)
    def put(x: int, value: str) -> str:
        db["v"] = value
        return value

    @cachedeco.write_behind(get, registry=reg, flush=lambda rows: None, flush_interval=3600)
    def save(x: int, value: str) -> str:
        db["v"] = value
        return value

    with ThreadPoolExecutor(1) as pool:
        old = pool.submit(get, 1)
        assert started.wait(5)
        if change == "write_through":
            assert put(1, "new") == "new"
        elif change == "write_behind":
            assert save(1, "new") == "new"
        elif change == "refresh":
            db["v"] = "new"
            assert get.refresh(1) == "new"
        else:
            db["v"] = "new"
            assert get.invalidate(1) is False  # unreachable: kept for recovery
        assert get(1) == "new"  # its own load, not the one under way since before
        release.set()
        assert old.result(5) == "old"
