"""The backend contract for unreadable values, on the backends that store bytes: whatever a
key holds reads as CORRUPT (or a tombstone) and a fill can heal it."""

from __future__ import annotations

import pytest

from tests.support.backends import (
    CORRUPT,
    NO_VALUE,
    Driver,
    Poke,
    make_write,
    marker_at,
    new_tombstone,
)

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
async def test_unreadable_value_reads_as_corrupt(
        backend: Driver, poke: Poke, ns: str, raw: bytes) -> None:
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
        backend: Driver, poke: Poke, ns: str, raw: bytes) -> None:
    await poke(f"{ns}:k", raw)
    entry, seen = await backend.read(f"{ns}:k", [f"{ns}:t"])
    assert entry is not None and entry.marker == CORRUPT
    write = make_write(b"healed", tags=[f"{ns}:t"], expect=entry.marker, expect_tags=seen)
    assert await backend.write(f"{ns}:k", write) is True
    entry, tokens = await backend.read(f"{ns}:k", [f"{ns}:t"])
    assert entry is not None and (entry.marker, entry.value) == (write.marker, b"healed")
    assert entry.tags == tokens


async def test_expect_unreadable_loses_to_a_store_made_meanwhile(
        backend: Driver, poke: Poke, ns: str) -> None:
    await poke(f"{ns}:k", b"garbage")
    other = make_write(b"other")
    await backend.write(f"{ns}:k", other)
    assert await backend.write(f"{ns}:k", make_write(expect=CORRUPT)) is False
    assert await marker_at(backend, f"{ns}:k") == other.marker


async def test_raw_returns_the_stored_bytes(backend: Driver, poke: Poke, ns: str) -> None:
    await poke(f"{ns}:k", b"\x00raw\xff")
    assert await backend.raw(f"{ns}:k") == b"\x00raw\xff"


async def test_invalidate_counts_only_entries(backend: Driver, poke: Poke, ns: str) -> None:
    await poke(f"{ns}:junk", b"garbage")
    await backend.write(f"{ns}:e", make_write())
    assert await backend.invalidate([f"{ns}:junk", f"{ns}:e"], new_tombstone(), 5_000) == 1
