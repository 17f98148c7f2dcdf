"""Checked by mypy and pyright in tests/unit/test_typing.py: decorated signatures and
awaitability survive. ``# E:`` marks a line that must fail; ``# R:`` and ``# P:`` above a
``reveal_type`` line what mypy and pyright must reveal (they spell parameters differently)."""

from datetime import timedelta
from typing import assert_type, reveal_type

import cachedeco
from cachedeco import Stats
from cachedeco.core.entry import Miss


@cachedeco.cached(ttl=60, tags=["user:{user_id}"])
def get_user(user_id: int, *, full: bool = False) -> dict[str, int]:
    return {"id": user_id}


@cachedeco.cached(ttl=60)
async def aget_user(user_id: int) -> list[str]:
    return [str(user_id)]


@cachedeco.cached
def bare(x: str) -> str:
    return x


async def main() -> None:
    assert_type(get_user(1), dict[str, int])
    assert_type(get_user(1, full=True), dict[str, int])
    assert_type(get_user.key(1), str)
    assert_type(get_user.invalidate(1), bool)
    assert_type(get_user.stats(), Stats)
    assert_type(get_user.refresh(2), dict[str, int])
    assert_type(await aget_user(1), list[str])
    assert_type(await aget_user.invalidate(1), bool)
    assert_type(await aget_user.refresh(1), list[str])
    assert_type(aget_user.key(1), str)
    assert_type(bare("a"), str)
    get_user("x")  # E: wrong argument type
    await aget_user(1, 2)  # E: too many arguments


# --- get/set/MISS, ttl forms, cached_many -----------------------------------------------------

@cachedeco.cached(ttl=timedelta(minutes=5))
def by_timedelta(x: int) -> int:
    return x


@cachedeco.cached(ttl=lambda result: 30 if result else 5)
async def by_result(x: int) -> bool:
    return bool(x)


@cachedeco.cached_many(ttl=60, key="user:{id}", tags=["user:{id}", "users"])
def get_users(user_ids: list[int]) -> dict[int, str]:
    return {i: str(i) for i in user_ids}


@cachedeco.cached_many(key="user:{id}")
async def aget_users(user_ids: list[int]) -> dict[int, str]:
    return {i: str(i) for i in user_ids}


reg = cachedeco.Registry("memory://", prefix="sample")


@reg.cached(ttl=60)
def on_registry(x: int) -> float:
    return float(x)


@reg.cached
async def bare_on_registry(x: str) -> bytes:
    return x.encode()


@reg.cached_many(key="n:{id}")
def many_on_registry(ids: list[str]) -> dict[str, int]:
    return {i: len(i) for i in ids}


@reg.write_through(on_registry)
def write_on_registry(x: int) -> float:
    return float(x)


# --- methods keep their bound signature --------------------------------------------------------

class Repo:
    @cachedeco.cached(ttl=60)
    def find(self, item_id: int, *, deep: bool = False) -> list[int]:
        return [item_id]

    @reg.cached
    async def afind(self, item_id: int) -> str:
        return str(item_id)

    @cachedeco.cached(ttl=60)
    @classmethod
    def count(cls, kind: str) -> int:
        return len(kind)

    @cachedeco.cached_many(key="repo:{id}")
    async def load_many(self, ids: list[int]) -> dict[int, bytes]:
        return {i: b"" for i in ids}


async def more() -> None:
    assert_type(by_timedelta(1), int)
    assert_type(await by_result(1), bool)
    assert_type(get_user.get(1), dict[str, int] | Miss)
    assert_type(await aget_user.get(1), list[str] | Miss)
    assert_type(get_user.set({"id": 1}, 1), None)
    assert_type(await aget_user.set(["a"], 1), None)
    value = get_user.get(1)
    if value is not cachedeco.MISS:
        assert_type(value, dict[str, int])
    assert_type(get_users([1, 2]), dict[int, str])
    assert_type(await aget_users([1]), dict[int, str])
    assert_type(get_users.key(7), str)
    assert_type(get_users.invalidate(7), bool)
    assert_type(await aget_users.invalidate(7), bool)
    assert_type(on_registry(1), float)
    assert_type(await bare_on_registry("a"), bytes)
    assert_type(many_on_registry(["a"]), dict[str, int])
    assert_type(write_on_registry(2), float)
    repo = Repo()
    assert_type(repo.find(1), list[int])
    assert_type(repo.find(1, deep=True), list[int])
    assert_type(repo.find.key(1), str)
    assert_type(repo.find.get(1), list[int] | Miss)
    assert_type(repo.find.set([1], 1), None)
    assert_type(Repo.find(repo, 1), list[int])
    assert_type(await repo.afind(1), str)
    assert_type(await repo.afind.refresh(1), str)
    assert_type(Repo.count("a"), int)
    assert_type(repo.count("a"), int)
    assert_type(Repo.count.key("a"), str)
    assert_type(await repo.load_many([1]), dict[int, bytes])
    # R: BoundCachedFunction[[item_id: int, *, deep: bool =], list[int]]
    # P: BoundCachedFunction[(item_id: int, *, deep: bool = False), list[int]]
    reveal_type(repo.find)
    # R: BoundCachedFunction[[kind: str], int]
    # P: BoundCachedFunction[(kind: str), int]
    reveal_type(Repo.count)
    # R: AsyncBoundCachedFunction[[item_id: int], str]
    # P: AsyncBoundCachedFunction[(item_id: int), str]
    reveal_type(repo.afind)
    repo.find("x")  # E: wrong argument type through an instance
    repo.find.set("x", 1)  # E: set takes the return type
    Repo.count(1)  # E: wrong argument type through the class
    get_users(["a"])  # E: wrong id type
    reg.cached(ttl="soon")  # E: not a TTL
    with cachedeco.disabled() as off:
        assert_type(off, cachedeco.Registry)
    with reg.disabled():
        pass
