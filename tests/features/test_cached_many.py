"""``@cached_many`` on memory://, Redis and Cluster, sync and async: one read for all ids
(one ``MGET`` on a server), one call with only the missing ids, entries shared with a
``@cached`` reader of the same key template and tags, single-flight and ``lock=True`` per
id, and ``invalidate_tags`` dropping an entry for both readers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from cachedeco import ConfigurationError, Registry, cached_many
from cachedeco.backends.redis._sync.leases import RedisLeases
from tests.support import by_url as support
from tests.support.commands import ran
from tests.support.polling import apoll

Make = Callable[..., Registry]
url = support.url  # the deployment fixture: memory://, Redis, Cluster
stats_client = support.stats_client


@dataclass
class User:
    id: int
    name: str


def test_one_read_and_one_call_with_the_missing_ids(url: str, make_registry: Make,
                                                    prefix: str, stats_client: Any) -> None:
    reg = make_registry(url, prefix=prefix)
    calls: list[list[int]] = []

    @reg.cached_many(ttl=600, key="user:{id}", tags=["user:{id}", "users"])
    def users(user_ids: list[int]) -> dict[int, User]:
        calls.append(list(user_ids))
        return {i: User(i, f"u{i}") for i in user_ids if i != 13}  # 13 does not exist

    assert users([1, 2, 3]) == {i: User(i, f"u{i}") for i in (1, 2, 3)}
    got = users(iter([4, 2, 1, 3, 4, 13]))  # any iterable; duplicates asked once
    assert list(got) == [4, 2, 1, 3]  # in the order asked; 13 left out
    assert all(type(v) is User for v in got.values())
    assert calls == [[1, 2, 3], [4, 13]]
    before = support.commands(stats_client)
    assert users([1, 2, 3, 4]) == {i: User(i, f"u{i}") for i in (1, 2, 3, 4)}
    after = support.commands(stats_client)
    served = ran(before, after)  # a lineage beat (INCR) may come meanwhile: left out
    if url.startswith("redis://"):  # one round trip: a single MGET of entries and tags
        assert served == {"mget": 1}
    elif stats_client is not None:  # a cluster: a GET per entry, one MGET for the tags
        assert served == {"get": 4, "mget": 1}
    assert users([]) == {}
    assert calls == [[1, 2, 3], [4, 13]]  # all hits (and no ids): no call
    assert users([13]) == {} and calls[-1] == [13]  # what was left out is not cached


async def test_async_one_call_with_the_missing_ids(url: str, amake_registry: Make,
                                                   prefix: str) -> None:
    reg = amake_registry(url, prefix=prefix)
    calls: list[list[int]] = []

    @reg.cached_many(key="sq:{id}")
    async def squares(ids: list[int]) -> dict[int, int]:
        calls.append(ids)
        return {i: i * i for i in ids}

    assert await squares([1, 2]) == {1: 1, 2: 4}
    assert await squares([2, 3, 1]) == {2: 4, 3: 9, 1: 1}
    assert calls == [[1, 2], [3]]
    assert await squares.invalidate(2) is True
    assert await squares([1, 2]) == {1: 1, 2: 4} and calls[-1] == [2]
    await squares.invalidate_all()
    assert await squares([1]) == {1: 1} and calls[-1] == [1]


def test_entries_are_shared_with_a_cached_reader(url: str, make_registry: Make,
                                                 prefix: str) -> None:
    reg = make_registry(url, prefix=prefix)
    loads: list[str] = []

    @reg.cached_many(key="user:{id}", tags=["users", "user:{id}"])  # tags in any order
    def users(user_ids: list[int]) -> dict[int, User]:
        loads.append("many")
        return {i: User(i, "batch") for i in user_ids}

    @reg.cached(key="user:{user_id}", tags=["user:{user_id}", "users"])
    def user(user_id: int) -> User:
        loads.append("one")
        return User(user_id, "single")

    assert users.key(7) == user.key(7) == f"{prefix}:user:7"
    users([7, 8])
    assert user(7) == User(7, "batch") and type(user(7)) is User  # the batch's entry
    user(9)
    assert users([8, 9]) == {8: User(8, "batch"), 9: User(9, "single")}
    assert loads == ["many", "one"]
    reg.invalidate_tags("user:7")  # dropped for both readers
    assert user(7) == User(7, "single")
    assert users([7]) == {7: User(7, "single")}  # ... and refilled by either
    reg.invalidate_tags("users")
    assert users([7, 8, 9]) == {i: User(i, "batch") for i in (7, 8, 9)}
    assert loads == ["many", "one", "one", "many"]


def test_single_flight_per_id(url: str, make_registry: Make, prefix: str) -> None:
    reg = make_registry(url, prefix=prefix)
    loaded: list[int] = []
    lock = threading.Lock()
    gate = threading.Barrier(4, timeout=30)

    @reg.cached_many(key="n:{id}")
    def numbers(ids: list[int]) -> dict[int, int]:
        time.sleep(0.2)  # long enough for the other callers to join
        with lock:
            loaded.extend(ids)
        return {i: -i for i in ids}

    def call(ids: list[int]) -> dict[int, int]:
        gate.wait()
        return numbers(ids)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, [[1, 2, 3], [2, 3, 4], [3, 4, 5], [1, 5]]))
    assert results[0] == {1: -1, 2: -2, 3: -3} and results[3] == {1: -1, 5: -5}
    assert sorted(loaded) == [1, 2, 3, 4, 5]  # each id loaded once


async def test_async_single_flight_per_id(url: str, amake_registry: Make,
                                          prefix: str) -> None:
    reg = amake_registry(url, prefix=prefix)
    loaded: list[int] = []

    @reg.cached_many(key="n:{id}")
    async def numbers(ids: list[int]) -> dict[int, int]:
        await asyncio.sleep(0.1)
        loaded.extend(ids)
        return {i: -i for i in ids}

    results = await asyncio.gather(numbers([1, 2]), numbers([2, 3]), numbers([3, 1]))
    assert results == [{1: -1, 2: -2}, {2: -2, 3: -3}, {3: -3, 1: -1}]
    assert sorted(loaded) == [1, 2, 3]


async def test_a_cancelled_leader_hands_its_ids_to_one_new_load(url: str, amake_registry: Make,
                                                                prefix: str) -> None:
    reg = amake_registry(url, prefix=prefix)
    called: list[list[int]] = []
    started, never = asyncio.Event(), asyncio.Event()

    @reg.cached_many(key="c:{id}")
    async def numbers(ids: list[int]) -> dict[int, int]:
        called.append(sorted(ids))
        started.set()
        if len(called) == 1:
            await never.wait()  # the first load lasts until its caller is cancelled
        await asyncio.sleep(0.1)
        return {i: -i for i in ids}

    leader = asyncio.create_task(numbers([1, 2]))
    await asyncio.wait_for(started.wait(), 10)  # the leader is loading (a cluster reads slower)
    waiters = [asyncio.create_task(numbers([1, 2])) for _ in range(4)]
    await apoll(lambda: reg.stats().singleflight_joins == 8, timeout=10)  # 4 waiters, 2 ids
    leader.cancel()
    assert await asyncio.gather(*waiters) == [{1: -1, 2: -2}] * 4
    assert called == [[1, 2], [1, 2]]  # the cancelled one, and one for every waiter


def test_an_error_reaches_every_caller_and_stores_nothing(url: str, make_registry: Make,
                                                          prefix: str) -> None:
    reg = make_registry(url, prefix=prefix)
    fail = [True]

    @reg.cached_many(key="e:{id}")
    def flaky(ids: list[int]) -> dict[int, int]:
        if fail[0]:
            raise LookupError("database down")
        return dict.fromkeys(ids, 0)

    with pytest.raises(LookupError):
        flaky([1, 2])
    fail[0] = False
    assert flaky([1, 2]) == {1: 0, 2: 0}
    assert reg.stats().load_errors == 1 and reg.stats().loads == 1


@pytest.mark.parametrize("deployment", ["redis", "cluster"])
def test_lock_per_id_across_processes(deployment: str, make_registry: Make, prefix: str,
                                      redis_url: str, cluster_url: str) -> None:
    """Two registries on one server stand for two processes: each id is loaded once."""
    target = redis_url if deployment == "redis" else cluster_url
    loaded: list[int] = []
    guard = threading.Lock()
    gate = threading.Barrier(2, timeout=30)

    def make(reg: Registry) -> Callable[[list[int]], dict[int, int]]:
        @reg.cached_many(key="l:{id}", lock=True)
        def load(ids: list[int]) -> dict[int, int]:
            time.sleep(0.3)
            with guard:
                loaded.extend(ids)
            return {i: i for i in ids}

        return load

    one = make(make_registry(target, prefix=prefix, lock_timeout=20))
    two = make(make_registry(target, prefix=prefix, lock_timeout=20))

    def call(load: Callable[[list[int]], dict[int, int]], ids: list[int]) -> dict[int, int]:
        gate.wait()
        return load(ids)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(call, one, [1, 2, 3])
        second = pool.submit(call, two, [3, 2, 4])
        assert first.result(60) == {1: 1, 2: 2, 3: 3}
        assert second.result(60) == {3: 3, 2: 2, 4: 4}
    assert sorted(loaded) == [1, 2, 3, 4]



@pytest.mark.parametrize("deployment", ["redis", "cluster"])
def test_lock_reads_what_landed_between_its_read_and_its_leases(
        deployment: str, make_registry: Make, prefix: str, *, redis_url: str, cluster_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller whose read missed while another process was storing takes the ids' leases
    after that one released them: it reads the values that landed instead of loading them
    once more (as the single-entry lock does)."""
    target = redis_url if deployment == "redis" else cluster_url
    loaded: list[list[int]] = []

    def make(reg: Registry) -> Callable[[list[int]], dict[int, int]]:
        @reg.cached_many(key="lr:{id}", lock=True)
        def load(ids: list[int]) -> dict[int, int]:
            loaded.append(sorted(ids))
            return {i: i * 10 for i in ids}

        return load

    one = make(make_registry(target, prefix=prefix, lock_timeout=20))
    two = make(make_registry(target, prefix=prefix, lock_timeout=20))
    acquire = RedisLeases.acquire
    between: list[bool] = []

    def late(self: RedisLeases, *args: Any, **kwargs: Any) -> Any:
        if not between:  # two's read missed; one loads, stores and releases before two asks
            between.append(True)
            assert one([1, 2, 3]) == {1: 10, 2: 20, 3: 30}
        return acquire(self, *args, **kwargs)

    monkeypatch.setattr(RedisLeases, "acquire", late)
    assert two([1, 2, 3]) == {1: 10, 2: 20, 3: 30}
    assert loaded == [[1, 2, 3]]

@pytest.mark.parametrize("deployment", ["redis", "cluster"])
async def test_async_lock_per_id_across_processes(deployment: str, amake_registry: Make,
                                                  prefix: str, redis_url: str,
                                                  cluster_url: str) -> None:
    """The asyncio form: the second caller loads its own id (4) at once and waits for the
    two the first holds (2, 3), which it then reads; each id is loaded once."""
    target = redis_url if deployment == "redis" else cluster_url
    loaded: list[list[int]] = []

    def make(reg: Registry) -> Callable[[list[int]], Any]:
        @reg.cached_many(key="al:{id}", lock=True)
        async def load(ids: list[int]) -> dict[int, int]:
            loaded.append(sorted(ids))
            await asyncio.sleep(0.3)
            return {i: i * 10 for i in ids}

        return load

    one = make(amake_registry(target, prefix=prefix, lock_timeout=20))
    two = make(amake_registry(target, prefix=prefix, lock_timeout=20))

    async def second() -> dict[int, int]:
        await apoll(lambda: loaded == [[1, 2, 3]])  # the first holds its leases
        return dict(await two([3, 2, 4]))

    first, other = await asyncio.gather(one([1, 2, 3]), second())
    assert first == {1: 10, 2: 20, 3: 30}
    assert other == {3: 30, 2: 20, 4: 40}
    assert loaded == [[1, 2, 3], [4]]

class Repository:
    def __init__(self) -> None:
        self.calls = 0

    @cached_many(ttl=60, key="repo:{id}")
    async def load(self, ids: list[str]) -> dict[str, str]:
        self.calls += 1
        return {i: i.upper() for i in ids}


async def test_a_repository_method(amake_registry: Make, prefix: str) -> None:
    repo = Repository()
    assert await repo.load(["a", "b"]) == {"a": "A", "b": "B"}
    assert await repo.load(ids=["b", "a"]) == {"b": "B", "a": "A"}
    assert repo.calls == 1
    assert repo.load.key("a").endswith(":repo:a")
    assert await repo.load.invalidate("a") is True
    await repo.load(["a"])
    assert repo.calls == 2


def test_bad_uses_are_configuration_errors(make_registry: Make, prefix: str) -> None:
    reg = make_registry("memory://", prefix=prefix)
    with pytest.raises(ConfigurationError, match="must use"):
        cached_many(key="constant")
    with pytest.raises(ConfigurationError, match="not a parameter"):
        cached_many(key="user:{user_id}")
    with pytest.raises(ConfigurationError, match="not a parameter"):
        cached_many(key="u:{id}", tags=["t:{other}"])
    with pytest.raises(ConfigurationError, match="one parameter"):
        cached_many(key="u:{id}")(lambda ids, extra: {})
    with pytest.raises(TypeError):
        cached_many(lambda ids: {})  # type: ignore[call-arg] # key= is required

    @reg.cached_many(key="u:{id}")
    def not_a_mapping(ids: list[int]) -> list[int]:  # type: ignore[type-var]
        return ids

    with pytest.raises(ConfigurationError, match="mapping"):
        not_a_mapping([1])
    with pytest.raises(ConfigurationError, match="iterable of ids"):
        not_a_mapping("12")
    with pytest.raises(ConfigurationError, match="iterable of ids, not the int 12"):
        not_a_mapping(12)  # type: ignore[arg-type]


async def test_on_sentinel(make_registry: Make, amake_registry: Make, prefix: str,
                           sentinel_url: str) -> None:
    """Sentinel's primary serves the one-MGET read too, sync and async."""
    calls: list[list[int]] = []
    sync_reg = make_registry(sentinel_url, prefix=prefix)
    async_reg = amake_registry(sentinel_url, prefix=prefix)

    def load(ids: list[int]) -> dict[int, int]:
        calls.append(ids)
        return {i: i + 100 for i in ids}

    async def aload(ids: list[int]) -> dict[int, int]:
        return load(ids)

    many = sync_reg.cached_many(key="s:{id}", tags=["s"])(load)
    amany = async_reg.cached_many(key="s:{id}", tags=["s"])(aload)
    assert many([1, 2]) == {1: 101, 2: 102}
    assert await amany([2, 3]) == {2: 102, 3: 103}  # the same entries, another flavour
    assert calls == [[1, 2], [3]]
