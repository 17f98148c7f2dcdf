"""The backend contract's tools: one awaitable :class:`Driver` over a sync ``Backend`` or an
``AsyncBackend``, so that ``tests/contract`` is written once for every backend,
:func:`make_write`, a ``Write`` with sensible defaults, and the entry envelope's names the
tests use (re-exported: the one place the tests import the private envelope module).

The contract (see ``cachedeco/_entry.py`` and ``cachedeco/backends/base.py``):

- ``read(key, tag_keys)`` returns the entry (None when absent; an unreadable value comes back
  with the ``"?"`` marker) and the current token of every tag key (None when absent).
- ``write(key, w)`` stores atomically and returns False, changing nothing, when a condition
  fails: ``w.expect`` is None (unconditional), ``""`` (the key must be absent), ``"?"`` (the key
  must hold an unreadable value) or a marker (the key must hold exactly that entry or
  tombstone). With ``w.expect_tags`` each tag must still hold the token the fill read; a tag
  the fill saw missing may since have been created by a store (token ``"c…"``: adopted) but
  not by an invalidation (``"i…"``: abort). The i-th missing tag key (from 1) is created with
  ``tag_token(w.new_tag, i)``, a token of its own;
  tag keys live at least ``max(w.tag_px, w.px)`` and are never shortened.
- ``invalidate(keys, marker, px)`` leaves a tombstone for ``px`` ms at every key and returns
  how many live entries it replaced; ``invalidate_tags(tag_keys, token, px)`` sets the i-th
  tag to ``tag_token(token, i)``.
- ``delete_matching(glob)`` deletes the live keys matching a Redis glob (``\\`` escapes
  included) and returns how many.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cachedeco.core.entry import (
    CORRUPT,
    CREATED_TAG,
    NO_VALUE,
    Entry,
    Write,
    decode_entry,
    new_marker,
    new_tag_token,
    new_tombstone,
    tag_token,
)

__all__ = [
    "CORRUPT",
    "CREATED_TAG",
    "NO_VALUE",
    "PAYLOAD",
    "SHORT",
    "WAIT",
    "Driver",
    "Entry",
    "Poke",
    "Write",
    "before_expiry",
    "decode_entry",
    "make_write",
    "marker_at",
    "new_marker",
    "new_tag_token",
    "new_tombstone",
    "tag_token",
]

Poke = Callable[[str, bytes], Awaitable[None]]
PAYLOAD = b'{"answer":42}'
SHORT = 60  # ms: a TTL that runs out during WAIT
WAIT = 0.12  # seconds
T = TypeVar("T")


async def before_expiry(steps: Callable[[str], Awaitable[T]], ns: str,
                        tries: int = 10) -> tuple[str, T]:
    """Run ``steps(n)`` (writes with a SHORT TTL, and what must come before it runs out) in a
    fresh namespace ``n`` under ``ns`` until a run takes less than SHORT ms from its first
    command to its last reply; that namespace and what ``steps`` returned. A slower run (a
    loaded machine) proves nothing, its TTL may have run out between two steps: it runs again,
    and what it asserted is put down to that; a run in time that fails an assertion fails."""
    for attempt in range(tries):
        n = f"{ns}:{attempt}"
        started = time.monotonic()
        try:
            result = await steps(n)
        except AssertionError:
            if time.monotonic() - started < SHORT / 1000:
                raise
            continue
        if time.monotonic() - started < SHORT / 1000:
            return n, result
    raise AssertionError(f"none of {tries} tries took less than the {SHORT} ms TTL")


async def _settle(result: Any) -> Any:
    """The result of a sync call, or the awaited result of an async one."""
    return await result if inspect.isawaitable(result) else result


@dataclass
class Driver:
    """One awaitable face over a sync ``Backend`` or an ``AsyncBackend``. ``two_step``: the
    backend stores in two steps (the tag slot, then the entry's: a Redis Cluster)."""

    backend: Any
    two_step: bool = False

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

    async def invalidate_tags_matching(self, pattern: str, token: str, px: int) -> int:
        return int(await _settle(self.backend.invalidate_tags_matching(pattern, token, px)))

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


async def marker_at(backend: Driver, key: str) -> str:
    """The marker at ``key`` ("" when absent)."""
    entry, _ = await backend.read(key)
    return "" if entry is None else entry.marker
