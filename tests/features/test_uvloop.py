"""Under uvloop (uvicorn's loop with ``uvicorn[standard]``), as under asyncio's own: the cache
flows, a near cache that hears another registry's change, a stampede with ``lock=True`` that
loads once, and write-behind records flushed on close, on every deployment with a server."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from cachedeco import Registry
from tests.support._async.flows import check_flows
from tests.support.deployments import Deployment
from tests.support.near import awarm

pytestmark = pytest.mark.deployments("redis", "cluster", "sentinel")


async def _scenario(deployment: Deployment, prefix: str) -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
    flows = Registry(deployment.url, prefix=prefix, on_error="raise", stats_interval=0)
    try:
        await check_flows(flows, deployment.raw, prefix)
    finally:
        await flows.aclose()

    loads: collections.Counter[int] = collections.Counter()
    flushed: list[dict[str, int]] = []
    near = Registry(deployment.url, prefix=f"{prefix}n", near_cache=100, stats_interval=0)
    other = Registry(deployment.url, prefix=f"{prefix}n", stats_interval=0)
    try:
        @near.cached(ttl=60, tags=["item:{x}"], lock=True)
        async def item(x: int) -> dict[str, int]:
            loads[x] += 1
            await asyncio.sleep(0.05)
            return {"x": x, "v": loads[x]}

        async def flush(records: list[dict[str, int]]) -> None:
            flushed.extend(records)

        @near.write_behind(item, flush=flush, flush_interval=3600)
        async def record(x: int) -> dict[str, int]:
            return {"x": x, "v": 100 + x}

        assert await asyncio.gather(*(item(1) for _ in range(50))) == [{"x": 1, "v": 1}] * 50
        assert loads[1] == 1

        async def loaded_again() -> bool:
            return await item(1) == {"x": 1, "v": 2}

        await awarm(lambda: item(1), item.stats)  # a near hit: the change stream is up
        await other.ainvalidate_tags("item:1")  # another registry: heard through the stream
        await _until(loaded_again)
        assert loads[1] == 2

        assert [await record(x) for x in range(2, 6)] == [{"x": x, "v": 100 + x}
                                                           for x in range(2, 6)]
        assert await item(3) == {"x": 3, "v": 103}  # cached at once, before any flush
        assert flushed == []
    finally:
        await other.aclose()
        await near.aclose()  # flushes what write-behind holds
    assert sorted(r["x"] for r in flushed) == [2, 3, 4, 5]
    assert loads == {1: 2}


async def _until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_under_uvloop(deployment: Deployment, prefix: str) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_scenario(deployment, prefix))
