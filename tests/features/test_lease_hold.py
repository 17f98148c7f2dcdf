"""``lock=True`` while auto-recovery holds the entries back (a Sentinel move, here): a lease
waiter woken by the holder's store does not serve what it then reads. Two registries on one
server stand for two processes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cachedeco import Registry
from tests.support.holders import Holders
from tests.support.moves import hand_moves


def test_a_woken_waiter_does_not_serve_an_entry_held_meanwhile(
        make_registry: Callable[..., Registry], redis_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    hand_moves(monkeypatch)  # no beat ends the hold below
    reg_b = make_registry(redis_url)
    two = Holders(make_registry(redis_url), reg_b)
    # B's primary moved while it waited: nothing is served from it until a beat is judged
    results = two.race(lambda: reg_b.lineage.moving("default", 1))
    assert results == {"a": {"x": 1, "by": "A"}, "b": {"x": 1, "by": "B"}}  # B loaded
    assert two.runs == ["A", "B"]
