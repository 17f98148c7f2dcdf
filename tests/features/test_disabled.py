"""Switching caching off (``reg.disable()``/``enable()``, ``with reg.disabled():``,
``cachedeco.disabled()``) on memory://, Redis and Cluster, sync and async: functions run,
nothing is read or written, writers run their function, a write-behind record goes to
``flush`` at once, invalidations do nothing; enabled again, the cache is used again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cachedeco
from cachedeco import MISS, Registry
from tests.support import by_url as support
from tests.support.commands import ran

Make = Callable[..., Registry]
url = support.url  # the deployment fixture: memory://, Redis, Cluster
stats_client = support.stats_client


def test_disabled_registry_neither_reads_nor_writes(url: str, make_registry: Make,
                                                    prefix: str, stats_client: Any) -> None:
    reg = make_registry(url, prefix=prefix)
    calls: list[str] = []
    flushed: list[Any] = []

    @reg.cached(ttl=60, tags=["t:{x}"])
    def read(x: int) -> int:
        calls.append("read")
        return x

    @reg.cached_many(key="m:{id}")
    def many(ids: list[int]) -> dict[int, int]:
        calls.append("many")
        return {i: i for i in ids}

    @reg.write_through(read)
    def write(x: int) -> int:
        calls.append("write")
        return x

    @reg.write_behind(key="wb:{x}", flush=flushed.extend)
    def record(x: int) -> dict[str, int]:
        return {"x": x}

    assert read(1) == 1  # cached before switching off
    reg.disable()
    before = support.commands(stats_client)
    assert read(1) == 1 and read(1) == 1 and read.refresh(1) == 1
    assert many([1, 2]) == {1: 1, 2: 2} and many([1, 2]) == {1: 1, 2: 2}
    assert write(2) == 2
    assert record(3) == {"x": 3}
    assert flushed == [{"x": 3}]  # handed to flush at once, before the call returned
    assert read.get(1) is MISS
    read.set(99, 1)
    assert read.invalidate(1) is False
    read.invalidate_all()
    reg.invalidate_tags("t:1")
    assert reg.invalidate_pattern("*") == 0 and reg.clear() == 0
    served = ran(before, support.commands(stats_client))
    assert served == {}  # not one command reached the backend
    assert calls == ["read", "read", "read", "read", "many", "many", "write"]
    reg.enable()
    assert read(1) == 1 and calls[-1] == "write"  # the entry cached before is served again
    assert read.get(2) is MISS  # the disabled write stored nothing
    assert reg.slot("default").backend().raw(f"{prefix}:wb:3") is None
    assert reg.stats().write_behind_flushed == 1


async def test_async_disabled(url: str, amake_registry: Make, prefix: str) -> None:
    reg = amake_registry(url, prefix=prefix)
    calls: list[int] = []
    flushed: list[Any] = []

    async def flush(records: list[Any]) -> None:
        flushed.extend(records)

    @reg.cached(ttl=60)
    async def read(x: int) -> int:
        calls.append(x)
        return x

    @reg.write_behind(key="wb:{x}", flush=flush)
    async def record(x: int) -> int:
        return x

    with reg.disabled():
        assert await read(1) == 1 and await read(1) == 1
        assert await read.get(1) is MISS
        await read.set(5, 1)
        assert await read.invalidate(1) is False
        assert await record(7) == 7 and flushed == [7]
        await reg.ainvalidate_tags("x")
    assert calls == [1, 1]
    assert await read(1) == 1 and await read(1) == 1 and calls == [1, 1, 1]


def test_disabled_blocks_nest_and_restore(make_registry: Make, prefix: str) -> None:
    reg = make_registry("memory://", prefix=prefix)
    calls: list[int] = []

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        calls.append(x)
        return x

    with reg.disabled() as same:
        assert same is reg and not reg.enabled
        with reg.disabled():
            f(1)
        assert not reg.enabled  # the inner block restored what it found
        f(1)
    assert reg.enabled
    f(1), f(1)
    assert calls == [1, 1, 1]
    reg.disable()
    with reg.disabled():
        pass
    assert not reg.enabled  # still off, as it was before the block
    reg.enable()


def test_module_level_disabled_switches_the_default_registry() -> None:
    calls: list[int] = []

    @cachedeco.cached(ttl=60)
    def f(x: int) -> int:
        calls.append(x)
        return x

    f.invalidate(1)
    with cachedeco.disabled() as reg:
        assert reg is cachedeco.registry and not reg.enabled
        f(1), f(1)
    assert cachedeco.registry.enabled
    f(1), f(1)
    assert calls == [1, 1, 1]
