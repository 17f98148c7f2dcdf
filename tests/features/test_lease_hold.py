"""``lock=True`` while auto-recovery holds the entries back (a Sentinel move, here): a lease
waiter woken by the holder's store does not serve what it then reads. Two registries on one
server stand for two processes."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from cachedeco import Registry
from cachedeco.backends.open import BackendSlot
from cachedeco.runtime.lineage import Lineage
from tests.support.polling import poll


def test_a_woken_waiter_does_not_serve_an_entry_held_meanwhile(
        make_registry: Callable[..., Registry], redis_url: str, prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BackendSlot, "moves", property(lambda slot: 0))
    monkeypatch.setattr(Lineage, "ensure", lambda self: None)  # no beat ends the hold
    monkeypatch.setattr(Lineage, "running", property(lambda self: True))
    holder_reg = make_registry(redis_url, prefix=prefix, stats_interval=0)
    waiter_reg = make_registry(redis_url, prefix=prefix, stats_interval=0)
    loading, release = threading.Event(), threading.Event()

    @holder_reg.cached(ttl=60, key="item:{i}", lock=True, lock_timeout=10)
    def holder(i: int) -> str:
        loading.set()
        release.wait(5)
        return "the holder's"

    @waiter_reg.cached(ttl=60, key="item:{i}", lock=True, lock_timeout=10)
    def waiter(i: int) -> str:
        return "the waiter's own"

    got: list[str] = []
    first = threading.Thread(target=holder, args=(1,))
    first.start()
    assert loading.wait(5)
    second = threading.Thread(target=lambda: got.append(waiter(1)))
    second.start()
    poll(lambda: waiter.stats().lock_waits == 1)  # waiting on the holder's lease
    waiter_reg.lineage.moving("default", 1)  # its primary moved: nothing is served from it
    release.set()
    first.join(5)
    second.join(5)
    assert got == ["the waiter's own"]  # loaded, not what the woken waiter read
