"""The short memory of landed changes that an outage's start hands to auto-recovery."""

from __future__ import annotations

from cachedeco.core.entry import Release
from cachedeco.runtime import recent
from cachedeco.runtime.recent import RecentChanges


def test_take_hands_out_each_key_once_per_backend_and_forgets_them() -> None:
    changes = RecentChanges()
    changes.note("default", "drop", ["k1", "k2"], 100)
    changes.note("default", "drop", ["k1"], 200)  # the latest px of a key wins
    changes.note("default", "tags", ["t"], 300)
    changes.note("other", "drop", ["k9"], 100)
    assert sorted(changes.take("default")) == [("drop", "k1", 200, None),
                                               ("drop", "k2", 100, None),
                                               ("tags", "t", 300, None)]
    assert changes.take("default") == []  # handed out once
    assert changes.take("other") == [("drop", "k9", 100, None)]


def test_each_token_of_a_lease_is_released_again_once() -> None:
    # Two loads of one key in the window: either lease may be what a promoted replica holds.
    changes = RecentChanges()
    first, second = (Release("lease", "wake", "mark", token, 2000) for token in ("t1", "t2"))
    changes.note("default", "release", ["lease"], 0, first)
    changes.note("default", "release", ["lease"], 0, first)
    changes.note("default", "release", ["lease"], 0, second)
    assert [again[3] for again in changes.take("default")] == [first, second]


def test_only_the_last_window_is_handed_out() -> None:
    now = [1000.0]
    changes = RecentChanges(clock=lambda: now[0])
    changes.note("default", "drop", ["old"], 100)
    now[0] += recent.WINDOW + 0.5
    changes.note("default", "drop", ["new"], 100)
    assert changes.take("default") == [("drop", "new", 100, None)]


def test_the_memory_is_bounded() -> None:
    changes = RecentChanges()
    changes.note("default", "drop", (f"k{i}" for i in range(recent.LIMIT + 10)), 100)
    assert len(changes.take("default")) == recent.LIMIT


def test_a_burst_of_releases_never_pushes_a_drop_out() -> None:
    changes = RecentChanges()
    changes.note("default", "drop", ["k"], 100)
    for i in range(recent.LIMIT + recent.RELEASE_LIMIT):
        changes.released("default", Release(f"lease{i}", "wake", "mark", f"t{i}", 2000))
    taken = changes.take("default")
    assert ("drop", "k", 100, None) in taken
    assert len(taken) == 1 + recent.RELEASE_LIMIT  # the latest releases, the oldest gone
    assert taken[-1][1] == f"lease{recent.LIMIT + recent.RELEASE_LIMIT - 1}"
