"""The single server's asyncio read batching: concurrent reads of one registry share
pipelined round trips (identical reads are sent once per batch), many keys stay exact, and a
cancelled caller cancels nobody else."""

from __future__ import annotations

import asyncio

import pytest
import redis

from cachedeco import Registry, cached
from tests.support.commands import commandstats

pytestmark = pytest.mark.deployments("redis")


async def test_concurrent_hits_of_one_key_cost_a_few_reads(reg: Registry,
                                                            redis_client: redis.Redis) -> None:
    calls = 0

    @cached(registry=reg)
    async def value(x: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"x": x}

    await value(1)
    before = commandstats(redis_client).get("mget", 0)
    results = await asyncio.gather(*(value(1) for _ in range(200)))
    mgets = commandstats(redis_client).get("mget", 0) - before
    assert results == [{"x": 1}] * 200
    assert calls == 1
    assert 1 <= mgets <= 20, mgets  # coalesced: identical reads are sent once per batch
    assert value.stats().hits == 201 - 1


async def test_concurrent_hits_of_many_keys_are_exact(reg: Registry) -> None:

    @cached(registry=reg, tags=["k:{x}"])
    async def value(x: int) -> int:
        return x * 10

    await asyncio.gather(*(value(x) for x in range(300)))
    assert await asyncio.gather(*(value(x) for x in range(300))) == [x * 10 for x in range(300)]
    assert value.stats().hits >= 300


async def test_a_cancelled_caller_does_not_cancel_the_others(reg: Registry) -> None:

    @cached(registry=reg)
    async def value(x: int) -> int:
        return x

    await value(7)
    tasks = [asyncio.ensure_future(value(7)) for _ in range(50)]
    await asyncio.sleep(0)
    tasks[10].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[10], asyncio.CancelledError)
    assert [d for i, d in enumerate(done) if i != 10] == [7] * 49
