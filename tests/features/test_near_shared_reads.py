"""With a near cache, callers of a key whose read is already under way in this process wait
for that read's reply rather than sending their own, while the change stream reports no change
of the key or its tags since it was sent; after one is reported, a caller reads for itself.

The read is held on the server with ``CLIENT PAUSE`` (it expires on its own), so the callers
that come after it find it under way."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from cachedeco import Registry
from cachedeco.flows.bound import Bound
from cachedeco.flows.spec import spec_of
from tests.support.commands import commandstats, ran
from tests.support.deployments import Deployment
from tests.support.near import TRACKER, awarm, warm
from tests.support.polling import apoll, poll

pytestmark = pytest.mark.deployments("redis")

PAUSE_MS = 400


def _reads(before: dict[str, int], after: dict[str, int]) -> int:
    """Read commands sent between two ``commandstats`` snapshots."""
    return sum(n for name, n in ran(before, after, ignore=TRACKER).items()
               if name in ("mget", "get"))


def _pause(deployment: Deployment) -> None:
    """Hold every client's commands for PAUSE_MS (the pause then ends by itself)."""
    deployment.raw.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")


def _under_way(b: Bound, x: int) -> bool:
    return b.flights.reading(b.key((x,), {}), b.tags((x,), {})) is not None


def _stored_not_near(make_registry: Callable[..., Registry]) -> tuple[Any, list[int]]:
    """A near-cached ``f(x)`` whose f(1) is stored in Redis and not kept near (a process's
    own store is kept near only from a read after it)."""
    reg = make_registry(near_cache=100, stats_interval=0)
    runs: list[int] = []

    @reg.cached(ttl=60, tags=["item:{x}"])
    def f(x: int) -> dict[str, int]:
        runs.append(x)
        return {"x": x}

    warm(lambda: f(0), f.stats)  # the change stream is up
    f(1)
    return f, runs


def test_threads_wait_for_the_read_under_way(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    f, runs = _stored_not_near(lambda **kw: make_registry(deployment.url, **kw))
    b = spec_of(f).bound()
    before, hits = commandstats(deployment.raw), f.stats().hits
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(f(1))) for _ in range(10)]
    _pause(deployment)
    threads[0].start()
    poll(lambda: _under_way(b, 1), timeout=5.0)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [{"x": 1}] * 10
    assert results[0] is not results[1]  # each caller decodes its own copy
    assert _reads(before, commandstats(deployment.raw)) == 1
    assert runs == [0, 1] and f.stats().hits - hits == 10


async def test_tasks_wait_for_the_read_under_way(
        amake_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = amake_registry(deployment.url, near_cache=100, stats_interval=0)
    runs: list[int] = []

    @reg.cached(ttl=60, tags=["item:{x}"])
    async def f(x: int) -> dict[str, int]:
        runs.append(x)
        return {"x": x}

    await awarm(lambda: f(0), f.stats)
    await f(1)  # stored, not kept near
    b = spec_of(f).bound()
    before = commandstats(deployment.raw)
    _pause(deployment)
    first = asyncio.create_task(f(1))
    await apoll(lambda: _under_way(b, 1), timeout=5.0)
    later = []
    for _ in range(9):  # one a loop turn: reads of one turn share a round trip anyway
        later.append(asyncio.create_task(f(1)))
        await asyncio.sleep(0.005)
    assert await asyncio.gather(first, *later) == [{"x": 1}] * 10
    assert _reads(before, commandstats(deployment.raw)) == 1
    assert runs == [0, 1]


def test_after_a_reported_change_a_caller_sends_its_own_read(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    f, runs = _stored_not_near(lambda **kw: make_registry(deployment.url, **kw))
    b = spec_of(f).bound()
    assert b.near is not None
    before = commandstats(deployment.raw)
    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(f(1)))
    _pause(deployment)
    first.start()
    poll(lambda: _under_way(b, 1), timeout=5.0)
    b.near.changed([b.key((1,), {})])  # what a write of this process does before it returns
    late = threading.Thread(target=lambda: results.append(f(1)))
    late.start()
    poll(lambda: f.stats().hits >= 3 or not first.is_alive(), timeout=5.0)
    for thread in (first, late):
        thread.join(10)
    assert results == [{"x": 1}] * 2
    assert _reads(before, commandstats(deployment.raw)) == 2
    assert runs == [0, 1]
