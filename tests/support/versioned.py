"""The near-cache tests' pair of readers of one entry, on two registries (one with a near
cache, one without), both returning the test's current ``version["v"]``, and a near cache
followed through another client's changes with them."""

from __future__ import annotations

from collections.abc import Callable

from cachedeco import Registry
from tests.support.commands import ran
from tests.support.near import TRACKER, warm
from tests.support.polling import poll

__all__ = ["follow_changes", "item_readers", "keep_near"]


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


def follow_changes(reg: Registry, other: Registry, *, x: int = 1, rounds: int = 10,
                   window: float = 1.0,
                   counts: Callable[[], dict[str, int]] | None = None
                   ) -> tuple[Callable[[int], int], dict[str, int]]:
    """``reg``'s near cache serves ``item:x`` (200 near hits; given the server's ``counts``,
    they send nothing but the change stream's own commands) and sees each of ``other``'s
    ``rounds`` changes (by key and by tag in turn) within ``window`` seconds. Returns
    ``reg``'s reader and the version it follows."""
    version = {"v": 0}
    f, g = item_readers(reg, other, version)
    warm(lambda: f(x), f.stats)
    before = counts() if counts is not None else {}
    hits = f.stats().near_hits
    assert [f(x) for _ in range(200)] == [0] * 200
    assert f.stats().near_hits - hits == 200
    if counts is not None:
        assert ran(before, counts(), ignore=TRACKER) == {}  # near hits send nothing
    for round_ in range(rounds):
        version["v"] += 1
        if round_ % 2:
            other.invalidate_tags(f"item:{x}")
        else:
            g.invalidate(x)
        poll(lambda: f(x) == version["v"], timeout=window)
        warm(lambda: f(x), f.stats)
    return f, version


def keep_near(f: Callable[[int], int], keys: range, version: dict[str, int],
              window: float = 1.0) -> None:
    """Read every key of ``keys`` through ``f`` until each is current and kept near (the
    next read of each is a near hit)."""
    stats = f.stats  # type: ignore[attr-defined]
    for x in keys:
        f(x)
    warm(lambda: f(keys[-1]), stats)
    poll(lambda: all(f(x) == version["v"] for x in keys), timeout=window)
    hits = stats().near_hits
    assert [f(x) for x in keys] == [version["v"]] * len(keys)
    assert stats().near_hits - hits == len(keys)  # all kept near
