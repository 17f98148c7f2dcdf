"""The lineage counter on backends given an asyncio client only: beaten from a task on the
running loop, also in a registry whose other backends are beaten from its thread, and a
counter gone back there is noticed as on any other backend."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import fakeredis
import pytest

from cachedeco import Registry, cached
from cachedeco.runtime import lineage
from cachedeco.runtime.lineage import Lineage
from tests.support.calls import Calls
from tests.support.polling import apoll_async

pytestmark = pytest.mark.asyncio


async def test_an_asyncio_client_only_registry_beats_from_a_task(
        amake_registry: Callable[..., Registry], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lineage, "BEAT", 0.05)
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    reg = amake_registry(client, stats_interval=0)

    @cached(registry=reg)
    async def item(i: int) -> int:
        return i

    assert await item(1) == 1
    await apoll_async(lambda: _at_least(client, reg.keyspace.lineage, 3))


async def test_a_registry_with_both_kinds_of_client_beats_on_each(
        amake_registry: Callable[..., Registry], monkeypatch: pytest.MonkeyPatch) -> None:
    # the thread beats on the backend with a sync client; the one given an asyncio client
    # only was never beaten before: a task beats on it, beside the thread
    monkeypatch.setattr(lineage, "BEAT", 0.05)
    here = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    there = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    reg = amake_registry(here, backends={"there": there}, stats_interval=0)

    @cached(registry=reg)
    def near_by(i: int) -> int:
        return i

    @cached(registry=reg, backend="there")
    async def far_off(i: int) -> int:
        return i

    assert near_by(1) == 1
    assert await far_off(1) == 1
    await apoll_async(lambda: _at_least(here, reg.keyspace.lineage, 3))
    await apoll_async(lambda: _at_least(there, reg.keyspace.lineage, 3))


async def test_a_restored_older_dataset_behind_an_asyncio_client_is_noticed(
        amake_registry: Callable[..., Registry], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Lineage, "ensure", lambda self: None)  # the test beats by hand
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    reg = amake_registry(client, stats_interval=0)
    now = [100.0]
    reg.lineage = Lineage(reg.recovery, lambda: reg, clock=lambda: now[0])
    calls, version = Calls(), itertools.count(1)

    @cached(registry=reg, tags=["item:{i}"])
    async def item(i: int) -> int:
        calls(i)
        return next(version)

    async def beat(n: int) -> None:
        for _ in range(n):
            now[0] += 1.0
            await reg.lineage.abeat()

    assert await item(1) == 1
    await beat(5)
    snapshot = {key: await client.dump(key) async for key in client.scan_iter(f"{reg.prefix}:*")}
    await reg.ainvalidate_tags("item:1")
    assert await item(1) == 2
    await beat(4)  # the snapshot is now older than what a replay reaches
    for key, dumped in snapshot.items():
        await client.restore(key, 0, dumped, replace=True)
    assert await item(1) == 1  # served until a beat sees the counter gone back
    await beat(1)
    await reg.aflush()  # deliver the renewal now
    assert await item(1) == 3 and await item(1) == 3
    assert calls.count(1) == 3


async def _at_least(client: fakeredis.FakeAsyncRedis | fakeredis.FakeRedis, key: str,
                    n: int) -> bool:
    """Whether ``key`` counts ``n`` or more (read with either kind of client)."""
    value = client.get(key)
    if asyncio.iscoroutine(value):
        value = await value
    return int(value or 0) >= n
