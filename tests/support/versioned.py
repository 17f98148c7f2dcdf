"""The near-cache tests' pair of readers of one entry, on two registries (one with a near
cache, one without), both returning the test's current ``version["v"]``."""

from __future__ import annotations

from collections.abc import Callable

from cachedeco import Registry

__all__ = ["item_readers"]


def item_readers(reg: Registry, other: Registry,
            version: dict[str, int]) -> tuple[Callable[[int], int], Callable[[int], int]]:
    """``f`` on ``reg`` and ``g`` on ``other``: the same key ``item:{x}`` and tag ``item:{x}``,
    so a change made through ``g`` is another client's change to ``f``'s entry."""

    @reg.cached(ttl=60, key="item:{x}", tags=["item:{x}"])
    def f(x: int) -> int:
        return version["v"]

    @other.cached(ttl=60, key="item:{x}", tags=["item:{x}"])
    def g(x: int) -> int:
        return version["v"]

    return f, g
