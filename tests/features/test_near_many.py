"""``@cached_many`` behind a near cache, on every Redis deployment: ids whose values are kept
near are served without a command, the others are read in one round trip and kept; a change
this process makes is never followed by the old value, another client's reaches it; and an
entry shared with a ``@cached`` reader of another return type is decoded by each to its own
type."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from cachedeco import Registry
from tests.support.commands import commandstats, ran
from tests.support.deployments import SERVERS, Deployment
from tests.support.near import TRACKER, awarm, near_registry, warm
from tests.support.polling import poll

pytestmark = pytest.mark.deployments(*SERVERS)


@dataclasses.dataclass
class User:
    id: int
    name: str


def test_ids_kept_near_send_no_command_and_the_others_one_read(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = near_registry(make_registry, deployment)
    calls: list[list[int]] = []

    @reg.cached_many(ttl=60, key="user:{id}", tags=["user:{id}", "users"])
    def users(ids: list[int]) -> dict[int, User]:
        calls.append(list(ids))
        return {i: User(i, f"u{i}") for i in ids}

    warm(lambda: users([1, 2, 3]), users.stats)
    stats, before = users.stats(), commandstats(deployment.raw)
    for _ in range(50):
        assert users([3, 1, 2]) == {3: User(3, "u3"), 1: User(1, "u1"), 2: User(2, "u2")}
    assert ran(before, commandstats(deployment.raw), ignore=TRACKER) == {}
    assert users.stats().near_hits - stats.near_hits == 150
    assert users.stats().hits - stats.hits == 150
    assert calls == [[1, 2, 3]]

    assert users([1, 4]) == {1: User(1, "u1"), 4: User(4, "u4")}  # 1 near, 4 loaded
    assert calls[-1] == [4]
    warm(lambda: users([4]), users.stats)
    before = commandstats(deployment.raw)
    assert users([1, 2, 3, 4]) == {i: User(i, f"u{i}") for i in (1, 2, 3, 4)}
    assert ran(before, commandstats(deployment.raw), ignore=TRACKER) == {}


def test_this_process_never_serves_the_old_value_after_its_change(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = near_registry(make_registry, deployment)
    names = {1: "a", 2: "b"}

    @reg.cached_many(ttl=60, key="user:{id}", tags=["user:{id}", "users"])
    def users(ids: list[int]) -> dict[int, str]:
        return {i: names[i] for i in ids}

    @reg.cached(ttl=60, key="user:{id}", tags=["user:{id}", "users"])
    def user(id: int) -> str:
        return names[id]

    warm(lambda: users([1, 2]), users.stats)
    names[1] = "a2"
    reg.invalidate_tags("user:1")
    assert users([1, 2]) == {1: "a2", 2: "b"}
    warm(lambda: users([1, 2]), users.stats)
    names[2] = "b2"
    user.invalidate(2)
    assert users([1, 2]) == {1: "a2", 2: "b2"}
    warm(lambda: users([1, 2]), users.stats)
    names.update({1: "a3", 2: "b3"})
    reg.invalidate_tags("users")
    assert users([1, 2]) == {1: "a3", 2: "b3"}


def test_another_clients_change_reaches_the_ids_kept_near(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = near_registry(make_registry, deployment)
    other = make_registry(deployment.url, stats_interval=0)  # another client, no near cache
    names = {1: "a", 2: "b"}

    @reg.cached_many(ttl=60, key="user:{id}", tags=["user:{id}"])
    def users(ids: list[int]) -> dict[int, str]:
        return {i: names[i] for i in ids}

    @reg.cached(ttl=60, key="user:{id}", tags=["user:{id}"])
    def user(id: int) -> str:  # names the entries' keys
        return names[id]

    warm(lambda: users([1, 2]), users.stats)
    names[2] = "b2"
    other.invalidate_tags("user:2")
    poll(lambda: users([1, 2]) == {1: "a", 2: "b2"}, timeout=5.0)
    warm(lambda: users([1, 2]), users.stats)
    names[1] = "a2"
    assert deployment.raw.delete(user.key(1)) == 1
    poll(lambda: users([1, 2]) == {1: "a2", 2: "b2"}, timeout=5.0)


def test_an_entry_shared_with_a_cached_reader_is_decoded_by_each_to_its_own_type(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = near_registry(make_registry, deployment)

    @reg.cached_many(ttl=60, key="user:{id}")
    def users(ids: list[int]) -> dict[int, User]:
        return {i: User(i, "n") for i in ids}

    @reg.cached(ttl=60, key="user:{id}")
    def raw_user(id: int) -> dict[str, object]:
        return {"id": id, "name": "n"}

    warm(lambda: users([7]), users.stats)
    assert raw_user(7) == {"id": 7, "name": "n"}  # the entry users stored: read as a dict
    warm(lambda: raw_user(7), raw_user.stats)
    assert users([7]) == {7: User(7, "n")}
    assert raw_user(7) == {"id": 7, "name": "n"}


def test_an_entry_shared_with_a_cached_reader_of_the_same_type_is_near_for_both(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    """Decoded alike (both to ``User``): what one of them kept near is the other's near hit,
    so a batch warms the single reader and the other way round."""
    reg = near_registry(make_registry, deployment)
    loads: list[object] = []

    @reg.cached_many(ttl=60, key="user:{id}", tags=["user:{id}"])
    def users(ids: list[int]) -> dict[int, User]:
        loads.append(list(ids))
        return {i: User(i, "n") for i in ids}

    @reg.cached(ttl=60, key="user:{user_id}", tags=["user:{user_id}"])
    def user(user_id: int) -> User:
        loads.append(user_id)
        return User(user_id, "n")

    warm(lambda: users([1, 2]), users.stats)
    before, hits = commandstats(deployment.raw), user.stats().near_hits
    assert [user(1), user(2)] == [User(1, "n"), User(2, "n")]
    assert user.stats().near_hits - hits == 2
    assert ran(before, commandstats(deployment.raw), ignore=TRACKER) == {}
    warm(lambda: user(3), user.stats)
    before, hits = commandstats(deployment.raw), users.stats().near_hits
    assert users([1, 2, 3]) == {i: User(i, "n") for i in (1, 2, 3)}
    assert users.stats().near_hits - hits == 3
    assert ran(before, commandstats(deployment.raw), ignore=TRACKER) == {}
    assert loads == [[1, 2], 3]


@pytest.mark.deployments("redis", "cluster")
async def test_async_ids_kept_near_send_no_command(
        amake_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = near_registry(amake_registry, deployment)
    calls: list[list[int]] = []

    @reg.cached_many(ttl=60, key="user:{id}", tags=["user:{id}"])
    async def users(ids: list[int]) -> dict[int, User]:
        calls.append(list(ids))
        return {i: User(i, f"u{i}") for i in ids}

    await awarm(lambda: users([1, 2]), users.stats)
    before = commandstats(deployment.raw)
    for _ in range(20):
        assert await users([2, 1]) == {2: User(2, "u2"), 1: User(1, "u1")}
    assert ran(before, commandstats(deployment.raw), ignore=TRACKER) == {}
    assert calls == [[1, 2]]
    await reg.ainvalidate_tags("user:2")
    assert await users([1, 2]) == {1: User(1, "u1"), 2: User(2, "u2")}
    assert calls == [[1, 2], [2]]
