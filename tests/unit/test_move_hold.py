"""A Sentinel primary's move: from the moment the watch sees it until a beat sent to the new
primary was judged (:mod:`cachedeco.runtime.lineage`), no entry of that backend is served, not
even by a read already under way when the move was seen; calls load meanwhile."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest

from cachedeco import MISS, Registry, cached
from cachedeco.runtime import held
from cachedeco.runtime.lineage import Lineage
from tests.support.calls import Calls
from tests.support.moves import Epoch, hand_moves


@pytest.fixture
def epoch(monkeypatch: pytest.MonkeyPatch) -> Epoch:
    return hand_moves(monkeypatch)


@pytest.fixture
def reg(make_registry: Callable[..., Registry]) -> Iterator[Registry]:
    yield make_registry(fakeredis.FakeRedis(server=fakeredis.FakeServer()), stats_interval=0)


def counted(reg: Registry, calls: Calls) -> Any:
    @cached(registry=reg, tags=["item:{i}"])
    def item(i: int) -> int:
        calls(i)
        return i * 10

    return item


def test_a_move_holds_every_entry_until_a_beat_sent_after_it_was_judged(
        reg: Registry, epoch: Epoch) -> None:
    calls = Calls()
    item = counted(reg, calls)
    assert item(1) == 10 and item(2) == 20
    reg.lineage.beat()

    reg.lineage.moving("default", 1)  # seen by the watch; no connection has followed yet
    assert item(1) == 10 and item(2) == 20
    assert calls.count(1) == 2 and calls.count(2) == 2  # loaded, not read
    assert item.get(1) is MISS
    assert reg.stats().recoveries_pending == 0  # the gauge counts changes, not a move
    reg.lineage.beat()  # sent before the move: it says nothing of the new primary
    assert item(1) == 10 and calls.count(1) == 3

    epoch.now = 1
    reg.lineage.beat()  # sent there, judged: the counter went on
    assert item(1) == 10 and item(2) == 20
    assert calls.count(1) == 3 and calls.count(2) == 2  # served again, from what it holds
    assert reg.recovery.pending == 0


def test_a_move_holds_for_a_bounded_time_when_no_beat_comes(
        reg: Registry, epoch: Epoch, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(held, "MOVE_HOLD", 0.0)  # the beat's worker stopped, say
    calls = Calls()
    item = counted(reg, calls)
    item(1)
    reg.lineage.moving("default", 1)
    assert item(1) == 10 and calls.count(1) == 1
    assert reg.recovery.pending == 1  # the expired hold, until the next beat
    reg.lineage.beat()  # sent before the move (a slot made anew by configure(), say)
    assert reg.recovery.pending == 0


def test_a_lineage_that_does_not_beat_holds_nothing(
        reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Lineage, "ensure", lambda self: None)  # not running: no beat will come
    calls = Calls()
    item = counted(reg, calls)
    item(1)
    reg.lineage.moving("default", 1)
    assert item(1) == 10 and calls.count(1) == 1
    assert reg.recovery.pending == 0


def test_a_read_under_way_when_the_move_is_seen_is_not_served(
        reg: Registry, epoch: Epoch, monkeypatch: pytest.MonkeyPatch) -> None:
    # redis-py sends a read that timed out on the old primary again, to the new one, once the
    # watch moved: the reply may be the promoted server's older entry
    calls = Calls()
    item = counted(reg, calls)
    item(1)
    backend = reg.slot("default").backend()
    read = backend.read

    def read_across_the_move(key: str, tag_keys: Any) -> Any:
        found = read(key, tag_keys)
        reg.lineage.moving("default", 1)
        return found

    monkeypatch.setattr(backend, "read", read_across_the_move)
    assert item(1) == 10 and calls.count(1) == 2  # loaded, not served what it read
    assert item.get(1) is MISS


def test_get_is_a_miss_when_its_entry_is_held_during_or_before_its_read(
        reg: Registry, epoch: Epoch, monkeypatch: pytest.MonkeyPatch) -> None:
    calls, reads = Calls(), Calls()
    item = counted(reg, calls)
    assert item(1) == 10 and item.get(1) == 10  # cached
    backend = reg.slot("default").backend()
    read = backend.read

    def read_across_the_move(key: str, tag_keys: Any) -> Any:
        reads(key)
        found = read(key, tag_keys)
        if len(reads) == 1:
            reg.lineage.moving("default", 1)
        return found

    monkeypatch.setattr(backend, "read", read_across_the_move)
    assert item.get(1) is MISS  # held while its read was under way
    assert item.get(1) is MISS and len(reads) == 1  # held before: not even read
    assert calls.count(1) == 1  # get() never runs the function
    assert item(1) == 10 and calls.count(1) == 2 and len(reads) == 1  # a call loads, unread


def test_cached_many_serves_no_entry_held_during_its_read(
        reg: Registry, epoch: Epoch, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[list[int]] = []

    @reg.cached_many(key="many:{id}")
    def items(ids: list[int]) -> dict[int, int]:
        loaded.append(sorted(ids))
        return {i: i * 10 + len(loaded) for i in ids}

    assert items([1, 2]) == {1: 11, 2: 21} and items([1, 2]) == {1: 11, 2: 21}
    backend = reg.slot("default").backend()
    read_many = backend.read_many

    def read_across_the_move(reads: Any) -> Any:
        found = read_many(reads)
        reg.lineage.moving("default", 1)
        return found

    monkeypatch.setattr(backend, "read_many", read_across_the_move)
    assert items([1, 2]) == {1: 12, 2: 22}  # loaded again, not served what it read
    assert loaded == [[1, 2], [1, 2]]
