"""A service whose requests time out: ``lock=True`` reads, write-through writes and tag
invalidations, each under an ``asyncio.timeout`` of 0.5-30 ms (about a third of them cancelled
somewhere on their way), arriving at random for a few seconds. Afterwards no lease is left
held, every call that came after the storm answers at once, and every entry reads the
database's value (a cancelled writer may have committed).

Before the fixes, leases taken by requests whose caller was cancelled as their reply came
back were held by nobody until they expired (10 s here): the storm's last calls waited for
them, 6-9 s past its end on Redis Cluster in 4 runs of 4."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import pytest
import redis

from cachedeco import Registry, cached, write_through
from tests.support.deployments import REDIS_BACKENDS, Deployment
from tests.support.polling import apoll

pytestmark = pytest.mark.deployments(*REDIS_BACKENDS)

ITEMS = 20
SECONDS = 5.0
ARRIVAL = 0.001  # mean seconds between two requests' arrivals


def _leases(deployment: Deployment, prefix: str) -> list[bytes]:
    """The ``lock=True`` leases held now under the prefix (not their wake lists)."""
    raw = deployment.raw
    pattern = f"{prefix}:~lease:*"
    if isinstance(raw, redis.RedisCluster):
        return list(raw.scan_iter(match=pattern, target_nodes=raw.ALL_NODES))
    return list(raw.scan_iter(match=pattern))


async def test_requests_cancelled_at_random_leave_nothing_held_and_nothing_stale(
        amake_registry: Callable[..., Registry], deployment: Deployment, prefix: str) -> None:
    reg = amake_registry(deployment.url, lock_timeout=20.0, stats_interval=0)
    db = dict.fromkeys(range(ITEMS), 0)
    rng = random.Random(7)

    @cached(registry=reg, ttl=60, tags=["item:{x}"], lock=True)
    async def get(x: int) -> int:
        await asyncio.sleep(rng.uniform(0, 0.02))
        return db[x]

    @write_through(get, registry=reg, invalidate=["item:{x}"])
    async def put(x: int) -> int:
        await asyncio.sleep(rng.uniform(0, 0.005))
        db[x] += 1
        return db[x]

    async def request() -> None:
        x, kind = rng.randrange(ITEMS), rng.random()
        with_timeout = asyncio.timeout(rng.uniform(0.0005, 0.03))
        try:
            async with with_timeout:
                if kind < 0.8:
                    await get(x)
                elif kind < 0.9:
                    await put(x)
                else:
                    await reg.ainvalidate_tags(f"item:{x}")
        except TimeoutError:
            pass

    pending: set[asyncio.Task[None]] = set()
    end = time.monotonic() + SECONDS
    while time.monotonic() < end:
        task = asyncio.create_task(request())
        pending.add(task)
        task.add_done_callback(pending.discard)
        await asyncio.sleep(rng.expovariate(1 / ARRIVAL))
    async with asyncio.timeout(2.0):  # each under its own 30 ms at most
        await asyncio.gather(*pending)
    await apoll(lambda: not _leases(deployment, prefix), timeout=2.0)  # not after their 10 s
    await apoll(lambda: reg.stats().recoveries_pending == 0, timeout=5.0)
    async with asyncio.timeout(2.0):
        assert [await get(x) for x in range(ITEMS)] == [db[x] for x in range(ITEMS)]
