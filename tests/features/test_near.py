"""The near cache in one process, on every Redis deployment: a near hit sends no command and
counts in ``near_hits``; a change this process makes is never followed by the old value; a
change made by another client reaches it within a bounded time; a registry used again after
``close()`` has it back, one replaced by ``configure()`` does not, one dropped without
``close()`` lets go of its stream; ``near=False`` and
``memory://`` never use it."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis

from cachedeco import Registry, write_behind, write_through
from cachedeco.runtime.retrying import Retrying
from tests.support.commands import commandstats, ran
from tests.support.deployments import SERVERS, Deployment
from tests.support.near import (
    TRACKER,
    awarm,
    near_registry,
    near_threads,
    silenced_stream,
    warm,
)
from tests.support.polling import apoll, poll
from tests.support.versioned import item_readers

pytestmark = pytest.mark.deployments(*SERVERS)



def test_a_near_hit_sends_no_command(make_registry: Callable[..., Registry],
                                     deployment: Deployment) -> None:
    reg = near_registry(make_registry, deployment)
    loads = []

    @reg.cached(ttl=60, tags=["a:{x}", "b", "c"])
    def f(x: int) -> dict[str, int]:
        loads.append(x)
        return {"x": x}

    warm(lambda: f(1), f.stats)
    before, stats = commandstats(deployment.raw), f.stats()
    for _ in range(200):
        assert f(1) == {"x": 1}
    assert ran(before, commandstats(deployment.raw), ignore=TRACKER) == {}
    after = f.stats()
    assert after.near_hits - stats.near_hits == 200
    assert after.hits - stats.hits == 200
    assert loads == [1]
    assert reg.stats().near_hits == after.near_hits


@dataclasses.dataclass
class Item:
    x: int


@pytest.mark.parametrize("tags", [(), ("items",)], ids=["key only", "tagged"])
def test_functions_sharing_a_key_each_get_their_own_type_from_the_near_cache(
        make_registry: Callable[..., Registry], deployment: Deployment,
        tags: tuple[str, ...]) -> None:
    """One entry, read by a function annotated with a dataclass and one returning a plain
    dict: each decodes it to its own type, so a value one of them kept near is never the
    other's hit (it was: the dict came back from the typed function)."""
    reg = near_registry(make_registry, deployment)

    @reg.cached(ttl=60, key="item:{x}", tags=list(tags))
    def typed(x: int) -> Item:
        return Item(x)

    @reg.cached(ttl=60, key="item:{x}", tags=list(tags))
    def plain(x: int) -> dict[str, int]:
        return {"x": x}

    warm(lambda: typed(1), typed.stats)  # kept near as typed's Item
    assert plain(1) == {"x": 1} and type(plain(1)) is dict
    warm(lambda: plain(1), plain.stats)  # now kept near as plain's dict
    assert typed(1) == Item(1)
    assert typed.get(1) == Item(1)
    assert plain.get(1) == {"x": 1} and type(plain.get(1)) is dict


@pytest.mark.deployments("redis", "cluster")
async def test_an_async_near_hit_sends_no_command(amake_registry: Callable[..., Registry],
                                                  deployment: Deployment) -> None:
    reg = near_registry(amake_registry, deployment)

    @reg.cached(ttl=60, tags=["t"])
    async def f(x: int) -> int:
        return x * 2

    async def near_hit() -> bool:
        before = f.stats().near_hits
        await f(3)
        return f.stats().near_hits > before

    deadline = asyncio.get_running_loop().time() + 10
    while not await near_hit():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)
    before = commandstats(deployment.raw)
    assert [await f(3) for _ in range(100)] == [6] * 100
    assert ran(before, commandstats(deployment.raw), ignore=TRACKER) == {}
    await reg.ainvalidate_tags("t")
    assert f.stats().near_hits > 0
    hits = f.stats().near_hits
    await f(3)  # this process's change: read from Redis, not near
    assert f.stats().near_hits == hits
    await apoll(lambda: True)


@pytest.mark.deployments("memory")
def test_memory_ignores_the_near_cache(make_registry: Callable[..., Registry],
                                       deployment: Deployment) -> None:
    reg = near_registry(make_registry, deployment)
    assert reg.slot("default").near is None

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        return x

    assert [f(1) for _ in range(50)] == [1] * 50
    assert f.stats().near_hits == 0 and f.stats().hits == 49


@pytest.mark.deployments("redis")
def test_near_false_reads_redis_every_time(make_registry: Callable[..., Registry],
                                           deployment: Deployment) -> None:
    reg = near_registry(make_registry, deployment)

    @reg.cached(ttl=60, key="shared:{x}")
    def near(x: int) -> int:
        return x

    @reg.cached(ttl=60, key="shared:{x}", near=False)
    def far(x: int) -> int:
        return x

    warm(lambda: near(1), near.stats)  # the entry is near for the other function
    before = commandstats(deployment.raw)
    assert [far(1) for _ in range(20)] == [1] * 20
    # one MGET per call: the entry and the function's implicit tag
    assert ran(before, commandstats(deployment.raw), ignore=TRACKER) == {"mget": 20}
    assert far.stats().near_hits == 0 and far.stats().hits == 20


@pytest.mark.deployments("redis", "cluster")
def test_this_process_never_serves_the_old_value_after_its_change(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = near_registry(make_registry, deployment)
    version = {1: 0}

    @reg.cached(ttl=60, tags=["item:{x}", "items"])
    def f(x: int) -> int:
        return version[x]

    @write_through(f, registry=reg)
    def update(x: int) -> int:
        version[x] += 1
        return version[x]

    flushed: list[Any] = []

    @write_behind(f, registry=reg, flush=flushed.extend)
    def save(x: int) -> int:
        version[x] += 1
        return version[x]

    def bump() -> None:
        version[1] += 1

    changes: list[tuple[str, Callable[[], Any]]] = [
        ("invalidate", lambda: (bump(), f.invalidate(1))),
        ("invalidate_tags", lambda: (bump(), reg.invalidate_tags("item:1"))),
        ("shared tag", lambda: (bump(), reg.invalidate_tags("items"))),
        ("invalidate_all", lambda: (bump(), f.invalidate_all())),
        ("write_through", lambda: update(1)),
        ("write_behind", lambda: save(1)),
        ("refresh", lambda: (bump(), f.refresh(1))),
        ("set", lambda: (bump(), f.set(version[1], 1))),
        ("clear", lambda: (bump(), reg.clear())),
    ]
    for name, change in changes:
        warm(lambda: f(1), f.stats)
        old = f(1)
        with silenced_stream(reg):
            change()
            assert f(1) == version[1] != old, name


@pytest.mark.deployments("redis", "cluster")
async def test_this_process_never_serves_the_old_value_after_its_asyncio_change(
        amake_registry: Callable[..., Registry], deployment: Deployment) -> None:
    """The same changes made from asyncio callers (the near cache's asyncio wrapper)."""
    reg = near_registry(amake_registry, deployment)
    version = {1: 0}

    @reg.cached(ttl=60, tags=["item:{x}", "items"])
    async def f(x: int) -> int:
        return version[x]

    @write_through(f, registry=reg)
    async def update(x: int) -> int:
        version[x] += 1
        return version[x]

    flushed: list[Any] = []

    @write_behind(f, registry=reg, flush=flushed.extend)
    async def save(x: int) -> int:
        version[x] += 1
        return version[x]

    def bumped(change: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        def bump_then_change() -> Awaitable[Any]:
            version[1] += 1
            return change()
        return bump_then_change

    changes: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("invalidate", bumped(lambda: f.invalidate(1))),
        ("invalidate_tags", bumped(lambda: reg.ainvalidate_tags("item:1"))),
        ("shared tag", bumped(lambda: reg.ainvalidate_tags("items"))),
        ("invalidate_all", bumped(f.invalidate_all)),
        ("write_through", lambda: update(1)),
        ("write_behind", lambda: save(1)),
        ("refresh", bumped(lambda: f.refresh(1))),
        ("set", bumped(lambda: f.set(version[1], 1))),
        ("invalidate_pattern", bumped(lambda: reg.ainvalidate_pattern("*"))),
        ("clear", bumped(reg.aclear)),
    ]
    for name, change in changes:
        await awarm(lambda: f(1), f.stats)
        old = await f(1)
        with silenced_stream(reg):
            await change()
            assert await f(1) == version[1] != old, name


@pytest.mark.deployments("redis", "cluster")
def test_the_flushing_process_never_serves_what_the_ack_replaced(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    """A tag invalidation reached a held write-behind entry: this process loaded the older
    row and keeps it near. The flush's ack replaces that entry in Redis; once ``flush()``
    returns this process serves what was flushed, with no help from the change stream."""
    reg = near_registry(make_registry, deployment)
    db = {1: 1}

    @reg.cached(ttl=60, tags=["items"])
    def f(x: int) -> int:
        return db[x]

    @write_behind(f, registry=reg, flush=lambda rows: db.update({1: rows[-1]}),
                  flush_interval=3600)
    def save(x: int, v: int) -> int:
        return v

    save(1, 2)
    reg.invalidate_tags("items")
    warm(lambda: f(1), f.stats)
    assert f(1) == 1  # the database's older row, kept near until the flush
    with silenced_stream(reg):
        reg.flush()
        assert f(1) == 2


@pytest.mark.deployments("redis", "cluster")
async def test_the_asyncio_flushing_process_never_serves_what_the_ack_replaced(
        amake_registry: Callable[..., Registry], deployment: Deployment) -> None:
    """The same, with asyncio callers, an ``async def`` flush and ``aflush()``."""
    reg = near_registry(amake_registry, deployment)
    db = {1: 1}

    @reg.cached(ttl=60, tags=["items"])
    async def f(x: int) -> int:
        return db[x]

    async def flush(rows: list[int]) -> None:
        db.update({1: rows[-1]})

    @write_behind(f, registry=reg, flush=flush, flush_interval=3600)
    async def save(x: int, v: int) -> int:
        return v

    await save(1, 2)
    await reg.ainvalidate_tags("items")
    await awarm(lambda: f(1), f.stats)
    assert await f(1) == 1  # the database's older row, kept near until the flush
    with silenced_stream(reg):
        await reg.aflush()
        assert await f(1) == 2


@pytest.mark.deployments("redis", "cluster")
def test_changes_by_other_clients_reach_the_near_cache(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = near_registry(make_registry, deployment)
    other = make_registry(deployment.url, stats_interval=0)  # another client, no near cache
    version = {"v": 0}

    f, g = item_readers(reg, other, version)

    changes: list[tuple[str, Callable[[], Any]]] = [
        ("raw DEL", lambda: deployment.raw.delete(f.key(1))),
        ("other registry's invalidate_tags", lambda: other.invalidate_tags("item:1")),
        ("other registry's invalidate", lambda: g.invalidate(1)),
    ]
    for name, change in changes:
        warm(lambda: f(1), f.stats)
        version["v"] += 1
        change()
        poll(lambda: f(1) == version["v"], timeout=5.0)
        assert f(1) == version["v"], name


def test_a_registry_used_again_after_close_has_its_near_cache_back(
        make_registry: Callable[..., Registry], deployment: Deployment, prefix: str) -> None:
    # close() then more calls (a closed registry is used again, as its clients are): the
    # change stream starts over, near hits come back, and they stay coherent
    reg = near_registry(make_registry, deployment)
    other = make_registry(deployment.url, stats_interval=0)
    version = {"v": 0}
    f, _ = item_readers(reg, other, version)
    for _round in range(2):
        warm(lambda: f(1), f.stats)
        reg.close()
        assert near_threads(prefix) == 0
    warm(lambda: f(1), f.stats)
    assert near_threads(prefix) == 1
    version["v"] += 1
    other.invalidate_tags("item:1")
    poll(lambda: f(1) == version["v"], timeout=5.0)


def test_configure_stops_the_old_backends_change_stream_for_good(
        make_registry: Callable[..., Registry], deployment: Deployment, prefix: str) -> None:
    reg = near_registry(make_registry, deployment)
    old = reg.slot("default")

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        return x

    warm(lambda: f(1), f.stats)
    reg.configure(deployment.url, prefix=prefix, near_cache=1000, stats_interval=0)
    warm(lambda: f(1), f.stats)
    old.backend().read(f"{prefix}:late", [])  # a late read on the replaced backend
    time.sleep(0.2)
    assert near_threads(prefix) == 1


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # its data connections: collected
def test_a_registry_dropped_without_close_stops_its_change_stream(
        deployment: Deployment, prefix: str) -> None:
    # one registry per job, never closed: its stream's thread and connections (and on
    # Sentinel the watch of the primary) end once the registry is collected (its data
    # connections are closed by the collector, as any redis-py client's)
    def job() -> None:
        reg = Registry(deployment.url, prefix=prefix, near_cache=1000, stats_interval=0)

        @reg.cached(ttl=60)
        def f(x: int) -> int:
            return x

        warm(lambda: f(1), f.stats)

    def watches() -> tuple[int, int]:  # other tests' registries may hold some: count what
        names = [t.name for t in threading.enumerate()]  # is added (the watch; its pushes)
        return names.count("cachedeco-primary-watch"), names.count("cachedeco-sentinel-push")

    before = watches()
    for _ in range(3):
        job()
    gc.collect()
    poll(lambda: near_threads(prefix) == 0, timeout=5.0)
    poll(lambda: all(now <= then for now, then in zip(watches(), before, strict=True)),
         timeout=5.0)


@pytest.mark.deployments("redis")
def test_a_change_kept_for_recovery_drops_the_near_value(
        make_registry: Callable[..., Registry], deployment: Deployment,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The breaker is open (failures elsewhere) while the change stream is healthy: the write
    # is kept for the recovery without reaching Redis, and nothing reports it to the stream.
    # The recovery's worker is held back (it probes at once and would land the change, which
    # the stream would then report).
    monkeypatch.setattr(Retrying, "kick", lambda self, sync: None)
    reg = near_registry(make_registry, deployment, breaker_threshold=1, breaker_cooldown=30)
    rows = {1: "old"}

    @reg.cached(ttl=60)
    def get(x: int) -> str:
        return rows[x]

    @write_through(get)
    def put(x: int, value: str) -> str:
        rows[x] = value
        return value

    warm(lambda: get(1), get.stats)
    reg.breaker("default").failure()
    assert reg.breaker("default").open()
    put(1, "new")
    assert reg.stats().recoveries_pending == 1
    assert get(1) == "new"


def test_a_renewal_kept_for_recovery_empties_the_near_cache(
        make_registry: Callable[..., Registry], deployment: Deployment,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The lineage counter went back (an older dataset): every entry is renewed, one change
    # for the whole prefix, held until it lands; the near cache must not serve meanwhile.
    monkeypatch.setattr(Retrying, "kick", lambda self, sync: None)  # it does not land here
    reg = near_registry(make_registry, deployment)
    rows = {1: "old"}

    @reg.cached(ttl=60)
    def get(x: int) -> str:
        return rows[x]

    warm(lambda: get(1), get.stats)
    rows[1] = "new"
    reg.recovery.renew_all("default")
    assert reg.stats().recoveries_pending == 1
    assert get(1) == "new"


@pytest.mark.deployments("redis")
def test_a_read_racing_a_kept_change_never_installs_the_old_value(
        make_registry: Callable[..., Registry], deployment: Deployment,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A drop fails once (a blip; the breaker stays closed, reads go on reaching Redis) and is
    # kept for the recovery, whose worker is held back: Redis keeps the old entry meanwhile.
    # Each time the near cache is told of the change, a read runs right after: one that began
    # before the change was held reads Redis and would install the old value for later hits.
    reg = near_registry(make_registry, deployment)
    rows = {1: "old"}

    @reg.cached(ttl=60)
    def get(x: int) -> str:
        return rows[x]

    warm(lambda: get(1), get.stats)
    slot = reg.slot("default")
    inner, store = slot.backend().inner, slot.near
    assert store is not None
    real_invalidate, real_changed = inner.invalidate, store.changed

    def blip(*args: Any) -> int:
        monkeypatch.setattr(inner, "invalidate", real_invalidate)
        raise redis.ConnectionError("a blip")

    def changed_then_read(names: Any) -> None:
        real_changed(names)
        racing = threading.Thread(target=get, args=(1,))
        racing.start()
        racing.join()

    monkeypatch.setattr(inner, "invalidate", blip)
    monkeypatch.setattr(store, "changed", changed_then_read)
    monkeypatch.setattr(Retrying, "kick", lambda self, sync: None)
    rows[1] = "new"
    assert get.invalidate(1) is False  # kept for the recovery
    assert reg.stats().recoveries_pending == 1
    assert [get(1) for _ in range(3)] == ["new"] * 3
