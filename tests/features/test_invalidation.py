"""``invalidate_pattern`` and ``clear`` on the servers: they stay within the registry's prefix
(even one full of glob characters) and spare cachedeco's own keys (tags, leases, queues) and
every foreign key; after ``close()`` every operation works again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cachedeco import Registry, cached
from tests.support.calls import Calls
from tests.support.deployments import ALL, REDIS_BACKENDS, Deployment

pytestmark = pytest.mark.deployments(*REDIS_BACKENDS)


def _scan(raw: Any, prefix: str) -> list[bytes]:
    return list(raw.scan_iter(match=f"{prefix}:*", count=1000))


def _fill(reg: Registry, calls: Calls) -> tuple[Any, Any]:
    @cached(registry=reg, key="user:{uid}")
    def user(uid: int) -> int:
        calls(("user", uid))
        return uid

    @cached(registry=reg, key="item:{iid}")
    def item(iid: int) -> int:
        calls(("item", iid))
        return iid

    for i in range(3):
        user(i)
        item(i)
    return user, item


@pytest.mark.parametrize("glob_prefix", ["a*b", "a?b", "a[XY]b", "a\\b"])
def test_invalidate_pattern_stays_within_the_prefix(
        make_registry: Callable[..., Registry], deployment: Deployment, prefix: str,
        glob_prefix: str) -> None:
    mine = make_registry(deployment.url, prefix=prefix + glob_prefix)
    foreign = make_registry(deployment.url, prefix=prefix + "aXb")
    calls, foreign_calls = Calls(), Calls()
    user, item = _fill(mine, calls)
    f_user, f_item = _fill(foreign, foreign_calls)
    assert mine.invalidate_pattern("user:*") == 3
    for i in range(3):
        user(i)
        item(i)
        f_user(i)
        f_item(i)
    assert calls.log[6:] == [("user", i) for i in range(3)]
    assert len(foreign_calls) == 6
    assert mine.invalidate_pattern("*") >= 6
    assert mine.invalidate_pattern("nothing:*") == 0
    for i in range(3):
        f_user(i)
        f_item(i)
    assert len(foreign_calls) == 6
    assert all(deployment.raw.exists(f_user.key(i), f_item.key(i)) == 2 for i in range(3))


async def test_ainvalidate_pattern_and_aclear(amake_registry: Callable[..., Registry],
                                              deployment: Deployment, prefix: str) -> None:
    raw = deployment.raw
    reg = amake_registry(deployment.url, prefix=prefix + "a*")
    foreign_key = f"{prefix}aa:user:1"
    raw.set(foreign_key, b"foreign", px=60_000)

    @cached(registry=reg, key="user:{uid}", tags=["u"])
    async def user(uid: int) -> int:
        return uid

    for i in range(4):
        await user(i)
    assert await reg.ainvalidate_pattern("user:[12]") == 2
    assert await reg.aclear() >= 2
    internal = f"{prefix}a*:~".encode()  # cachedeco's own keys (tags) are spared
    assert [k for k in _scan(raw, prefix + "a\\*") if not k.startswith(internal)] == []
    assert raw.get(foreign_key) == b"foreign"


@pytest.mark.parametrize("glob_prefix", ["", "a*b"])
def test_clear_leaves_foreign_keys_alone(make_registry: Callable[..., Registry],
                                         deployment: Deployment, prefix: str,
                                         glob_prefix: str) -> None:
    raw = deployment.raw
    mine = make_registry(deployment.url, prefix=prefix + glob_prefix)
    foreign = [f"{prefix}{glob_prefix}x:user:1", f"{prefix}{glob_prefix}", f"{prefix}aXb:k",
               f"{prefix}other:{prefix}{glob_prefix}:user:1"]
    for key in foreign:
        raw.set(key, b"foreign", px=60_000)
    calls = Calls()

    @cached(registry=mine, tags=["t:{x}"])
    def f(x: int) -> int:
        calls(x)
        return x

    for x in range(5):
        f(x)
    mine.invalidate_tags("t:1")
    assert mine.clear() >= 5
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in mine.prefix)
    internal = f"{mine.prefix}:~".encode()  # tags, leases, queues: cachedeco's own, spared
    left = list(raw.scan_iter(match=f"{escaped}:*"))
    assert [k for k in left if not k.startswith(internal)] == []
    assert any(k.startswith(internal + b"tag:") for k in left)
    assert [raw.get(k) for k in foreign] == [b"foreign"] * len(foreign)
    for x in range(5):
        f(x)
    assert len(calls) == 10


@pytest.mark.deployments(*ALL)
def test_every_operation_works_on_a_registry_used_again_after_close(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    """close() keeps a registry usable: on Redis Cluster, redis-py's sync client forgot its
    default node on close, and every command whose keys it resolves there failed for good
    (an invalidation, a pattern, clear(), a lock, the dead letters); the changes among them
    were kept for a backend that answered every other command."""
    reg = make_registry(deployment.url)
    calls = Calls()
    user, _ = _fill(reg, calls)
    reg.close()
    assert user(0) == 0 and calls.count(("user", 0)) == 1  # a hit: reads never failed
    user.invalidate(0)
    assert user(0) == 0 and calls.count(("user", 0)) == 2
    with reg.lock("after-close", ttl=5):
        pass
    assert reg.dead_letters() == []
    assert reg.invalidate_pattern("user:*") == 3
    assert reg.clear() >= 3
    stats = reg.stats()
    assert (stats.backend_errors, stats.recoveries_pending) == (0, 0)
    reg.close()
