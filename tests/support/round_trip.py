"""One pass over what every transport must carry (TLS, a Unix socket; one server, a cluster,
Sentinel): reads, stores and invalidations in both flavours, and a hit's commands."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from cachedeco import Registry
from tests.support.commands import ran

__all__ = ["reads_stores_and_invalidations"]


def reads_stores_and_invalidations(reg: Registry, counts: Callable[[], dict[str, int]],
                                   hit: Mapping[str, int]) -> list[str]:
    """A sync and an async function with one tag, each read, hit, invalidated by tag and
    read again through ``reg``; a hit runs ``hit`` on the server (``counts()``: its
    commandstats). Returns the two entries' keys, for the caller to find where they live."""
    loads: list[int] = []

    @reg.cached(ttl=60, tags=["t:{x}"])
    def f(x: int) -> dict[str, int]:
        loads.append(x)
        return {"x": x}

    @reg.cached(ttl=60, tags=["t:{x}"])
    async def af(x: int) -> dict[str, int]:
        loads.append(-x)
        return {"x": -x}

    async def async_side() -> list[dict[str, int]]:
        got = [await af(1), await af(1)]
        await reg.ainvalidate_tags("t:1")
        return [*got, await af(1)]

    assert [f(1), f(1)] == [{"x": 1}] * 2
    before = counts()
    assert f(1) == {"x": 1}
    assert ran(before, counts()) == dict(hit)
    reg.invalidate_tags("t:1")
    assert f(1) == {"x": 1}
    assert asyncio.run(async_side()) == [{"x": -1}] * 3
    assert loads == [1, 1, -1, -1]
    return [f.key(1), af.key(1)]
