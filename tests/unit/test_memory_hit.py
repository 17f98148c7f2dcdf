"""The hit path compiled for ``memory://`` functions: it serves only fresh, current entries,
counts each hit once, and leaves everything else (misses, stale entries, tags invalidated,
a registry configured again or disabled) to the generic read."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Iterator
from typing import Any

import pytest

from cachedeco import Registry, cached
from cachedeco.flows import hot
from cachedeco.flows._async import read as read_async
from cachedeco.flows._sync import read as read_sync
from cachedeco.flows.spec import spec_of
from cachedeco.runtime import registry as registry_module

KEY = "k" * 32


@pytest.fixture
def reg() -> Iterator[Registry]:
    registry = Registry("memory://", prefix="hot", jitter=0)
    yield registry
    registry.close()


def later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every read sees the clock ``seconds`` ahead."""
    import time

    clock = types.SimpleNamespace(time=lambda: time.time() + seconds,
                                  perf_counter=time.perf_counter)
    for module in (hot, read_sync, read_async):
        monkeypatch.setattr(module, "time", clock)


def counted(reg: Registry, **options: Any) -> tuple[Any, list[Any]]:
    calls: list[Any] = []

    @reg.cached(ttl=60, **options)
    def f(x: Any) -> dict[str, Any]:
        calls.append(x)
        return {"x": x}

    return f, calls


def test_a_hit_is_compiled_counted_and_the_same_object(reg: Registry) -> None:
    f, calls = counted(reg)
    first = f(1)
    assert spec_of(f).hit is not None
    assert f(1) is first and f(1) is first
    assert calls == [1]
    stats = f.stats()
    assert (stats.hits, stats.misses, stats.loads) == (2, 1, 1)


def test_a_cached_none_and_a_tombstone_tell_apart(reg: Registry) -> None:
    calls: list[int] = []

    @reg.cached(ttl=60, cache_none=True)
    def f(x: int) -> None:
        calls.append(x)

    assert [f(1), f(1), f(1)] == [None, None, None]
    assert calls == [1] and f.stats().hits == 2  # None is a value, served by the hit
    f.invalidate(1)  # a tombstone is no value: the next call loads
    assert f(1) is None and calls == [1, 1]


def test_equal_arguments_of_other_types_have_entries_of_their_own(reg: Registry) -> None:
    f, calls = counted(reg)
    for _ in range(2):
        assert [f(1), f(True), f(1.0), f("1")] == [{"x": 1}, {"x": True}, {"x": 1.0},
                                                    {"x": "1"}]
    assert [type(x) for x in calls] == [int, bool, float, str]
    assert f.stats().hits == 4


def test_tags_invalidated_make_the_next_call_a_miss(reg: Registry) -> None:
    f, calls = counted(reg, tags=["item:{x}", "all"])
    f(1), f(2), f(1)
    reg.invalidate_tags("item:1")
    f(1), f(2)
    assert calls == [1, 2, 1]
    reg.invalidate_tags("all")
    f(1), f(2)
    assert calls == [1, 2, 1, 1, 2]


def test_invalidate_and_invalidate_all_reach_the_compiled_hit(reg: Registry) -> None:
    f, calls = counted(reg)
    f(1), f(2)
    f.invalidate(1)
    f(1), f(2)
    assert calls == [1, 2, 1]
    f.invalidate_all()
    f(1), f(2)
    assert calls == [1, 2, 1, 1, 2]


def test_an_expired_entry_is_a_miss(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    f, calls = counted(reg)
    f(1)
    later(monkeypatch, 61)
    f(1)
    assert calls == [1, 1]
    assert f.stats().hits == 0


def test_a_stale_entry_is_served_by_the_generic_read(reg: Registry,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    f, calls = counted(reg, stale_ttl=600)
    f(1)
    later(monkeypatch, 61)
    assert f(1) == {"x": 1}
    stats = f.stats()
    assert (stats.hits, stats.stale_hits) == (0, 1)
    reg.background.close()  # the refresh ran
    assert calls == [1, 1]


def test_a_disabled_registry_runs_the_function_and_counts_nothing(reg: Registry) -> None:
    f, calls = counted(reg)
    f(1)
    with reg.disabled():
        f(1), f(1)
    f(1)
    assert calls == [1, 1, 1]
    stats = f.stats()
    assert (stats.hits, stats.misses) == (1, 1)


def test_configure_binds_again(reg: Registry) -> None:
    f, calls = counted(reg)
    f(1), f(1)
    before = spec_of(f).hit
    reg.configure("memory://", prefix="other", jitter=0)
    f(1), f(1)
    assert calls == [1, 1]  # a new store: one more load, then hits again
    assert spec_of(f).hit is not before


@pytest.mark.parametrize("change", ["configure", "disable", "watch"])
def test_a_new_revision_drops_the_compiled_hit_at_once(reg: Registry, change: str) -> None:
    """A compiled hit checks no configuration itself: the registry drops it when it moves
    on, before any call, and the next call binds again."""
    f, calls = counted(reg)
    f(1), f(1)
    assert spec_of(f).hit is not None
    if change == "configure":
        reg.configure("memory://", prefix="other", jitter=0)
    elif change == "disable":
        reg.disable()
    else:
        reg.watchers.changed()  # what adding an exporter does
    assert spec_of(f).hit is None
    reg.enable()
    f(1), f(1)
    assert spec_of(f).hit is not None
    assert calls == ([1, 1] if change == "configure" else [1])


def test_a_hit_compiled_while_the_registry_moves_on_is_not_kept(reg: Registry) -> None:
    """Binding reads the revision first and notes its hit last: a configure() in between
    (another thread's) leaves no hit of the old configuration behind."""
    f, calls = counted(reg)
    spec = spec_of(f)
    compiled = reg.compiled

    def configured_meanwhile(holder: Any, revision: int) -> bool:
        reg.advance()
        return compiled(holder, revision)

    reg.compiled = configured_meanwhile  # type: ignore[method-assign]
    f(1)
    assert spec.hit is None
    reg.compiled = compiled  # type: ignore[method-assign]
    f(1), f(1)
    assert spec.hit is not None and calls == [1]


def test_a_function_without_registry_follows_a_new_default(reg: Registry) -> None:
    """Its compiled hit is bound to the default registry of the time: naming another default
    sends the next call to the new one."""
    old = registry_module.default_registry()
    calls: list[int] = []

    @cached(ttl=60)
    def f(x: int) -> int:
        calls.append(x)
        return x

    try:
        registry_module.set_default_registry(reg)
        assert (f(1), f(1)) == (1, 1)
        assert spec_of(f).hit is not None and spec_of(f).registry is reg
        registry_module.set_default_registry(old)
        assert f(1) == 1  # a miss on the old default: reg's entry is not its
        assert calls == [1, 1]
        registry_module.set_default_registry(reg)
        assert f(1) == 1  # reg's entry again, through a hit compiled anew
        assert calls == [1, 1]
    finally:
        registry_module.set_default_registry(old)
        f.invalidate(1)


def test_a_hit_keeps_its_entry_in_the_lru_order() -> None:
    with Registry("memory://?maxsize=4", prefix="lru", jitter=0) as reg:
        f, calls = counted(reg)
        f(1), f(2), f(3), f(4)  # four entries: maxsize counts entries, not tag tokens
        f(1)  # a hit: 1 is the most recently used now
        f(5)  # evicts the least recently used: 2
        f(1), f(2)
        assert calls == [1, 2, 3, 4, 5, 2]


@pytest.mark.parametrize("tags", [[], ["item:{x}"], ["item:{x}", "items"]])
def test_maxsize_entries_stay_whatever_their_tags(tags: list[str]) -> None:
    with Registry("memory://?maxsize=10", prefix="lru", jitter=0) as reg:
        f, calls = counted(reg, tags=tags)
        for _ in range(3):
            for x in range(10):
                f(x)
        assert calls == list(range(10))  # tag tokens neither take room nor get evicted
        assert f.stats().hits == 20
        with Registry("memory://?maxsize=2", prefix="lru", jitter=0) as small:
            g, loads = counted(small, tags=tags)
            for x in (1, 1, 2, 1, 2):
                g(x)
            assert loads == [1, 2]


def test_the_tag_tokens_kept_are_bounded_and_the_oldest_written_go() -> None:
    from cachedeco.backends.memory.store import TAGS_PER_ENTRY
    with Registry("memory://?maxsize=2", prefix="lru", jitter=0) as reg:
        f, calls = counted(reg, tags=["a:{x}", "b:{x}", "c:{x}", "d:{x}"])
        f(1), f(1)
        assert calls == [1]
        store = reg.slot("default").backend()
        assert len(store.tag_table()) == 5  # four tags and the function's
        f(2), f(3)  # eight more tokens: the table keeps the newest TAGS_PER_ENTRY x maxsize
        assert len(store.tag_table()) == TAGS_PER_ENTRY * 2
        assert len(store.table()) == 2
        f(3)
        assert calls == [1, 2, 3]
        f(2)  # 2's entry is there, but its oldest tags were dropped: a miss, never stale
        assert calls == [1, 2, 3, 2]


def test_sensitive_functions_hit_without_remembering_their_arguments() -> None:
    with Registry("memory://", prefix="secret", encryption_key=KEY) as reg:
        f, calls = counted(reg, sensitive=True)
        f("alice"), f("alice"), f("bob")
        assert calls == ["alice", "bob"]
        assert f.stats().hits == 1


def test_async_functions_take_the_compiled_hit(reg: Registry) -> None:
    calls: list[int] = []

    @reg.cached(ttl=60, tags=["n:{x}"])
    async def g(x: int) -> int:
        calls.append(x)
        return x * 2

    async def main() -> list[int]:
        out = [await g(1), await g(1)]
        await reg.ainvalidate_tags("n:1")
        return [*out, await g(1), await g(1)]

    assert asyncio.run(main()) == [2, 2, 2, 2]
    assert calls == [1, 1]
    assert g.stats().hits == 2


def test_early_refresh_keeps_the_generic_read(reg: Registry) -> None:
    f, _ = counted(reg, early_refresh=True)
    f(1)
    assert spec_of(f).hit is None


def test_a_function_that_is_only_read_keeps_its_entries_while_others_write_tags() -> None:
    with Registry("memory://?maxsize=100", prefix="lru", jitter=0) as reg:
        hot, loads = counted(reg)

        @reg.cached(ttl=60, tags=["user:{x}", "users"])
        def other(x: int) -> int:  # another function (counted's share one name)
            return x

        for x in range(50):
            hot(x)
        for x in range(1000):  # 1,000 tokens written elsewhere: ten times the tag table
            other(x)
            if x % 10 == 0:
                for y in range(50):  # the hot entries are read all along
                    hot(y)
        assert loads == list(range(50))  # its function's tag was never dropped


def test_a_tag_whose_text_holds_the_function_tag_marker_is_still_bounded() -> None:
    with Registry("memory://?maxsize=10", prefix="lru", jitter=0) as reg:
        @reg.cached(ttl=60, tags=["path:{p}"])
        def page(p: str) -> str:
            return p

        for i in range(500):
            page(f"/docs:~fn:{i}")  # text a function's own tag key also holds
        assert len(reg.slot("default").backend().tag_table()) == 40
