"""``f.get()`` / ``f.set()`` and ``cachedeco.MISS`` on memory://, Redis and Cluster, sync and
async: get never calls the function nor stores; set stores as a write-through would (the
function's TTL and tags) and wins over an older fill still in flight."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import cachedeco
from cachedeco import MISS, Registry
from cachedeco.core.entry import Entry, decode_entry
from tests.support import by_url as support

Make = Callable[..., Registry]
url = support.url  # the deployment fixture: memory://, Redis, Cluster


@dataclass
class Item:
    id: int
    at: dt.date


def soft_left(reg: Registry, key: str) -> float:
    """Seconds until the entry at ``key`` goes stale, from its stored envelope."""
    raw = reg.slot("default").backend().raw(key)
    assert raw is not None
    entry = raw if isinstance(raw, Entry) else decode_entry(raw)
    return entry.soft - time.time()


def test_miss_is_a_falsy_singleton() -> None:
    assert not MISS
    assert MISS is cachedeco.MISS
    assert repr(MISS) == "cachedeco.MISS"
    assert str(MISS) == f"{MISS}" == "cachedeco.MISS"  # print(f.get(x)) names it as imported
    assert MISS is not None and MISS != None  # noqa: E711 - never confused with a cached None


def test_get_never_calls_nor_stores_and_set_is_served(url: str, make_registry: Make,
                                                      prefix: str) -> None:
    reg = make_registry(url, prefix=prefix, jitter=0)
    calls: list[int] = []

    @reg.cached(ttl=300, tags=["item:{item_id}"])
    def item(item_id: int) -> Item:
        calls.append(item_id)
        return Item(item_id, dt.date(2024, 1, item_id))

    assert item.get(1) is MISS
    assert item.get(1) is MISS  # the first get stored nothing
    assert calls == []
    first = item(1)
    assert item.get(1) == first and type(item.get(1)) is Item
    item.set(Item(2, dt.date(2025, 2, 2)), 2)
    assert item(2) == Item(2, dt.date(2025, 2, 2))
    assert item.get(item_id=2) == Item(2, dt.date(2025, 2, 2))
    assert calls == [1]
    assert 299 <= soft_left(reg, item.key(2)) <= 300  # the function's TTL
    reg.invalidate_tags("item:2")  # the function's tags
    assert item.get(2) is MISS
    assert item.invalidate(1) is True and item.get(1) is MISS


async def test_async_get_and_set(url: str, amake_registry: Make, prefix: str) -> None:
    reg = amake_registry(url, prefix=prefix)
    calls: list[int] = []

    @reg.cached(ttl=300, tags=["n:{n}"])
    async def double(n: int) -> int:
        calls.append(n)
        return 2 * n

    assert await double.get(3) is MISS
    assert await double(3) == 6
    assert await double.get(3) == 6
    await double.set(42, 4)
    assert await double(4) == 42 and await double.get(4) == 42
    await reg.ainvalidate_tags("n:4")
    assert await double.get(4) is MISS
    assert calls == [3]


def test_get_is_a_miss_once_expired(url: str, make_registry: Make, prefix: str) -> None:
    reg = make_registry(url, prefix=prefix, jitter=0)

    @reg.cached(ttl=1, stale_ttl=30)
    def value(x: int) -> int:
        return x

    value.set(7, 1)
    assert value.get(1) == 7
    deadline = time.monotonic() + 10
    while value.get(1) is not MISS:  # a stale entry is expired for get (no refresh runs)
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_set_of_a_method_and_none(url: str, make_registry: Make, prefix: str) -> None:
    reg = make_registry(url, prefix=prefix)

    class Repo:
        @reg.cached(ttl=60)
        def find(self, item_id: int) -> str | None:
            return f"db:{item_id}"

    repo = Repo()
    repo.find.set("pre-warmed", 5)
    assert repo.find(5) == "pre-warmed" and repo.find.get(5) == "pre-warmed"
    repo.find.set(None, 6)
    assert repo.find.get(6) is None  # a cached None, not a miss
    assert repo.find(6) is None


def test_set_wins_over_an_older_fill_in_flight(url: str, make_registry: Make,
                                                prefix: str) -> None:
    reg = make_registry(url, prefix=prefix)
    entered, release = threading.Event(), threading.Event()

    @reg.cached(ttl=60)
    def slow(x: int) -> str:
        entered.set()
        assert release.wait(30)
        return "old"

    got: list[Any] = []
    filler = threading.Thread(target=lambda: got.append(slow(1)))
    filler.start()
    assert entered.wait(30)
    slow.set("new", 1)
    release.set()
    filler.join(30)
    assert got == ["old"]  # the caller gets what its load returned ...
    assert slow.get(1) == "new" and slow(1) == "new"  # ... but the set stays


async def test_async_set_wins_over_an_older_fill(url: str, amake_registry: Make,
                                                 prefix: str) -> None:
    reg = amake_registry(url, prefix=prefix)
    entered, release = asyncio.Event(), asyncio.Event()

    @reg.cached(ttl=60)
    async def slow(x: int) -> str:
        entered.set()
        await asyncio.wait_for(release.wait(), 30)
        return "old"

    filler = asyncio.create_task(slow(1))
    await asyncio.wait_for(entered.wait(), 30)
    await slow.set("new", 1)
    release.set()
    assert await filler == "old"
    assert await slow.get(1) == "new"


def test_get_during_an_outage_is_a_miss(make_registry: Make, fresh_redis: Any,
                                        prefix: str) -> None:
    reg = make_registry(fresh_redis.url, prefix=prefix, socket_timeout=0.5)

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    fresh_redis.kill()
    assert f.get(1) is MISS
    raising = make_registry(fresh_redis.url, prefix=prefix, socket_timeout=0.5,
                            on_error="raise")

    @raising.cached(ttl=60)
    def g(x: int) -> int:
        return x

    with pytest.raises(cachedeco.BackendError):
        g.get(1)
