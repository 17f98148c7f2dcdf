"""The backend conformance suite: the Backend / AsyncBackend contract, written once.

Every test here speaks to a backend through :class:`Driver`, one awaitable face over a sync
``Backend`` or an ``AsyncBackend``, so the same tests run over ``memory://``, fakeredis and a
real redis-server, in both flavours (``test_conformance.py`` binds them).

A test class binds a suite by subclassing it and providing the fixtures:

- ``backend``: a :class:`Driver` over a fresh backend;
- ``ns``: a key namespace unique to the test (no glob characters); every key a test touches
  starts with ``ns + ":"``;
- for :class:`BytesBackendContract` (backends that store payload bytes), ``poke``: an async
  ``poke(key, raw)`` that writes ``raw`` bytes at ``key`` behind the backend's back.

The contract (see ``cachedeco/_entry.py`` and ``cachedeco/backends/base.py``):

- ``read(key, tag_keys)`` returns the entry (None when absent; an unreadable value comes back
  with the ``"?"`` marker) and the current token of every tag key (None when absent).
- ``write(key, w)`` stores atomically and returns False, changing nothing, when a condition
  fails: ``w.expect`` is None (unconditional), ``""`` (the key must be absent), ``"?"`` (the key
  must hold an unreadable value) or a marker (the key must hold exactly that entry or
  tombstone). With ``w.expect_tags`` each tag must still hold the token the fill read; a tag
  the fill saw missing may since have been created by a store (token ``"c…"``: adopted) but
  not by an invalidation (``"i…"``: abort). The i-th missing tag key (from 1) is created with
  ``tag_token(w.new_tag, i)``, a token of its own; tag keys live at least
  ``max(w.tag_px, w.px)`` and are never shortened.
- ``invalidate(keys, marker, px)`` leaves a tombstone for ``px`` ms at every key and returns
  how many live entries it replaced; ``invalidate_tags(tag_keys, token, px)`` sets the i-th
  tag to ``tag_token(token, i)``.
- ``delete_matching(glob)`` deletes the live keys matching a Redis glob (``\\`` escapes
  included) and returns how many.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from cachedeco.core.entry import (
    CORRUPT,
    NO_VALUE,
    Entry,
    Write,
    new_marker,
    new_tag_token,
    new_tombstone,
    tag_token,
)

__all__ = ["BackendContract", "BytesBackendContract", "Driver", "Poke"]

Poke = Callable[[str, bytes], Awaitable[None]]
PAYLOAD = b'{"answer":42}'
SHORT = 60  # ms: a TTL that runs out during WAIT
WAIT = 0.12  # seconds


async def _settle(result: Any) -> Any:
    """The result of a sync call, or the awaited result of an async one."""
    return await result if inspect.isawaitable(result) else result


class Driver:
    """One awaitable face over a sync ``Backend`` or an ``AsyncBackend``."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    @property
    def stores_objects(self) -> bool:
        return bool(self.backend.stores_objects)

    async def read(self, key: str, tag_keys: Sequence[str] = ()
                   ) -> tuple[Entry | None, tuple[str | None, ...]]:
        entry, tokens = await _settle(self.backend.read(key, list(tag_keys)))
        return entry, tuple(tokens)

    async def write(self, key: str, write: Write) -> bool:
        return bool(await _settle(self.backend.write(key, write)))

    async def invalidate(self, keys: Sequence[str], marker: str, px: int) -> int:
        return int(await _settle(self.backend.invalidate(list(keys), marker, px)))

    async def invalidate_tags(self, tag_keys: Sequence[str], token: str, px: int) -> None:
        await _settle(self.backend.invalidate_tags(list(tag_keys), token, px))

    async def delete_matching(self, pattern: str) -> int:
        return int(await _settle(self.backend.delete_matching(pattern)))

    async def raw(self, key: str) -> bytes | Entry | None:
        result: bytes | Entry | None = await _settle(self.backend.raw(key))
        return result

    async def close(self) -> None:
        await _settle(self.backend.close())


def make_write(value: Any = PAYLOAD, *, px: int = 10_000, tags: Sequence[str] = (),
               expect: str | None = None, expect_tags: Sequence[str | None] | None = None,
               new_tag: str | None = None, tag_px: int = 0, soft: float | None = None,
               delta: float = 0.25, marker: str | None = None) -> Write:
    """A Write with sensible defaults: unconditional, fresh marker, fresh tag token."""
    return Write(
        marker=marker or new_marker(),
        value=value,
        soft=time.time() + 60 if soft is None else soft,
        delta=delta,
        px=px,
        tag_keys=tuple(tags),
        expect=expect,
        expect_tags=None if expect_tags is None else tuple(expect_tags),
        new_tag=new_tag or new_tag_token(),
        tag_px=tag_px,
    )


async def _marker(backend: Driver, key: str) -> str:
    """The marker at ``key`` ("" when absent)."""
    entry, _ = await backend.read(key)
    return "" if entry is None else entry.marker


class BackendContract:
    """What every backend does, sync or async, objects or bytes."""

    # -- read and unconditional write ---------------------------------------------------------

    async def test_read_of_missing_key_and_tags(self, backend: Driver, ns: str) -> None:
        entry, tokens = await backend.read(f"{ns}:nothing", [f"{ns}:t1", f"{ns}:t2"])
        assert entry is None
        assert tokens == (None, None)
        assert await backend.read(f"{ns}:nothing") == (None, ())

    async def test_write_then_read_round_trips_every_field(self, backend: Driver,
                                                           ns: str) -> None:
        soft = time.time() + 30.5
        write = make_write(soft=soft, delta=1.5, tags=[f"{ns}:t1", f"{ns}:t2"])
        assert await backend.write(f"{ns}:k", write) is True
        entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t1", f"{ns}:t2"])
        assert entry is not None
        assert entry.marker == write.marker
        assert entry.value == PAYLOAD
        assert entry.soft == pytest.approx(soft, abs=0.002)
        assert entry.delta == pytest.approx(1.5, abs=0.002)
        assert entry.tags == (tag_token(write.new_tag, 1), tag_token(write.new_tag, 2))
        assert tokens == entry.tags
        assert not entry.is_tombstone

    async def test_payload_bytes_survive_exactly(self, backend: Driver, ns: str) -> None:
        payload = b"line one\nline two\x00\xff\r\n:,cd1:"
        await backend.write(f"{ns}:k", make_write(payload, tags=[f"{ns}:t"]))
        entry, _ = await backend.read(f"{ns}:k", [f"{ns}:t"])
        assert entry is not None and entry.value == payload

    async def test_read_with_other_tags_reports_their_tokens(self, backend: Driver,
                                                             ns: str) -> None:
        write = make_write(tags=[f"{ns}:t1"])
        await backend.write(f"{ns}:k", write)
        entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t1", f"{ns}:other"])
        assert entry is not None and entry.tags == (tag_token(write.new_tag, 1),)
        assert tokens == (tag_token(write.new_tag, 1), None)

    async def test_unconditional_write_replaces_entry(self, backend: Driver, ns: str) -> None:
        await backend.write(f"{ns}:k", make_write(b"1"))
        second = make_write(b"2")
        assert await backend.write(f"{ns}:k", second) is True
        entry, _ = await backend.read(f"{ns}:k")
        assert entry is not None and (entry.marker, entry.value) == (second.marker, b"2")

    async def test_unconditional_write_replaces_tombstone(self, backend: Driver,
                                                          ns: str) -> None:
        await backend.invalidate([f"{ns}:k"], new_tombstone(), 10_000)
        write = make_write(b"new")
        assert await backend.write(f"{ns}:k", write) is True
        assert await _marker(backend, f"{ns}:k") == write.marker

    # -- conditional writes on the entry ------------------------------------------------------

    async def test_expect_missing_stores_only_when_absent(self, backend: Driver,
                                                          ns: str) -> None:
        first = make_write(b"1", expect="")
        assert await backend.write(f"{ns}:k", first) is True
        assert await backend.write(f"{ns}:k", make_write(b"2", expect="")) is False
        entry, _ = await backend.read(f"{ns}:k")
        assert entry is not None and (entry.marker, entry.value) == (first.marker, b"1")

    async def test_expect_marker_stores_only_over_that_marker(self, backend: Driver,
                                                              ns: str) -> None:
        first = make_write(b"1")
        await backend.write(f"{ns}:k", first)
        second = make_write(b"2", expect=first.marker)
        assert await backend.write(f"{ns}:k", second) is True
        # a fill that read ``first`` is now too late
        assert await backend.write(f"{ns}:k", make_write(b"3", expect=first.marker)) is False
        # a marker never written matches nothing, not even a missing key
        assert await backend.write(f"{ns}:gone", make_write(expect=new_marker())) is False
        assert await backend.read(f"{ns}:gone") == (None, ())
        entry, _ = await backend.read(f"{ns}:k")
        assert entry is not None and (entry.marker, entry.value) == (second.marker, b"2")

    async def test_expect_unreadable_never_matches_readable_state(self, backend: Driver,
                                                                  ns: str) -> None:
        assert await backend.write(f"{ns}:missing", make_write(expect=CORRUPT)) is False
        assert await backend.read(f"{ns}:missing") == (None, ())
        entry = make_write(b"1")
        await backend.write(f"{ns}:entry", entry)
        assert await backend.write(f"{ns}:entry", make_write(b"2", expect=CORRUPT)) is False
        assert await _marker(backend, f"{ns}:entry") == entry.marker
        tomb = new_tombstone()
        await backend.invalidate([f"{ns}:tomb"], tomb, 10_000)
        assert await backend.write(f"{ns}:tomb", make_write(expect=CORRUPT)) is False
        assert await _marker(backend, f"{ns}:tomb") == tomb

    # -- tombstones ---------------------------------------------------------------------------

    async def test_invalidate_leaves_tombstones_and_counts_live_entries(
            self, backend: Driver, ns: str) -> None:
        await backend.write(f"{ns}:a", make_write(b"a"))
        await backend.write(f"{ns}:b", make_write(b"b"))
        await backend.invalidate([f"{ns}:c"], new_tombstone(), 10_000)
        tomb = new_tombstone()
        keys = [f"{ns}:a", f"{ns}:b", f"{ns}:c", f"{ns}:missing"]
        assert await backend.invalidate(keys, tomb, 10_000) == 2
        for key in keys:
            entry, _ = await backend.read(key)
            assert entry is not None and entry.marker == tomb
            assert entry.is_tombstone and entry.value is NO_VALUE
        assert await backend.invalidate(keys, new_tombstone(), 10_000) == 0

    async def test_tombstone_stops_fills_that_read_before_it(self, backend: Driver,
                                                             ns: str) -> None:
        old = make_write(b"old")
        await backend.write(f"{ns}:k", old)
        tomb = new_tombstone()
        await backend.invalidate([f"{ns}:k", f"{ns}:was-missing"], tomb, 10_000)
        assert await backend.write(f"{ns}:k", make_write(b"x", expect=old.marker)) is False
        assert await backend.write(f"{ns}:was-missing", make_write(b"x", expect="")) is False
        # a fill that read the tombstone itself may store
        fresh = make_write(b"fresh", expect=tomb)
        assert await backend.write(f"{ns}:k", fresh) is True
        entry, _ = await backend.read(f"{ns}:k")
        assert entry is not None and (entry.marker, entry.value) == (fresh.marker, b"fresh")

    async def test_tombstone_expires(self, backend: Driver, ns: str) -> None:
        await backend.invalidate([f"{ns}:k"], new_tombstone(), SHORT)
        assert (await backend.read(f"{ns}:k"))[0] is not None
        await asyncio.sleep(WAIT)
        assert await backend.read(f"{ns}:k") == (None, ())
        assert await backend.write(f"{ns}:k", make_write(expect="")) is True

    # -- TTLs ---------------------------------------------------------------------------------

    async def test_entry_ttl_is_honoured(self, backend: Driver, ns: str) -> None:
        await backend.write(f"{ns}:short", make_write(px=SHORT))
        await backend.write(f"{ns}:long", make_write(px=10_000))
        assert (await backend.read(f"{ns}:short"))[0] is not None
        await asyncio.sleep(WAIT)
        assert (await backend.read(f"{ns}:short"))[0] is None
        assert (await backend.read(f"{ns}:long"))[0] is not None
        assert await backend.raw(f"{ns}:short") is None

    async def test_tag_keys_live_at_least_as_long_as_the_entry(self, backend: Driver,
                                                               ns: str) -> None:
        write = make_write(px=1_000, tags=[f"{ns}:t"], tag_px=SHORT // 2)
        await backend.write(f"{ns}:k", write)
        await asyncio.sleep(WAIT)
        entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t"])
        assert entry is not None
        assert tokens == (tag_token(write.new_tag, 1),) == entry.tags

    async def test_tag_ttl_is_extended_never_shortened(self, backend: Driver, ns: str) -> None:
        first = make_write(px=SHORT, tags=[f"{ns}:t"], tag_px=SHORT)
        await backend.write(f"{ns}:a", first)
        await backend.write(f"{ns}:b", make_write(px=SHORT, tags=[f"{ns}:t"], tag_px=5_000))
        brief = make_write(px=SHORT // 2, tags=[f"{ns}:t"], tag_px=SHORT // 2)
        await backend.write(f"{ns}:c", brief)
        await asyncio.sleep(WAIT)
        _, tokens = await backend.read(f"{ns}:x", [f"{ns}:t"])
        assert tokens == (tag_token(first.new_tag, 1),)

    async def test_invalidated_tag_lives_px(self, backend: Driver, ns: str) -> None:
        token = new_tag_token(invalidated=True)
        await backend.invalidate_tags([f"{ns}:t"], token, SHORT)
        assert (await backend.read(f"{ns}:x", [f"{ns}:t"]))[1] == (tag_token(token, 1),)
        await asyncio.sleep(WAIT)
        assert (await backend.read(f"{ns}:x", [f"{ns}:t"]))[1] == (None,)

    # -- tag tokens ---------------------------------------------------------------------------

    async def test_missing_tags_are_created_with_tokens_of_their_own(self, backend: Driver,
                                                                     ns: str) -> None:
        tags = [f"{ns}:t1", f"{ns}:t2", f"{ns}:t3"]
        write = make_write(tags=tags)
        assert await backend.write(f"{ns}:k", write) is True
        _, tokens = await backend.read(f"{ns}:other", tags)
        assert tokens == tuple(tag_token(write.new_tag, i) for i in (1, 2, 3))

    async def test_existing_tags_are_adopted_not_replaced(self, backend: Driver,
                                                          ns: str) -> None:
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

    async def test_unconditional_write_adopts_invalidated_tags(self, backend: Driver,
                                                               ns: str) -> None:
        token = new_tag_token(invalidated=True)
        await backend.invalidate_tags([f"{ns}:t"], token, 10_000)
        write = make_write(tags=[f"{ns}:t"])
        assert await backend.write(f"{ns}:k", write) is True
        entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t"])
        assert entry is not None and entry.tags == tokens == (tag_token(token, 1),)

    async def test_conditional_tags_unchanged_store(self, backend: Driver, ns: str) -> None:
        first = make_write(tags=[f"{ns}:t"])
        await backend.write(f"{ns}:a", first)
        _, seen = await backend.read(f"{ns}:k", [f"{ns}:t"])
        write = make_write(tags=[f"{ns}:t"], expect="", expect_tags=seen)
        assert await backend.write(f"{ns}:k", write) is True
        entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t"])
        assert entry is not None and entry.tags == tokens == (tag_token(first.new_tag, 1),)

    async def test_conditional_tag_seen_missing_adopts_token_of_a_store(
            self, backend: Driver, ns: str) -> None:
        _, seen = await backend.read(f"{ns}:k", [f"{ns}:t"])
        assert seen == (None,)
        other = make_write(tags=[f"{ns}:t"])  # another fill creates the tag meanwhile
        await backend.write(f"{ns}:other", other)
        write = make_write(tags=[f"{ns}:t"], expect="", expect_tags=seen)
        assert await backend.write(f"{ns}:k", write) is True
        entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t"])
        assert entry is not None and entry.tags == tokens == (tag_token(other.new_tag, 1),)

    async def test_conditional_tag_seen_missing_aborts_after_invalidation(
            self, backend: Driver, ns: str) -> None:
        _, seen = await backend.read(f"{ns}:k", [f"{ns}:t"])
        await backend.invalidate_tags([f"{ns}:t"], new_tag_token(invalidated=True), 10_000)
        write = make_write(tags=[f"{ns}:t"], expect="", expect_tags=seen)
        assert await backend.write(f"{ns}:k", write) is False
        assert await backend.read(f"{ns}:k") == (None, ())

    async def test_conditional_tag_changed_aborts(self, backend: Driver, ns: str) -> None:
        await backend.write(f"{ns}:a", make_write(tags=[f"{ns}:t"]))
        _, seen = await backend.read(f"{ns}:k", [f"{ns}:t"])
        await backend.invalidate_tags([f"{ns}:t"], new_tag_token(invalidated=True), 10_000)
        write = make_write(tags=[f"{ns}:t"], expect="", expect_tags=seen)
        assert await backend.write(f"{ns}:k", write) is False
        assert await backend.read(f"{ns}:k") == (None, ())

    async def test_conditional_tag_vanished_aborts(self, backend: Driver, ns: str) -> None:
        await backend.write(f"{ns}:a", make_write(px=SHORT, tags=[f"{ns}:t"], tag_px=SHORT))
        _, seen = await backend.read(f"{ns}:k", [f"{ns}:t"])
        assert seen[0] is not None
        await asyncio.sleep(WAIT)  # the tag key expired: its old token is gone for good
        write = make_write(tags=[f"{ns}:t"], expect="", expect_tags=seen)
        assert await backend.write(f"{ns}:k", write) is False
        assert await backend.read(f"{ns}:k") == (None, ())

    async def test_aborted_write_changes_nothing(self, backend: Driver, ns: str) -> None:
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

    async def test_failed_entry_condition_creates_no_tags(self, backend: Driver,
                                                          ns: str) -> None:
        await backend.write(f"{ns}:k", make_write())
        write = make_write(tags=[f"{ns}:t"], expect="", expect_tags=[None])
        assert await backend.write(f"{ns}:k", write) is False
        assert (await backend.read(f"{ns}:x", [f"{ns}:t"]))[1] == (None,)

    # -- invalidate_tags ----------------------------------------------------------------------

    async def test_invalidate_tags_gives_every_tag_a_token_of_its_own(self, backend: Driver,
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

    async def test_entry_stored_after_invalidation_is_current(self, backend: Driver,
                                                              ns: str) -> None:
        await backend.write(f"{ns}:k", make_write(tags=[f"{ns}:t"]))
        await backend.invalidate_tags([f"{ns}:t"], new_tag_token(invalidated=True), 10_000)
        _, seen = await backend.read(f"{ns}:k", [f"{ns}:t"])
        entry_seen, _ = await backend.read(f"{ns}:k")
        assert entry_seen is not None
        write = make_write(tags=[f"{ns}:t"], expect=entry_seen.marker, expect_tags=seen)
        assert await backend.write(f"{ns}:k", write) is True
        entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t"])
        assert entry is not None and entry.tags == tokens == seen

    # -- delete_matching ----------------------------------------------------------------------

    GLOB_KEYS = ("a*b", "aXb", "a?b", "a[b]", "ab", "a\\b", "xyz")

    @pytest.mark.parametrize(
        ("glob", "expected"),
        [
            ("*", GLOB_KEYS),
            ("a*", ("a*b", "aXb", "a?b", "a[b]", "ab", "a\\b")),
            ("a?b", ("a*b", "aXb", "a?b", "a\\b")),
            ("a\\*b", ("a*b",)),
            ("a\\?b", ("a?b",)),
            ("a\\[b\\]", ("a[b]",)),
            ("a\\\\b", ("a\\b",)),
            ("a[X?]b", ("aXb", "a?b")),
            ("a[^X]b", ("a*b", "a?b", "a\\b")),
            ("nomatch*", ()),
        ],
    )
    async def test_delete_matching_follows_redis_globs(self, backend: Driver, ns: str,
                                                       glob: str,
                                                       expected: tuple[str, ...]) -> None:
        for name in self.GLOB_KEYS:
            await backend.write(f"{ns}:{name}", make_write())
        assert await backend.delete_matching(f"{ns}:{glob}") == len(expected)
        for name in self.GLOB_KEYS:
            present = (await backend.read(f"{ns}:{name}"))[0] is not None
            assert present is (name not in expected), name

    async def test_delete_matching_spans_many_batches(self, backend: Driver, ns: str) -> None:
        for i in range(1_200):
            await backend.write(f"{ns}:many:{i}", make_write())
        await backend.write(f"{ns}:keep", make_write())
        assert await backend.delete_matching(f"{ns}:many:*") == 1_200
        assert (await backend.read(f"{ns}:many:7"))[0] is None
        assert (await backend.read(f"{ns}:keep"))[0] is not None

    async def test_delete_matching_reaches_tombstones_and_tags(self, backend: Driver,
                                                               ns: str) -> None:
        await backend.write(f"{ns}:e", make_write(tags=[f"{ns}:t"]))
        await backend.invalidate([f"{ns}:tomb"], new_tombstone(), 10_000)
        assert await backend.delete_matching(f"{ns}:*") == 3
        entry, tokens = await backend.read(f"{ns}:tomb", [f"{ns}:t"])
        assert (entry, tokens) == (None, (None,))

    async def test_delete_matching_does_not_count_expired_keys(self, backend: Driver,
                                                               ns: str) -> None:
        await backend.write(f"{ns}:short", make_write(px=SHORT))
        await backend.write(f"{ns}:live", make_write())
        await asyncio.sleep(WAIT)
        assert await backend.delete_matching(f"{ns}:*") == 1

    # -- raw ----------------------------------------------------------------------------------

    async def test_raw_shows_entries_and_tag_tokens(self, backend: Driver, ns: str) -> None:
        write = make_write(tags=[f"{ns}:t"])
        await backend.write(f"{ns}:k", write)
        assert await backend.raw(f"{ns}:missing") is None
        assert await backend.raw(f"{ns}:t") == tag_token(write.new_tag, 1).encode()
        raw = await backend.raw(f"{ns}:k")
        if backend.stores_objects:
            assert isinstance(raw, Entry) and raw.marker == write.marker
            assert raw.value == PAYLOAD
        else:
            assert isinstance(raw, bytes)
            assert raw.startswith(write.marker.encode()) and raw.endswith(b"\n" + PAYLOAD)


class BytesBackendContract:
    """What a backend storing payload bytes (Redis) also does: unreadable values."""

    CORRUPT_VALUES = (
        b"garbage",
        b"\x80\x81\x00 binary",
        b"",
        b"cdT:",  # a truncated tombstone
        b"cd1:",  # a truncated entry
        b"cd1:zz\n{",  # an entry header that does not parse
        b"cd1:0123456789abcdef:notanumber:0:\n{}",
        b"cd1:0123456789abcdef:1:1:no newline",
    )

    @pytest.mark.parametrize("raw", CORRUPT_VALUES)
    async def test_unreadable_value_reads_as_corrupt(self, backend: Driver, poke: Poke,
                                                     ns: str, raw: bytes) -> None:
        await poke(f"{ns}:k", raw)
        entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t"])
        assert tokens == (None,)
        assert entry is not None
        if raw.startswith(b"cdT:"):
            assert entry.is_tombstone  # a tombstone needs no payload
        else:
            assert entry.marker == CORRUPT and entry.value is NO_VALUE

    @pytest.mark.parametrize("raw", [v for v in CORRUPT_VALUES if not v.startswith(b"cdT:")])
    async def test_expect_unreadable_overwrites_an_unreadable_value(
            self, backend: Driver, poke: Poke, ns: str, raw: bytes) -> None:
        await poke(f"{ns}:k", raw)
        entry, seen = await backend.read(f"{ns}:k", [f"{ns}:t"])
        assert entry is not None and entry.marker == CORRUPT
        write = make_write(b"healed", tags=[f"{ns}:t"], expect=entry.marker, expect_tags=seen)
        assert await backend.write(f"{ns}:k", write) is True
        entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t"])
        assert entry is not None and (entry.marker, entry.value) == (write.marker, b"healed")
        assert entry.tags == tokens

    async def test_expect_unreadable_loses_to_a_store_made_meanwhile(
            self, backend: Driver, poke: Poke, ns: str) -> None:
        await poke(f"{ns}:k", b"garbage")
        other = make_write(b"other")
        await backend.write(f"{ns}:k", other)
        assert await backend.write(f"{ns}:k", make_write(expect=CORRUPT)) is False
        assert await _marker(backend, f"{ns}:k") == other.marker

    async def test_raw_returns_the_stored_bytes(self, backend: Driver, poke: Poke,
                                                ns: str) -> None:
        await poke(f"{ns}:k", b"\x00raw\xff")
        assert await backend.raw(f"{ns}:k") == b"\x00raw\xff"

    async def test_invalidate_counts_only_entries(self, backend: Driver, poke: Poke,
                                                  ns: str) -> None:
        await poke(f"{ns}:junk", b"garbage")
        await backend.write(f"{ns}:e", make_write())
        assert await backend.invalidate([f"{ns}:junk", f"{ns}:e"], new_tombstone(), 5_000) == 1
