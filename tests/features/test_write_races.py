"""``f.refresh()`` and ``@write_through`` racing with other changes, on every backend, with and
without a near cache. A refresh stores what it loaded only while nothing changed the entry or
its tags during the load (a write-through, a tag invalidation, another refresh; a write-behind
flush: test_write_behind_settle.py); otherwise, and when its result is not to be cached, the
entry is dropped, so the next call loads anew. Of two write-throughs of one key, the one that
stores second drops the entry rather than leave what may be the earlier write."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import cachedeco
from cachedeco import Registry
from tests.support.deployments import BACKENDS, Deployment

pytestmark = [pytest.mark.deployments(*BACKENDS), pytest.mark.parametrize("near", [0, 100])]


class Source:
    """A tagged ``@cached`` reader of ``db`` (id -> v, cached when above 0) and a
    write-through writer into it; ``hold()`` makes the next load wait after reading ``db``,
    ``hold_write()`` the next write-through wait after writing it."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self.db = {1: 1}
        self.loads = 0
        self._gate: threading.Event | None = None
        self.read = threading.Event()
        self._write_gate: threading.Event | None = None
        self.wrote = threading.Event()

        @cachedeco.cached(registry=reg, ttl=60, tags=["items"], condition=lambda v: v > 0)
        def get(i: int) -> int:
            self.loads += 1
            v = self.db[i]
            gate, self._gate = self._gate, None
            if gate is not None:
                self.read.set()
                assert gate.wait(10)
            return v

        @cachedeco.write_through(get, registry=reg)
        def update(i: int, v: int) -> int:
            self.db[i] = v
            gate, self._write_gate = self._write_gate, None
            if gate is not None:  # written; its store waits
                self.wrote.set()
                assert gate.wait(10)
            return v

        self.get, self.update = get, update

    def hold(self) -> threading.Event:
        """The next load waits, after reading ``db``, until the returned event is set."""
        self.read.clear()
        self._gate = threading.Event()
        return self._gate

    def hold_write(self) -> threading.Event:
        """The next write-through waits, after its write, until the returned event is set."""
        self.wrote.clear()
        self._write_gate = threading.Event()
        return self._write_gate

    def refresh_in_thread(self) -> tuple[threading.Thread, list[Any]]:
        """``get.refresh(1)`` in a thread, once its load has read ``db`` and waits."""
        got: list[Any] = []
        thread = threading.Thread(target=lambda: got.append(self.get.refresh(1)))
        thread.start()
        assert self.read.wait(10)
        return thread, got


@pytest.fixture
def source(make_registry: Callable[..., Registry], deployment: Deployment,
           near: int) -> Source:
    return Source(make_registry(deployment.url, on_error="raise", near_cache=near))


def _changes(source: Source) -> dict[str, Callable[[], Any]]:
    def retag() -> None:
        source.db[1] = 2
        source.reg.invalidate_tags("items")

    def refresh_again() -> None:
        source.db[1] = 2
        assert source.get.refresh(1) == 2

    return {"write_through": lambda: source.update(1, 2), "invalidate_tags": retag,
            "another refresh": refresh_again}


@pytest.mark.parametrize("change", ["write_through", "invalidate_tags", "another refresh"])
def test_a_refresh_spanning_a_change_leaves_no_older_value(source: Source,
                                                          change: str) -> None:
    assert source.get(1) == 1
    gate = source.hold()
    thread, got = source.refresh_in_thread()  # it read v=1 and waits to store it
    _changes(source)[change]()
    gate.set()
    thread.join(10)
    assert got == [1]  # it returns what it loaded
    assert source.get(1) == 2  # but does not leave it cached
    assert source.get(1) == 2


def test_a_refresh_without_a_race_stores_what_it_loaded(source: Source) -> None:
    assert source.get(1) == 1
    source.db[1] = 3
    assert source.get.refresh(1) == 3
    loads = source.loads
    assert source.get(1) == 3 and source.loads == loads  # a hit


def test_a_refresh_whose_result_is_not_to_cache_drops_the_entry(source: Source) -> None:
    assert source.get(1) == 1
    source.db[1] = 0  # condition: v > 0
    assert source.get.refresh(1) == 0
    assert source.get(1) == 0  # not the older 1
    assert source.get.get(1) is cachedeco.MISS


@pytest.mark.parametrize("cached_before", [True, False])
def test_of_two_write_throughs_of_one_key_the_later_store_never_leaves_the_earlier_write(
        source: Source, *, cached_before: bool) -> None:
    """The database commits v=1, then v=2; their stores land in the other order. The entry
    must not keep v=1: the write-through that stores second, having read the entry before
    the other stored, drops it instead (which write the database has last is unknown)."""
    if cached_before:
        assert source.get(1) == 1
    gate = source.hold_write()
    first = threading.Thread(target=lambda: source.update(1, 11))
    first.start()
    assert source.wrote.wait(10)  # v=11 written; its store waits
    assert source.update(1, 12) == 12  # written after, stored first
    loads = source.loads
    assert source.get(1) == 12 and source.loads == loads  # stored: a hit
    gate.set()
    first.join(10)
    assert source.get(1) == 12  # not the earlier write's 11
    assert source.get(1) == 12


def test_a_write_through_alone_stores_its_result(source: Source) -> None:
    assert source.get(1) == 1
    assert source.update(1, 5) == 5
    loads = source.loads
    assert source.get(1) == 5 and source.loads == loads
