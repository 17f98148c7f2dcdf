"""Checked by mypy in test_typing.py: decorated signatures and awaitability survive."""

from typing import assert_type

import cachedeco
from cachedeco import Stats


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
