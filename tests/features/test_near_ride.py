"""With a near cache, callers that miss while this process already loads their key join that
load without a read of their own, as long as the change stream reports no change of the key
or its tags since the load's leader read; once one is reported, a caller reads again and never
joins the older load."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from cachedeco import Registry
from cachedeco.backends.redis.cluster_plan import tag_slot_key
from cachedeco.flows.spec import spec_of
from tests.support.commands import commandstats, ran
from tests.support.deployments import SERVERS, Deployment
from tests.support.near import TRACKER, awarm
from tests.support.polling import apoll, poll

pytestmark = pytest.mark.deployments(*SERVERS)



def _reads(before: dict[str, int], after: dict[str, int]) -> int:
    """Read commands sent between two ``commandstats`` snapshots."""
    return sum(n for name, n in ran(before, after, ignore=TRACKER).items()
               if name in ("mget", "get"))


class Gated:
    """An async cached function ``f(x)`` whose second run (the first load of ``f(1)`` after
    the warm-up call ``f(0)``) waits for ``gate``; ``started`` is set when it does."""

    def __init__(self, reg: Registry) -> None:
        self.gate, self.started, self.runs = asyncio.Event(), asyncio.Event(), []

        @reg.cached(ttl=60, tags=["item:{x}"])
        async def f(x: int) -> dict[str, int]:
            self.runs.append(x)
            run = len(self.runs)
            if run == 2:
                self.started.set()
                await self.gate.wait()
            return {"x": x, "run": run}

        self.f = f


async def test_tasks_join_a_load_under_way_without_reading(
        amake_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = amake_registry(deployment.url, near_cache=100, stats_interval=0)
    gated = Gated(reg)
    f, gate, started, runs = gated.f, gated.gate, gated.started, gated.runs
    await awarm(lambda: f(0), f.stats)  # the change stream is up
    leader = asyncio.create_task(f(1))
    await asyncio.wait_for(started.wait(), 10)
    before = commandstats(deployment.raw)
    riders = []
    for _ in range(20):  # one a loop turn: reads of one turn would share a round trip anyway
        riders.append(asyncio.create_task(f(1)))
        await asyncio.sleep(0)
    await apoll(lambda: f.stats().singleflight_joins >= 20, timeout=10.0)
    assert _reads(before, commandstats(deployment.raw)) == 0
    gate.set()
    assert await asyncio.gather(leader, *riders) == [{"x": 1, "run": 2}] * 21
    assert runs == [0, 1]
    assert f.stats().singleflight_joins >= 20


def test_threads_join_a_load_under_way_without_reading(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = make_registry(deployment.url, near_cache=100, stats_interval=0)
    gate, started, runs = threading.Event(), threading.Event(), []

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        runs.append(x)
        if x == 1:
            started.set()
            gate.wait(10)
        return x * 10

    def near_hit() -> bool:
        before = f.stats().near_hits
        f(0)
        return f.stats().near_hits > before

    poll(near_hit, timeout=10.0)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(f(1))) for _ in range(11)]
    threads[0].start()
    assert started.wait(10)
    before = commandstats(deployment.raw)
    for thread in threads[1:]:
        thread.start()
    poll(lambda: f.stats().singleflight_joins >= 10, timeout=10.0)
    assert _reads(before, commandstats(deployment.raw)) == 0
    gate.set()
    for thread in threads:
        thread.join(10)
    assert results == [10] * 11
    assert runs == [0, 1]


async def test_after_a_reported_change_a_caller_reads_and_never_joins_the_older_load(
        amake_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = amake_registry(deployment.url, near_cache=100, stats_interval=0)
    gated = Gated(reg)
    f, gate, started = gated.f, gated.gate, gated.started
    await awarm(lambda: f(0), f.stats)
    old = asyncio.create_task(f(1))
    await asyncio.wait_for(started.wait(), 10)
    b = spec_of(f).bound()
    key, tag_keys = b.key((1,), {}), b.tags((1,), {})
    flight = b.flights.airborne(key)
    assert flight is not None and flight.ticket is not None and b.near is not None
    # Another process invalidates the tag (a new token written by another client, under
    # the name the tag is stored as: on a cluster, with its slot's hash tag).
    tag = next(t for t in tag_keys if t.endswith("item:1"))
    deployment.raw.set(tag_slot_key(tag) if deployment.name == "cluster" else tag, "i-elsewhere")
    near = b.near
    await apoll(lambda: not near.unchanged(flight.ticket, key, tag_keys), timeout=10.0)
    joins = f.stats().singleflight_joins
    assert await f(1) == {"x": 1, "run": 3}  # its own load, not the one that began before
    assert f.stats().singleflight_joins == joins  # nor a join that timed out first
    gate.set()
    assert await old == {"x": 1, "run": 2}


async def test_a_rider_whose_leader_is_cancelled_reads_and_is_counted_once(
        amake_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = amake_registry(deployment.url, near_cache=100, stats_interval=0)
    gated = Gated(reg)
    f, started, runs = gated.f, gated.started, gated.runs
    await awarm(lambda: f(0), f.stats)
    before = f.stats()
    leader = asyncio.create_task(f(1))
    await asyncio.wait_for(started.wait(), 10)
    riders = []
    for _ in range(5):
        riders.append(asyncio.create_task(f(1)))
        await asyncio.sleep(0)
    await apoll(lambda: f.stats().singleflight_joins - before.singleflight_joins >= 5,
                timeout=10.0)  # the riders wait for the leader's load
    leader.cancel()
    assert await asyncio.gather(*riders) == [{"x": 1, "run": 3}] * 5  # one load of their own
    with pytest.raises(asyncio.CancelledError):
        await leader
    after = f.stats()
    # Every call counted once, as a hit or a miss: the riders' given-up joins are not.
    assert (after.hits + after.misses) - (before.hits + before.misses) == 6
    assert runs == [0, 1, 1]
