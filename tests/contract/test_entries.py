"""The backend contract for entries: read and write, conditional writes, tombstones, TTLs
and ``raw``, on every backend."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.backends import (
    CORRUPT,
    NO_VALUE,
    PAYLOAD,
    SHORT,
    WAIT,
    Driver,
    Entry,
    Write,
    before_expiry,
    make_write,
    marker_at,
    new_marker,
    new_tag_token,
    new_tombstone,
    tag_token,
)

# --- read and unconditional write -----------------------------------------------------------------


async def test_read_of_missing_key_and_tags(backend: Driver, ns: str) -> None:
    entry, tokens = await backend.read(f"{ns}:nothing", [f"{ns}:t1", f"{ns}:t2"])
    assert entry is None
    assert tokens == (None, None)
    assert await backend.read(f"{ns}:nothing") == (None, ())


async def test_write_then_read_round_trips_every_field(backend: Driver, ns: str) -> None:
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


async def test_payload_bytes_survive_exactly(backend: Driver, ns: str) -> None:
    payload = b"line one\nline two\x00\xff\r\n:,cd1:"
    await backend.write(f"{ns}:k", make_write(payload, tags=[f"{ns}:t"]))
    entry, _ = await backend.read(f"{ns}:k", [f"{ns}:t"])
    assert entry is not None and entry.value == payload


async def test_read_with_other_tags_reports_their_tokens(backend: Driver, ns: str) -> None:
    write = make_write(tags=[f"{ns}:t1"])
    await backend.write(f"{ns}:k", write)
    entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t1", f"{ns}:other"])
    assert entry is not None and entry.tags == (tag_token(write.new_tag, 1),)
    assert tokens == (tag_token(write.new_tag, 1), None)


async def test_unconditional_write_replaces_entry(backend: Driver, ns: str) -> None:
    await backend.write(f"{ns}:k", make_write(b"1"))
    second = make_write(b"2")
    assert await backend.write(f"{ns}:k", second) is True
    entry, _ = await backend.read(f"{ns}:k")
    assert entry is not None and (entry.marker, entry.value) == (second.marker, b"2")


async def test_unconditional_write_replaces_tombstone(backend: Driver, ns: str) -> None:
    await backend.invalidate([f"{ns}:k"], new_tombstone(), 10_000)
    write = make_write(b"new")
    assert await backend.write(f"{ns}:k", write) is True
    assert await marker_at(backend, f"{ns}:k") == write.marker


# --- conditional writes on the entry --------------------------------------------------------------


async def test_expect_missing_stores_only_when_absent(backend: Driver, ns: str) -> None:
    first = make_write(b"1", expect="")
    assert await backend.write(f"{ns}:k", first) is True
    assert await backend.write(f"{ns}:k", make_write(b"2", expect="")) is False
    entry, _ = await backend.read(f"{ns}:k")
    assert entry is not None and (entry.marker, entry.value) == (first.marker, b"1")


async def test_expect_marker_stores_only_over_that_marker(backend: Driver, ns: str) -> None:
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


async def test_expect_unreadable_never_matches_readable_state(backend: Driver, ns: str) -> None:
    assert await backend.write(f"{ns}:missing", make_write(expect=CORRUPT)) is False
    assert await backend.read(f"{ns}:missing") == (None, ())
    entry = make_write(b"1")
    await backend.write(f"{ns}:entry", entry)
    assert await backend.write(f"{ns}:entry", make_write(b"2", expect=CORRUPT)) is False
    assert await marker_at(backend, f"{ns}:entry") == entry.marker
    tomb = new_tombstone()
    await backend.invalidate([f"{ns}:tomb"], tomb, 10_000)
    assert await backend.write(f"{ns}:tomb", make_write(expect=CORRUPT)) is False
    assert await marker_at(backend, f"{ns}:tomb") == tomb


# --- tombstones -----------------------------------------------------------------------------------


async def test_invalidate_leaves_tombstones_and_counts_live_entries(
        backend: Driver, ns: str) -> None:
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


async def test_tombstone_stops_fills_that_read_before_it(backend: Driver, ns: str) -> None:
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


async def test_tombstone_expires(backend: Driver, ns: str) -> None:
    async def left(n: str) -> None:
        await backend.invalidate([f"{n}:k"], new_tombstone(), SHORT)
        assert (await backend.read(f"{n}:k"))[0] is not None

    n, _ = await before_expiry(left, ns)
    await asyncio.sleep(WAIT)
    assert await backend.read(f"{n}:k") == (None, ())
    assert await backend.write(f"{n}:k", make_write(expect="")) is True


# --- TTLs -----------------------------------------------------------------------------------------


async def test_entry_ttl_is_honoured(backend: Driver, ns: str) -> None:
    async def written(n: str) -> None:
        await backend.write(f"{n}:short", make_write(px=SHORT))
        await backend.write(f"{n}:long", make_write(px=10_000))
        assert (await backend.read(f"{n}:short"))[0] is not None

    n, _ = await before_expiry(written, ns)
    await asyncio.sleep(WAIT)
    assert (await backend.read(f"{n}:short"))[0] is None
    assert (await backend.read(f"{n}:long"))[0] is not None
    assert await backend.raw(f"{n}:short") is None


async def test_tag_keys_live_at_least_as_long_as_the_entry(backend: Driver, ns: str) -> None:
    write = make_write(px=1_000, tags=[f"{ns}:t"], tag_px=SHORT // 2)
    await backend.write(f"{ns}:k", write)
    await asyncio.sleep(WAIT)
    entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t"])
    assert entry is not None
    assert tokens == (tag_token(write.new_tag, 1),) == entry.tags


async def test_tag_ttl_is_extended_never_shortened(backend: Driver, ns: str) -> None:
    async def extended(n: str) -> Write:  # before the first tag TTL runs out
        first = make_write(px=SHORT, tags=[f"{n}:t"], tag_px=SHORT)
        await backend.write(f"{n}:a", first)
        await backend.write(f"{n}:b", make_write(px=SHORT, tags=[f"{n}:t"], tag_px=5_000))
        return first

    n, first = await before_expiry(extended, ns)
    brief = make_write(px=SHORT // 2, tags=[f"{n}:t"], tag_px=SHORT // 2)
    await backend.write(f"{n}:c", brief)
    await asyncio.sleep(WAIT)
    _, tokens = await backend.read(f"{n}:x", [f"{n}:t"])
    assert tokens == (tag_token(first.new_tag, 1),)


async def test_invalidated_tag_lives_px(backend: Driver, ns: str) -> None:
    token = new_tag_token(invalidated=True)

    async def invalidated(n: str) -> None:
        await backend.invalidate_tags([f"{n}:t"], token, SHORT)
        assert (await backend.read(f"{n}:x", [f"{n}:t"]))[1] == (tag_token(token, 1),)

    n, _ = await before_expiry(invalidated, ns)
    await asyncio.sleep(WAIT)
    assert (await backend.read(f"{n}:x", [f"{n}:t"]))[1] == (None,)


# --- raw ------------------------------------------------------------------------------------------


async def test_raw_shows_entries_and_tag_tokens(backend: Driver, ns: str) -> None:
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
