"""The near hit compiled when a function is bound to a registry with a near cache: it serves
what the generic read would (the same values, counted as hits and near hits, no command sent,
without entering the generic read), keys calls apart as the generic read does, and leaves to
the generic read everything else: a change made here or by another client, a registry
configured again, a function with early refresh, a lost change stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cachedeco import Registry, write_through
from cachedeco.flows._async import read as read_async
from cachedeco.flows._sync import read as read_sync
from cachedeco.flows.spec import spec_of
from tests.support.commands import commandstats, ran
from tests.support.deployments import SERVERS, Deployment
from tests.support.near import TRACKER, awarm, near_registry, warm
from tests.support.polling import apoll, poll
from tests.support.versioned import item_readers

pytestmark = pytest.mark.deployments("redis", "cluster")

THREE_TAGS = ["a:{x}", "b", "c:{x}"]
KEY = "k" * 32


@pytest.fixture
def generic() -> Iterator[list[str]]:
    """The names of the functions whose calls entered the generic read (sync or async)."""
    entered: list[str] = []
    sync_read, async_read = read_sync.get_or_load, read_async.get_or_load

    def counted(b: Any, func: Any, args: Any, kwargs: Any, looked: bool = False) -> Any:
        entered.append(b.name)
        return sync_read(b, func, args, kwargs, looked)

    async def acounted(b: Any, func: Any, args: Any, kwargs: Any, looked: bool = False) -> Any:
        entered.append(b.name)
        return await async_read(b, func, args, kwargs, looked)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(read_sync, "get_or_load", counted)
        patch.setattr(read_async, "get_or_load", acounted)
        yield entered


@pytest.mark.deployments(*SERVERS)
@pytest.mark.parametrize("tags", [[], THREE_TAGS], ids=["no tags", "3 tags"])
def test_compiled_near_hits_are_the_generic_reads_hits(
        make_registry: Callable[..., Registry], deployment: Deployment, tags: list[str],
        generic: list[str]) -> None:
    reg = near_registry(make_registry, deployment)
    loads: list[int] = []

    @reg.cached(ttl=60, tags=tags)
    def f(x: int) -> dict[str, int]:
        loads.append(x)
        return {"x": x}

    for x in (1, 2):
        warm(lambda x=x: f(x), f.stats)  # type: ignore[misc]
    assert spec_of(f).hit is not None
    generic.clear()
    before, stats = commandstats(deployment.raw), f.stats()
    assert [f(x) for x in (1, 2) for _ in range(100)] == [{"x": 1}] * 100 + [{"x": 2}] * 100
    assert ran(before, commandstats(deployment.raw), ignore=TRACKER) == {}
    assert generic == []  # never entered the generic read
    after = f.stats()
    assert (after.hits - stats.hits, after.near_hits - stats.near_hits) == (200, 200)
    assert after.misses == stats.misses
    # the generic read serves the same value, and counts it the same way
    spec = spec_of(f)
    assert read_sync.get_or_load(spec.bound(), spec.func, (1,), {}) == f(1)
    assert (f.stats().hits, f.stats().near_hits) == (after.hits + 2, after.near_hits + 2)
    assert sorted(loads) == [1, 2]
    assert reg.stats().near_hits == f.stats().near_hits


@pytest.mark.parametrize("tags", [[], THREE_TAGS], ids=["no tags", "3 tags"])
async def test_async_compiled_near_hits(amake_registry: Callable[..., Registry],
                                        deployment: Deployment, tags: list[str],
                                        generic: list[str]) -> None:
    reg = near_registry(amake_registry, deployment)
    loads: list[int] = []

    @reg.cached(ttl=60, tags=tags)
    async def f(x: int) -> list[int]:
        loads.append(x)
        return [x, x * 2]

    await awarm(lambda: f(3), f.stats)
    generic.clear()
    before, stats = commandstats(deployment.raw), f.stats()
    assert [await f(3) for _ in range(100)] == [[3, 6]] * 100
    assert ran(before, commandstats(deployment.raw), ignore=TRACKER) == {}
    assert generic == []
    after = f.stats()
    assert (after.hits - stats.hits, after.near_hits - stats.near_hits) == (100, 100)
    spec = spec_of(f)
    assert await read_async.get_or_load(spec.bound(), spec.func, (3,), {}) == [3, 6]
    assert f.stats().near_hits == after.near_hits + 1
    assert loads == [3]
    await f.invalidate(3)
    assert await f(3) == [3, 6]  # this process's change: loaded again, not near
    assert loads == [3, 3]
    assert f.stats().near_hits == after.near_hits + 1


def test_methods_and_keyword_arguments(make_registry: Callable[..., Registry],
                                       deployment: Deployment, generic: list[str]) -> None:
    reg = near_registry(make_registry, deployment)
    loads: list[tuple[str, int, int]] = []

    class Repo:
        def __init__(self, name: str) -> None:
            self.name = name

        @reg.cached(ttl=60, key="repo:{self.name}:{x}:{scale}", tags=["repo:{self.name}"])
        def get(self, x: int, *, scale: int = 1) -> str:
            loads.append((self.name, x, scale))
            return f"{self.name}:{x * scale}"

    a, b = Repo("a"), Repo("b")
    calls: list[tuple[Callable[[], str], str]] = [
        (lambda: a.get(1), "a:1"), (lambda: a.get(1, scale=3), "a:3"),
        (lambda: a.get(x=1, scale=3), "a:3"), (lambda: b.get(1), "b:1")]
    for call, _ in calls:
        warm(call, Repo.get.stats)
    generic.clear()
    before = commandstats(deployment.raw)
    for call, expected in calls * 20:
        assert call() == expected
    assert ran(before, commandstats(deployment.raw), ignore=TRACKER) == {}
    assert generic == []
    assert sorted(loads) == [("a", 1, 1), ("a", 1, 3), ("b", 1, 1)]


def test_a_key_callable_is_called_on_every_hit(make_registry: Callable[..., Registry],
                                               deployment: Deployment) -> None:
    reg = near_registry(make_registry, deployment)
    tenant = {"id": "t1"}

    @reg.cached(ttl=60, key=lambda x: f"{tenant['id']}:{x}")
    def f(x: int) -> str:
        return f"{tenant['id']}/{x}"

    warm(lambda: f(1), f.stats)
    tenant["id"] = "t2"  # the same argument, another key: never the first tenant's value
    assert f(1) == "t2/1"
    warm(lambda: f(1), f.stats)
    assert [f(1) for _ in range(20)] == ["t2/1"] * 20
    tenant["id"] = "t1"
    assert [f(1) for _ in range(20)] == ["t1/1"] * 20


def test_equal_arguments_of_other_types_have_keys_of_their_own(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = near_registry(make_registry, deployment)
    loads: list[Any] = []

    @reg.cached(ttl=60)
    def f(x: Any) -> str:
        loads.append(x)
        return type(x).__name__

    arguments: list[Any] = [1, True, 1.0, "1"]
    for argument in arguments:
        warm(lambda argument=argument: f(argument), f.stats)  # type: ignore[misc]
    before = f.stats().near_hits
    for _ in range(10):
        assert [f(argument) for argument in arguments] == ["int", "bool", "float", "str"]
    assert f.stats().near_hits - before == 40
    assert [type(x) for x in loads] == [int, bool, float, str]


def test_a_sensitive_function_hits_near(make_registry: Callable[..., Registry],
                                        deployment: Deployment, generic: list[str]) -> None:
    reg = near_registry(make_registry, deployment, encryption_key=KEY)
    loads: list[str] = []

    @reg.cached(ttl=60, sensitive=True)
    def f(name: str) -> str:
        loads.append(name)
        return name.upper()

    warm(lambda: f("alice"), f.stats)
    warm(lambda: f("bob"), f.stats)
    generic.clear()
    assert [f(n) for n in ("alice", "bob") * 20] == ["ALICE", "BOB"] * 20
    assert generic == []
    assert loads == ["alice", "bob"]


def _tag_key(deployment: Deployment, prefix: str, tag: str) -> bytes:
    """The Redis key of ``tag``'s token under ``prefix``, as stored (a cluster's carries a
    hash tag)."""
    (found,) = deployment.raw.scan_iter(match=f"*{prefix}:~tag:{tag}*")
    return found  # type: ignore[no-any-return]


def test_a_change_by_another_client_makes_the_next_calls_miss(
        make_registry: Callable[..., Registry], deployment: Deployment, prefix: str) -> None:
    reg = near_registry(make_registry, deployment)
    version = {"v": 0}

    @reg.cached(ttl=60, key="item:{x}", tags=["item:{x}", "items"])
    def f(x: int) -> int:
        return version["v"]

    for change in ("entry", "tag key"):
        warm(lambda: f(1), f.stats)
        misses = f.stats().misses
        version["v"] += 1
        if change == "entry":
            deployment.raw.delete(f.key(1))
        else:
            deployment.raw.delete(_tag_key(deployment, prefix, "item:1"))
        poll(lambda: f(1) == version["v"], timeout=5.0)
        assert all(f(1) == version["v"] for _ in range(50)), change
        assert f.stats().misses > misses, change


@pytest.mark.parametrize("tags", [[], THREE_TAGS], ids=["no tags", "3 tags"])
def test_this_process_never_serves_the_old_value_after_its_change(
        make_registry: Callable[..., Registry], deployment: Deployment,
        tags: list[str]) -> None:
    reg = near_registry(make_registry, deployment)
    version = {1: 0}

    @reg.cached(ttl=60, tags=tags)
    def f(x: int) -> int:
        return version[x]

    @write_through(f, registry=reg)
    def update(x: int) -> int:
        version[x] += 1
        return version[x]

    # (name, the change; whether the data changes before it, as a writer's would)
    changes: list[tuple[str, Callable[[], object], bool]] = [
        ("invalidate", lambda: f.invalidate(1), True),
        ("invalidate_all", f.invalidate_all, True),
        ("write_through", lambda: update(1), False),
    ]
    if tags:
        changes += [("invalidate_tags", lambda: reg.invalidate_tags("a:1"), True),
                    ("shared tag", lambda: reg.invalidate_tags("b"), True)]
    for name, change, bump in changes:
        warm(lambda: f(1), f.stats)
        old = f(1)
        if bump:
            version[1] += 1
        change()
        assert f(1) == version[1] != old, name


def test_configure_takes_effect(make_registry: Callable[..., Registry],
                                deployment: Deployment, prefix: str) -> None:
    reg = near_registry(make_registry, deployment)
    loads: list[int] = []

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        loads.append(x)
        return x * 10

    warm(lambda: f(1), f.stats)
    compiled = spec_of(f).hit
    reg.configure(deployment.url, prefix=prefix + "b", stats_interval=0)  # no near cache
    assert f(1) == 10 and loads == [1, 1]  # another prefix: a miss
    assert spec_of(f).hit is None
    hits = f.stats().near_hits
    before = commandstats(deployment.raw)
    assert [f(1) for _ in range(10)] == [10] * 10
    assert ran(before, commandstats(deployment.raw), ignore=TRACKER)  # read from Redis
    assert f.stats().near_hits == hits
    reg.configure(deployment.url, prefix=prefix, near_cache=10, stats_interval=0)
    warm(lambda: f(1), f.stats)  # the first prefix's entry, near again
    assert spec_of(f).hit not in (None, compiled)
    assert loads == [1, 1]
    with reg.disabled():
        assert f(1) == 10
    assert loads == [1, 1, 1]


def test_a_full_near_cache_takes_a_key_at_its_second_read(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = make_registry(deployment.url, near_cache=2, stats_interval=0)
    other = make_registry(deployment.url, stats_interval=0)  # another client, no near cache
    f, g = item_readers(reg, other, {"v": 1})
    store = reg.slot("default").near
    assert store is not None
    for x in (1, 2):
        warm(lambda x=x: f(x), f.stats)  # room: kept at once
    assert g(3) == 1  # stored by another client: f(3) reads it from Redis
    assert f(3) == 1
    assert sorted(store.entries()) == [f.key(1), f.key(2)]  # full: read, not kept
    warm(lambda: f(3), f.stats)  # read again: kept, the least recently used value goes
    assert sorted(store.entries()) == [f.key(2), f.key(3)]


def test_near_false_never_uses_it(make_registry: Callable[..., Registry],
                                  deployment: Deployment) -> None:
    reg = near_registry(make_registry, deployment)

    @reg.cached(ttl=60, key="shared:{x}")
    def near(x: int) -> int:
        return x

    @reg.cached(ttl=60, key="shared:{x}", near=False)
    def far(x: int) -> int:
        return x

    warm(lambda: near(1), near.stats)
    assert [far(1) for _ in range(10)] == [1] * 10
    assert spec_of(far).hit is None
    assert far.stats().near_hits == 0 and far.stats().hits == 10


def test_early_refresh_still_refreshes_from_near_hits(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = near_registry(make_registry, deployment)
    loads: list[int] = []

    @reg.cached(ttl=60, early_refresh=1e5)  # a load of 10 ms: refreshed on most hits
    def f(x: int) -> int:
        loads.append(x)
        time.sleep(0.01)
        return x

    assert f(1) == 1
    assert spec_of(f).hit is None  # hits may start a refresh: the generic read only

    def a_near_hit_refreshes() -> bool:
        before = f.stats()
        assert f(1) == 1
        after = f.stats()
        return (after.near_hits > before.near_hits
                and after.early_refreshes > before.early_refreshes)

    poll(a_near_hit_refreshes, timeout=10.0)
    poll(lambda: len(loads) > 1, timeout=5.0)  # the refresh ran


def test_a_lost_stream_serves_no_near_hits(make_registry: Callable[..., Registry],
                                           deployment: Deployment) -> None:
    reg = near_registry(make_registry, deployment)

    @reg.cached(ttl=60, tags=THREE_TAGS)
    def f(x: int) -> int:
        return x

    warm(lambda: f(1), f.stats)
    store = reg.slot("default").near
    assert store is not None
    store.lost()  # what the stream's thread does when its connection goes
    hits, near_hits = f.stats().hits, f.stats().near_hits
    before = commandstats(deployment.raw)
    assert [f(1) for _ in range(10)] == [1] * 10
    assert ran(before, commandstats(deployment.raw), ignore=TRACKER)  # read from Redis
    assert f.stats().near_hits == near_hits and f.stats().hits == hits + 10


@pytest.mark.deployments("redis")
def test_a_killed_stream_leaves_nothing_stale(make_registry: Callable[..., Registry],
                                              deployment: Deployment) -> None:
    reg = near_registry(make_registry, deployment)
    other = make_registry(deployment.url, stats_interval=0)  # another client, no near cache
    version = {"v": 0}
    f, _ = item_readers(reg, other, version)
    warm(lambda: f(1), f.stats)
    (tracking,) = [c for c in deployment.raw.client_list() if "t" in str(c.get("flags", ""))]
    deployment.raw.client_kill_filter(_id=tracking["id"])
    version["v"] += 1
    other.invalidate_tags("item:1")  # while the stream may still be down
    poll(lambda: f(1) == version["v"], timeout=5.0)
    assert all(f(1) == version["v"] for _ in range(50))
    warm(lambda: f(1), f.stats)  # near again once the stream is back


async def test_async_changes_reach_the_compiled_hit(amake_registry: Callable[..., Registry],
                                                    deployment: Deployment) -> None:
    reg = near_registry(amake_registry, deployment)
    other = amake_registry(deployment.url, stats_interval=0)
    version = {"v": 0}

    @reg.cached(ttl=60, key="item:{x}", tags=["item:{x}"])
    async def f(x: int) -> int:
        return version["v"]

    for change in ("own", "other"):
        await awarm(lambda: f(1), f.stats)
        version["v"] += 1
        if change == "own":
            await reg.ainvalidate_tags("item:1")
            assert await f(1) == version["v"]
        else:
            await other.ainvalidate_tags("item:1")
            end = time.monotonic() + 5.0
            while await f(1) != version["v"]:
                assert time.monotonic() < end, "timed out"
                await asyncio.sleep(0.005)
        assert [await f(1) for _ in range(50)] == [version["v"]] * 50
    await apoll(lambda: True)
