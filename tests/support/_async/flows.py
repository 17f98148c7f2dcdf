"""The cache flows every deployment must serve, checked on one registry."""

from __future__ import annotations

import collections
from typing import Any

import cachedeco
from cachedeco import Registry

__all__ = ["check_flows"]


class _Users:
    """Cached users and teams, a write-through saver, and how often each was loaded."""

    def __init__(self, reg: Registry) -> None:
        self.calls: collections.Counter[tuple[str, int]] = collections.Counter()
        names: dict[int, str] = {}

        @cachedeco.cached(registry=reg, key="user:{uid}", tags=["user:{uid}", "users"])
        async def user(uid: int) -> dict[str, Any]:
            self.calls["user", uid] += 1
            return {"id": uid, "name": names.get(uid, "?")}

        @cachedeco.cached(registry=reg, key="team:{tid}", tags=["team:{tid}"])
        async def team(tid: int) -> list[int]:
            self.calls["team", tid] += 1
            return [tid, tid + 1]

        @cachedeco.write_through(user, registry=reg, invalidate=["team:{tid}"])
        async def save_user(uid: int, tid: int, name: str) -> dict[str, Any]:
            names[uid] = name
            return {"id": uid, "name": name}

        self.user, self.team, self.save_user = user, team, save_user

    async def read_all(self) -> None:
        """user(1), user(2) and team(1)."""
        await self.user(1)
        await self.user(2)
        await self.team(1)


async def check_flows(reg: Registry, raw: Any, prefix: str) -> None:
    """miss → hit, tag exactness, f.invalidate, f.invalidate_all, write_through,
    invalidate_pattern and clear on ``reg``; with a ``raw`` client of the server, clear() must
    spare a key outside the prefix."""
    users = _Users(reg)
    await _hits_and_tags(reg, users)
    await _invalidations(users)
    await _writes_patterns_and_clear(reg, users, raw, prefix)
    assert users.user.stats().backend_errors == 0


async def _hits_and_tags(reg: Registry, users: _Users) -> None:
    calls, user = users.calls, users.user
    # miss, then hit
    assert await user(1) == {"id": 1, "name": "?"}
    assert await user(1) == {"id": 1, "name": "?"}
    assert calls["user", 1] == 1
    assert user.stats().hits == 1
    await user(2)
    await users.team(1)
    before = dict(calls)
    # a tag drops exactly its entries
    await reg.ainvalidate_tags("user:1")
    await users.read_all()
    assert dict(calls) == {**before, ("user", 1): 2}
    await reg.ainvalidate_tags("users")
    await users.read_all()
    assert dict(calls) == {**before, ("user", 1): 3, ("user", 2): 2}


async def _invalidations(users: _Users) -> None:
    calls, user = users.calls, users.user
    # one entry
    assert await user.invalidate(2) is True
    assert await user.invalidate(99) is False
    await user(1)
    await user(2)
    assert calls["user", 1] == 3 and calls["user", 2] == 3
    # every entry of one function
    await user.invalidate_all()
    await users.read_all()
    assert (calls["user", 1], calls["user", 2], calls["team", 1]) == (4, 4, 1)


async def _writes_patterns_and_clear(reg: Registry, users: _Users, raw: Any,
                                     prefix: str) -> None:
    calls, user, team = users.calls, users.user, users.team
    # write-through: the written record is served, the listed tag dropped
    assert await users.save_user(1, 1, "ada") == {"id": 1, "name": "ada"}
    assert await user(1) == {"id": 1, "name": "ada"} and calls["user", 1] == 4
    await team(1)
    assert calls["team", 1] == 2
    # a pattern
    for uid in range(10, 20):
        await user(uid)
    assert await reg.ainvalidate_pattern("user:1?") == 10
    await user(10)
    await user(1)
    assert calls["user", 10] == 2 and calls["user", 1] == 4
    # clear, sparing a key outside the prefix
    foreign = f"{prefix}-foreign"
    if raw is not None:
        raw.set(foreign, b"keep")
    assert await reg.aclear() > 0
    await user(1)
    await team(1)
    assert calls["user", 1] == 5 and calls["team", 1] == 3
    if raw is not None:
        assert raw.get(foreign) == b"keep"
