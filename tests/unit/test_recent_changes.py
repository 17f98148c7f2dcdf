"""The short memory of landed changes that an outage's start hands to auto-recovery."""

from __future__ import annotations

from cachedeco.runtime import recent
from cachedeco.runtime.recent import RecentChanges


def test_take_hands_out_each_key_once_per_backend_and_forgets_them() -> None:
    changes = RecentChanges()
    changes.note("default", "drop", ["k1", "k2"], 100)
    changes.note("default", "drop", ["k1"], 200)  # the latest px of a key wins
    changes.note("default", "tags", ["t"], 300)
    changes.note("other", "drop", ["k9"], 100)
    assert sorted(changes.take("default")) == [("drop", "k1", 200), ("drop", "k2", 100),
                                               ("tags", "t", 300)]
    assert changes.take("default") == []  # handed out once
    assert changes.take("other") == [("drop", "k9", 100)]


def test_only_the_last_window_is_handed_out() -> None:
    now = [1000.0]
    changes = RecentChanges(clock=lambda: now[0])
    changes.note("default", "drop", ["old"], 100)
    now[0] += recent.WINDOW + 0.5
    changes.note("default", "drop", ["new"], 100)
    assert changes.take("default") == [("drop", "new", 100)]


def test_the_memory_is_bounded() -> None:
    changes = RecentChanges()
    changes.note("default", "drop", (f"k{i}" for i in range(recent.LIMIT + 10)), 100)
    assert len(changes.take("default")) == recent.LIMIT
