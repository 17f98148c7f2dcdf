"""The backend contract for ``delete_matching``: Redis globs, many batches, tombstones and tag
keys, expired keys, on every backend."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.backends import SHORT, WAIT, Driver, make_write, new_tombstone

# --- delete_matching ------------------------------------------------------------------------------


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
async def test_delete_matching_follows_redis_globs(
        backend: Driver, ns: str, glob: str, expected: tuple[str, ...]) -> None:
    for name in GLOB_KEYS:
        await backend.write(f"{ns}:{name}", make_write())
    assert await backend.delete_matching(f"{ns}:{glob}") == len(expected)
    for name in GLOB_KEYS:
        present = (await backend.read(f"{ns}:{name}"))[0] is not None
        assert present is (name not in expected), name


async def test_delete_matching_spans_many_batches(backend: Driver, ns: str) -> None:
    for i in range(1_200):
        await backend.write(f"{ns}:many:{i}", make_write())
    await backend.write(f"{ns}:keep", make_write())
    assert await backend.delete_matching(f"{ns}:many:*") == 1_200
    assert (await backend.read(f"{ns}:many:7"))[0] is None
    assert (await backend.read(f"{ns}:keep"))[0] is not None


async def test_delete_matching_reaches_tombstones_and_tags(backend: Driver, ns: str) -> None:
    await backend.write(f"{ns}:e", make_write(tags=[f"{ns}:t"]))
    await backend.invalidate([f"{ns}:tomb"], new_tombstone(), 10_000)
    assert await backend.delete_matching(f"{ns}:*") == 3
    entry, tokens = await backend.read(f"{ns}:tomb", [f"{ns}:t"])
    assert (entry, tokens) == (None, (None,))


async def test_delete_matching_does_not_count_expired_keys(backend: Driver, ns: str) -> None:
    await backend.write(f"{ns}:short", make_write(px=SHORT))
    await backend.write(f"{ns}:live", make_write())
    await asyncio.sleep(WAIT)
    assert await backend.delete_matching(f"{ns}:*") == 1
