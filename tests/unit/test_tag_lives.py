"""TagLives: which tag keys a store may skip asking about, from what earlier stores said."""

from __future__ import annotations

from cachedeco.backends.redis import tag_lives
from cachedeco.backends.redis.tag_lives import TagLives, stored


def test_nothing_known_asks_every_tag() -> None:
    assert TagLives().checks(["a", "b"], 1000, 0.0) == ""


def test_a_known_long_life_is_skipped_until_it_is_too_short() -> None:
    lives = TagLives()
    lives.note(["a", "b"], [1, 60_000, -1], sent=100.0)  # a: 60 s left; b: unknown
    assert lives.checks(["a", "b"], 10_000, 100.0) == "01"
    # at 149 s: 11 s left, less than 10 s + the margin: asked again
    assert lives.checks(["a", "b"], 10_000, 149.5) == ""
    assert lives.checks(["b"], 10_000, 100.0) == ""


def test_a_failed_store_teaches_nothing() -> None:
    lives = TagLives()
    lives.note(["a"], 0, sent=0.0)
    lives.note(["a"], [1], sent=0.0)  # a reply of another length
    assert lives.checks(["a"], 1, 0.0) == ""


def test_an_unknown_answer_keeps_what_was_known() -> None:
    lives = TagLives()
    lives.note(["a"], [1, 60_000], sent=0.0)
    lives.note(["a"], [1, -1], sent=0.0)  # skipped (or PTTL refused): a life only grows
    lives.note(["a"], [1, 5_000], sent=0.0)  # an older, shorter answer changes nothing
    assert lives.checks(["a"], 30_000, 0.0) == "0"


def test_the_memory_starts_over_past_its_limit(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(tag_lives, "LIMIT", 2)
    lives = TagLives()
    for name in "abc":
        lives.note([name], [1, 60_000], sent=0.0)
    lives.note(["d"], [1, 60_000], sent=0.0)  # over the limit: cleared, then d kept
    assert lives.checks(["a", "d"], 1, 0.0) == "10"


def test_stored_reads_both_reply_forms() -> None:
    assert stored([1, 5]) and stored(1)
    assert not stored(0)
