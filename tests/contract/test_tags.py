"""The backend contract for tags: tokens created, adopted or checked by a conditional write,
and ``invalidate_tags``, on every backend."""

from __future__ import annotations

import asyncio

from cachedeco.core.entry import ANY_TAG
from tests.support.backends import (
    CREATED_TAG,
    SHORT,
    WAIT,
    Driver,
    before_expiry,
    make_write,
    new_tag_token,
    tag_token,
)

# --- tag tokens -----------------------------------------------------------------------------------


async def test_missing_tags_are_created_with_tokens_of_their_own(backend: Driver,
                                                                 ns: str) -> None:
    tags = [f"{ns}:t1", f"{ns}:t2", f"{ns}:t3"]
    write = make_write(tags=tags)
    assert await backend.write(f"{ns}:k", write) is True
    _, tokens = await backend.read(f"{ns}:other", tags)
    assert tokens == tuple(tag_token(write.new_tag, i) for i in (1, 2, 3))


async def test_existing_tags_are_adopted_not_replaced(backend: Driver, ns: str) -> None:
    first = make_write(tags=[f"{ns}:t1"])
    await backend.write(f"{ns}:a", first)
    second = make_write(tags=[f"{ns}:t1", f"{ns}:t2"])
    assert await backend.write(f"{ns}:b", second) is True
    entry, tokens = await backend.read(f"{ns}:b", [f"{ns}:t1", f"{ns}:t2"])
    assert tokens == (tag_token(first.new_tag, 1), tag_token(second.new_tag, 2))
    assert entry is not None and entry.tags == tokens
    # the first entry is still current: its tag was not replaced
    entry_a, tokens_a = await backend.read(f"{ns}:a", [f"{ns}:t1"])
    assert entry_a is not None and entry_a.tags == tokens_a


async def test_unconditional_write_adopts_invalidated_tags(backend: Driver, ns: str) -> None:
    token = new_tag_token(invalidated=True)
    await backend.invalidate_tags([f"{ns}:t"], token, 10_000)
    write = make_write(tags=[f"{ns}:t"])
    assert await backend.write(f"{ns}:k", write) is True
    entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t"])
    assert entry is not None and entry.tags == tokens == (tag_token(token, 1),)


async def test_conditional_tags_unchanged_store(backend: Driver, ns: str) -> None:
    first = make_write(tags=[f"{ns}:t"])
    await backend.write(f"{ns}:a", first)
    _, seen = await backend.read(f"{ns}:k", [f"{ns}:t"])
    write = make_write(tags=[f"{ns}:t"], expect="", expect_tags=seen)
    assert await backend.write(f"{ns}:k", write) is True
    entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t"])
    assert entry is not None and entry.tags == tokens == (tag_token(first.new_tag, 1),)


async def test_conditional_tag_seen_missing_adopts_token_of_a_store(
        backend: Driver, ns: str) -> None:
    _, seen = await backend.read(f"{ns}:k", [f"{ns}:t"])
    assert seen == (None,)
    other = make_write(tags=[f"{ns}:t"])  # another fill creates the tag meanwhile
    await backend.write(f"{ns}:other", other)
    write = make_write(tags=[f"{ns}:t"], expect="", expect_tags=seen)
    assert await backend.write(f"{ns}:k", write) is True
    entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t"])
    assert entry is not None and entry.tags == tokens == (tag_token(other.new_tag, 1),)


async def test_conditional_tag_seen_missing_aborts_after_invalidation(
        backend: Driver, ns: str) -> None:
    _, seen = await backend.read(f"{ns}:k", [f"{ns}:t"])
    await backend.invalidate_tags([f"{ns}:t"], new_tag_token(invalidated=True), 10_000)
    write = make_write(tags=[f"{ns}:t"], expect="", expect_tags=seen)
    assert await backend.write(f"{ns}:k", write) is False
    assert await backend.read(f"{ns}:k") == (None, ())


async def test_conditional_tag_changed_aborts(backend: Driver, ns: str) -> None:
    await backend.write(f"{ns}:a", make_write(tags=[f"{ns}:t"]))
    _, seen = await backend.read(f"{ns}:k", [f"{ns}:t"])
    await backend.invalidate_tags([f"{ns}:t"], new_tag_token(invalidated=True), 10_000)
    write = make_write(tags=[f"{ns}:t"], expect="", expect_tags=seen)
    assert await backend.write(f"{ns}:k", write) is False
    assert await backend.read(f"{ns}:k") == (None, ())


async def test_conditional_tag_vanished_aborts(backend: Driver, ns: str) -> None:
    async def read_alive(n: str) -> tuple[str | None, ...]:
        await backend.write(f"{n}:a", make_write(px=SHORT, tags=[f"{n}:t"], tag_px=SHORT))
        _, seen = await backend.read(f"{n}:k", [f"{n}:t"])
        assert seen[0] is not None
        return seen

    n, seen = await before_expiry(read_alive, ns)
    await asyncio.sleep(WAIT)  # the tag key expired: its old token is gone for good
    write = make_write(tags=[f"{n}:t"], expect="", expect_tags=seen)
    assert await backend.write(f"{n}:k", write) is False
    assert await backend.read(f"{n}:k") == (None, ())


async def test_aborted_write_changes_nothing(backend: Driver, ns: str) -> None:
    await backend.write(f"{ns}:a", make_write(tags=[f"{ns}:t2"]))
    _, seen = await backend.read(f"{ns}:k", [f"{ns}:t1", f"{ns}:t2", f"{ns}:t3"])
    assert seen[0] is None and seen[2] is None
    invalidated = new_tag_token(invalidated=True)
    await backend.invalidate_tags([f"{ns}:t2"], invalidated, 10_000)
    write = make_write(tags=[f"{ns}:t1", f"{ns}:t2", f"{ns}:t3"], expect="",
                       expect_tags=seen)
    assert await backend.write(f"{ns}:k", write) is False
    entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t1", f"{ns}:t2", f"{ns}:t3"])
    assert entry is None
    # no tag created by the aborted write
    assert tokens == (None, tag_token(invalidated, 1), None)


async def test_any_tag_skips_that_tags_check_only(backend: Driver, ns: str) -> None:
    """``ANY_TAG`` (a write-through's own invalidated tags): whatever that tag key holds,
    invalidated or not, the write stands; the other tags are still checked."""
    tags = [f"{ns}:own", f"{ns}:other"]
    await backend.write(f"{ns}:a", make_write(tags=tags))
    _, seen = await backend.read(f"{ns}:k", tags)
    await backend.invalidate_tags([f"{ns}:own"], new_tag_token(invalidated=True), 10_000)
    write = make_write(tags=tags, expect="", expect_tags=[ANY_TAG, seen[1]])
    assert await backend.write(f"{ns}:k", write) is True
    entry, tokens = await backend.read(f"{ns}:k", tags)
    assert entry is not None and entry.tags == tokens  # a hit, with the own tag's new token
    await backend.invalidate_tags([f"{ns}:other"], new_tag_token(invalidated=True), 10_000)
    write = make_write(tags=tags, expect=entry.marker, expect_tags=[ANY_TAG, seen[1]])
    assert await backend.write(f"{ns}:k", write) is False


async def test_failed_entry_condition_creates_no_tags(backend: Driver, ns: str) -> None:
    """The one documented difference of a two-step store (Redis Cluster): step one (the tag
    slot) has run, so the missing tag now holds the fill's ``c…`` token, which any later fill
    adopts (cachedeco/backends/cluster.py, "A store")."""
    await backend.write(f"{ns}:k", make_write())
    write = make_write(tags=[f"{ns}:t"], expect="", expect_tags=[None])
    assert await backend.write(f"{ns}:k", write) is False
    tokens = (await backend.read(f"{ns}:x", [f"{ns}:t"]))[1]
    if backend.two_step:
        assert tokens == (tag_token(write.new_tag, 1),)
        assert write.new_tag.startswith(CREATED_TAG)
    else:
        assert tokens == (None,)


# --- invalidate_tags ------------------------------------------------------------------------------


async def test_invalidate_tags_gives_every_tag_a_token_of_its_own(backend: Driver,
                                                                  ns: str) -> None:
    tags = [f"{ns}:t{i}" for i in range(5)]
    await backend.write(f"{ns}:a", make_write(tags=tags[:2]))
    await backend.write(f"{ns}:b", make_write(tags=tags[3:]))
    await backend.write(f"{ns}:c", make_write(tags=[f"{ns}:untouched"]))
    token = new_tag_token(invalidated=True)
    await backend.invalidate_tags(tags, token, 10_000)
    _, tokens = await backend.read(f"{ns}:x", tags)
    assert tokens == tuple(tag_token(token, i) for i in range(1, 6))
    for key, key_tags in ((f"{ns}:a", tags[:2]), (f"{ns}:b", tags[3:])):
        entry, current = await backend.read(key, key_tags)
        assert entry is not None and entry.tags != current  # recorded tokens are stale
    entry, current = await backend.read(f"{ns}:c", [f"{ns}:untouched"])
    assert entry is not None and entry.tags == current


async def test_entry_stored_after_invalidation_is_current(backend: Driver, ns: str) -> None:
    await backend.write(f"{ns}:k", make_write(tags=[f"{ns}:t"]))
    await backend.invalidate_tags([f"{ns}:t"], new_tag_token(invalidated=True), 10_000)
    _, seen = await backend.read(f"{ns}:k", [f"{ns}:t"])
    entry_seen, _ = await backend.read(f"{ns}:k")
    assert entry_seen is not None
    write = make_write(tags=[f"{ns}:t"], expect=entry_seen.marker, expect_tags=seen)
    assert await backend.write(f"{ns}:k", write) is True
    entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t"])
    assert entry is not None and entry.tags == tokens == seen


async def test_invalidate_tags_matching_renews_the_tags_a_glob_finds(backend: Driver,
                                                                     ns: str) -> None:
    await backend.write(f"{ns}:a", make_write(tags=[f"{ns}:fn:f", f"{ns}:tag:x"]))
    await backend.write(f"{ns}:b", make_write(tags=[f"{ns}:fn:g"]))
    await backend.write(f"{ns}:c", make_write(tags=[f"{ns}:tag:y"]))
    token = new_tag_token(invalidated=True)
    assert await backend.invalidate_tags_matching(f"{ns}:fn:*", token, 10_000) == 2
    _, tokens = await backend.read(f"{ns}:none", [f"{ns}:fn:f", f"{ns}:fn:g", f"{ns}:tag:x"])
    # each found tag a token of its own made from the one given (its page's, its position in
    # the page: two keys SCAN returns in one page or in two, as the server's keyspace has it)
    assert tokens[0] != tokens[1]
    assert all(t is not None and t.startswith(token) for t in tokens[:2]), tokens
    assert tokens[2] is not None and not tokens[2].startswith(token)
    for key, tags in ((f"{ns}:a", [f"{ns}:fn:f", f"{ns}:tag:x"]), (f"{ns}:b", [f"{ns}:fn:g"])):
        entry, current = await backend.read(key, tags)
        assert entry is not None and entry.tags != current  # a miss now
    entry, current = await backend.read(f"{ns}:c", [f"{ns}:tag:y"])
    assert entry is not None and entry.tags == current  # no function tag of the glob


async def test_invalidate_tags_matching_spans_many_pages(backend: Driver, ns: str) -> None:
    tags = [f"{ns}:fn:{i}" for i in range(1_200)]
    await backend.write(f"{ns}:k", make_write(tags=tags))
    assert await backend.invalidate_tags_matching(f"{ns}:fn:*", new_tag_token(True),
                                                  10_000) == 1_200
    entry, current = await backend.read(f"{ns}:k", tags)
    assert entry is not None
    assert all(now != then for now, then in zip(current, entry.tags, strict=True))
    assert len(set(current)) == 1_200  # a token names the one tag key holding it
    assert await backend.invalidate_tags_matching(f"{ns}:none:*", new_tag_token(True),
                                                  10_000) == 0
