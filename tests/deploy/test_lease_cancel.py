"""A caller cancelled during a lease's round trip (its own timeout, ``asyncio.timeout`` around a
``lock=True`` call) leaves no lease behind: an acquire whose reply it never read may have
taken the lease on the server, and a release it never finished may not have run; either way
the key's callers in other processes would wait until the lease expired (``lock_timeout / 2``,
5 s by default). The cancel is injected where the race puts it: the script ran on a real
server (or not), then the caller is cancelled before it reads the reply."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio

from cachedeco import Registry
from cachedeco.backends.contracts.leases import Busy
from cachedeco.backends.redis._async.leases import AsyncRedisLeases
from cachedeco.core.keyspace import KeySpace, LeaseName
from cachedeco.flows.spec import spec_of
from tests.support.leases import ACutOnce
from tests.support.polling import apoll


def _cancelled_once(script: Any, *, ran: bool) -> ACutOnce:
    """``script``, its first call interrupted by its caller's cancellation: after it ran on
    the server (``ran``), or before it was sent."""
    return ACutOnce(script, asyncio.CancelledError(), ran=ran)


async def test_an_acquire_cancelled_after_it_ran_has_its_lease_released(
        raw: redis.Redis, aleases: AsyncRedisLeases, name: LeaseName) -> None:
    aleases.acquire_script = _cancelled_once(aleases.acquire_script, ran=True)
    with pytest.raises(asyncio.CancelledError):
        await aleases.acquire(name, 30.0)
    assert raw.exists(name.key) == 1  # taken on the server; its caller never knew
    await apoll(lambda: raw.exists(name.key) == 0, timeout=5.0)  # not after its 30 s
    taken = await aleases.acquire(name, 30.0)
    assert not isinstance(taken, Busy) and await taken.release() is True


async def test_a_release_cancelled_before_it_ran_can_be_sent_again(
        raw: redis.Redis, aleases: AsyncRedisLeases, name: LeaseName) -> None:
    lease = await aleases.acquire(name, 30.0)
    assert not isinstance(lease, Busy)
    aleases.release_script = _cancelled_once(aleases.release_script, ran=False)
    with pytest.raises(asyncio.CancelledError):
        await lease.release()
    assert raw.exists(name.key) == 1
    assert await lease.release() is True  # it kept its token
    assert raw.exists(name.key) == 0


def _holder(reg: Registry, started: asyncio.Event, finish: asyncio.Event) -> Any:
    @reg.cached(ttl=60, lock=True)
    async def load(x: int) -> int:
        started.set()
        await finish.wait()
        return x

    return load


async def test_a_load_cancelled_twice_still_releases_its_lease(
        raw: redis.Redis, amake_registry: Callable[..., Registry], redis_url: str) -> None:
    # cancelled in its load, then again while its release is on the way: the release is
    # sent again in the background (the lease lives lock_timeout / 2 = 10 s here)
    reg = amake_registry(redis_url, lock_timeout=20.0, stats_interval=0)
    started, finish = asyncio.Event(), asyncio.Event()
    load = _holder(reg, started, finish)
    b = spec_of(load).bound()
    name = b.keyspace.lease(b.key((1,), {}))
    leases = b.slot.abackend().leases()
    assert isinstance(leases, AsyncRedisLeases)
    leases.release_script = _cancelled_once(leases.release_script, ran=False)
    task = asyncio.create_task(load(1))
    await started.wait()
    assert raw.exists(name.key) == 1
    task.cancel()  # the load is cancelled; the release the holder sends then is too
    with pytest.raises(asyncio.CancelledError):
        await task
    await apoll(lambda: raw.exists(name.key) == 0, timeout=3.0)


async def test_a_store_cancelled_after_it_released_the_lease_is_no_expiry(
        amake_registry: Callable[..., Registry], redis_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # one server: the store releases the lease in the same script; its reply lost to the
    # cancel, the holder's own release finds the lease gone, which is no sign it expired
    reg = amake_registry(redis_url, lock_timeout=20.0, stats_interval=0)
    started, finish = asyncio.Event(), asyncio.Event()
    load = _holder(reg, started, finish)
    b = spec_of(load).bound()
    backend = b.slot.abackend()
    backend._store_release = _cancelled_once(backend._store_release, ran=True)  # type: ignore[attr-defined]
    finish.set()
    with caplog.at_level(logging.WARNING, logger="cachedeco"), \
            pytest.raises(asyncio.CancelledError):
        await load(1)
    assert [r.getMessage() for r in caplog.records if "expired" in r.getMessage()] == []
    assert await load(1) == 1  # stored: a hit
    assert load.stats().loads == 1


async def test_another_process_does_not_wait_for_a_cancelled_callers_lease(
        amake_registry: Callable[..., Registry], redis_url: str) -> None:
    # registry a's caller is cancelled as its acquire's reply comes back; registry b (another
    # process) then loads at once rather than after the lease's 10 s
    regs = [amake_registry(redis_url, lock_timeout=20.0, stats_interval=0) for _ in range(2)]
    loads: list[str] = []

    def reader(reg: Registry, who: str) -> Any:
        @reg.cached(ttl=60, lock=True, key="item:{x}")
        async def read(x: int) -> int:
            loads.append(who)
            return x

        return read

    a, b = reader(regs[0], "a"), reader(regs[1], "b")
    leases = spec_of(a).bound().slot.abackend().leases()
    assert isinstance(leases, AsyncRedisLeases)
    leases.acquire_script = _cancelled_once(leases.acquire_script, ran=True)
    with pytest.raises(asyncio.CancelledError):
        await a(1)
    async with asyncio.timeout(3.0):
        assert await b(1) == 1
    assert loads == ["b"]


async def test_a_lock_whose_release_is_cancelled_is_released_all_the_same(
        raw: redis.Redis, amake_registry: Callable[..., Registry], redis_url: str,
        prefix: str) -> None:
    reg = amake_registry(redis_url, stats_interval=0)
    lock = reg.lock("migrate", ttl=30.0)
    leases = reg.slot("default").abackend().leases()
    assert isinstance(leases, AsyncRedisLeases)
    leases.release_script = _cancelled_once(leases.release_script, ran=False)
    with pytest.raises(asyncio.CancelledError):
        async with lock:
            pass
    key = KeySpace(prefix).lock("migrate").key
    await apoll(lambda: raw.exists(key) == 0, timeout=3.0)  # not after its 30 s
    async with asyncio.timeout(1.0), reg.lock("migrate", ttl=30.0, timeout=0):
        pass


async def test_a_cached_many_call_cancelled_while_taking_its_leases_releases_them(
        raw: redis.Redis, amake_registry: Callable[..., Registry], redis_url: str) -> None:
    # its first id's lease taken, the caller is cancelled asking for the second's
    reg = amake_registry(redis_url, lock_timeout=20.0, stats_interval=0)

    @reg.cached_many(key="m:{id}", lock=True)
    async def load(ids: list[int]) -> dict[int, int]:
        return {i: i for i in ids}

    leases = reg.slot("default").abackend().leases()
    acquire, calls = leases.acquire, []

    async def second_cancelled(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        if len(calls) == 2:
            raise asyncio.CancelledError
        return await acquire(*args, **kwargs)

    leases.acquire = second_cancelled  # type: ignore[method-assign]
    with pytest.raises(asyncio.CancelledError):
        await load([1, 2])
    first = calls[0].key
    assert raw.exists(first) == 1
    await apoll(lambda: raw.exists(first) == 0, timeout=3.0)  # not after its 10 s
