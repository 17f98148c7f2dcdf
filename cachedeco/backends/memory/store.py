"""The embedded default backend: an in-process, thread-safe, bounded LRU that honours TTLs.

It keeps values as objects (no serialization, like ``functools.lru_cache``), so a hit costs a
dict lookup under a lock. It carries out the same envelope contract as Redis, tags and
compare-and-set included, so every guarantee holds on ``memory://`` too, within one process.
Expiry times are wall-clock (``time.time()``), as Redis keeps them and as an entry's soft
expiry is, so a hit reads one clock.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from cachedeco.backends.base import ReadResult
from cachedeco.backends.memory.leases import MemoryLeases
from cachedeco.backends.memory.queues import MemoryQueue
from cachedeco.backends.memory.tally import MemoryTally
from cachedeco.core.entry import CREATED_TAG, ENTRY, NO_VALUE, Entry, Write, tag_token
from cachedeco.core.keyspace import QueueNames

__all__ = ["MemoryBackend", "Row", "glob_to_regex"]

_Item = Entry | str
#: A row of the table: expiry, the item, and for the compiled hit (:mod:`cachedeco.flows.hot`)
#: what it checks without reading the item's fields: until when it is a fresh value (0.0 for
#: a tombstone or a tag token), its tag tokens (a token's row: the token alone) and its value.
Row = tuple[float, _Item, float, tuple[str, ...], Any]


def _row(expires: float, item: _Item) -> Row:
    """The table's row for ``item`` expiring at ``expires``."""
    if isinstance(item, str):
        return (expires, item, 0.0, (item,), None)
    value = item.value
    return (expires, item, 0.0 if value is NO_VALUE else min(expires, item.soft), item.tags,
            value)


@lru_cache(maxsize=256)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Translate a Redis glob (``*``, ``?``, ``[...]``, ``\\`` escapes) into a regex."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and (end := pattern.find("]", i + 1)) > i:
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


class MemoryBackend:
    """A bounded LRU of envelopes and tag tokens with per-key TTLs."""

    stores_objects = True

    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[str, Row] = OrderedDict()
        self._lock = threading.Lock()
        self._leases = MemoryLeases()
        self._queues: dict[str, MemoryQueue] = {}
        self._tallies: dict[str, MemoryTally] = {}

    def _get(self, key: str, now: float) -> _Item | None:
        found = self._data.get(key)
        if found is None:
            return None
        if found[0] <= now:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return found[1]

    def _put(self, key: str, item: _Item, px: int, now: float) -> None:
        self._data[key] = _row(now + px / 1000, item)
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def _extend(self, key: str, px: int, now: float) -> None:
        expires, item = self._data[key][:2]
        self._data[key] = _row(max(expires, now + px / 1000), item)

    def read(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        """Return the live entry at ``key`` and its tags' current tokens (the hit path)."""
        now = time.time()
        data = self._data
        with self._lock:
            found = data.get(key)
            if found is not None:
                if found[0] > now:
                    data.move_to_end(key)
                else:
                    del data[key]
                    found = None
            tokens: list[str | None] = []
            for tag in tag_keys:
                item = data.get(tag)
                token = item[1] if item is not None and item[0] > now else None
                tokens.append(token if token.__class__ is str else None)
        entry = found[1] if found is not None else None
        return (entry if entry.__class__ is Entry else None), tuple(tokens)

    def table(self) -> OrderedDict[str, Row]:
        """The table itself, for the hit path compiled over this store
        (:mod:`cachedeco.flows.hot`): it reads rows (see ``Row``) with single dict operations,
        each atomic, and only ever moves a key to the end (its use); every change goes through
        the methods."""
        return self._data

    def read_many(self, reads: Sequence[tuple[str, Sequence[str]]]) -> list[ReadResult]:
        """Many reads (no round trip to save in process: each is :meth:`read`)."""
        return [self.read(key, tag_keys) for key, tag_keys in reads]

    def _check(self, key: str, write: Write, now: float) -> list[str | None] | None:
        """The conditions of a write, checked before anything changes; None means abort."""
        if write.expect is not None:
            current = self._get(key, now)
            marker = current.marker if isinstance(current, Entry) else ""
            if marker != write.expect:
                return None
        tokens: list[str | None] = []
        for i, tag in enumerate(write.tag_keys):
            token = self._get(tag, now)
            token = token if isinstance(token, str) else None
            if write.expect_tags is not None:
                seen = write.expect_tags[i]
                if seen is None and token is not None and not token.startswith(CREATED_TAG):
                    return None
                if seen is not None and token != seen:
                    return None
            tokens.append(token)
        return tokens

    def write(self, key: str, write: Write) -> bool:
        """Store the entry if its conditions hold, creating missing tag keys."""
        now = time.time()
        with self._lock:
            tokens = self._check(key, write, now)
            if tokens is None:
                return False
            tag_px = max(write.tag_px, write.px)
            recorded = []
            for i, (tag, token) in enumerate(zip(write.tag_keys, tokens, strict=True), 1):
                if token is None:
                    made = tag_token(write.new_tag, i)
                    self._put(tag, made, tag_px, now)
                    recorded.append(made)
                else:
                    self._extend(tag, tag_px, now)
                    recorded.append(token)
            entry = Entry(write.marker, write.value, write.soft, write.delta, tuple(recorded))
            self._put(key, entry, write.px, now)
        return True

    def invalidate(self, keys: Sequence[str], marker: str, px: int) -> int:
        """Leave a tombstone at each key; count the values it removed."""
        now = time.time()
        removed = 0
        with self._lock:
            for key in keys:
                old = self._get(key, now)
                removed += isinstance(old, Entry) and old.marker.startswith(ENTRY)
                self._put(key, Entry(marker, NO_VALUE, 0.0, 0.0, ()), px, now)
        return removed

    def invalidate_tags(self, tag_keys: Sequence[str], token: str, px: int) -> None:
        """Give every tag key a token of its own made from ``token``."""
        now = time.time()
        with self._lock:
            for i, tag in enumerate(tag_keys, 1):
                self._put(tag, tag_token(token, i), px, now)

    def delete_matching(self, pattern: str, spare: str | None = None) -> int:
        """Delete the keys matching the glob (but those starting with ``spare``); count them."""
        regex = glob_to_regex(pattern)
        now = time.time()
        with self._lock:
            doomed = [key for key in self._data if regex.fullmatch(key)
                      and not (spare and key.startswith(spare))]
            live = 0
            for key in doomed:
                live += self._data.pop(key)[0] > now
        return live

    def invalidate_tags_matching(self, pattern: str, token: str, px: int) -> int:
        """New tokens for the tag keys matching the glob; count them."""
        regex = glob_to_regex(pattern)
        with self._lock:
            tags = [key for key in self._data if regex.fullmatch(key)]
        self.invalidate_tags(tags, token, px)
        return len(tags)

    def raw(self, key: str) -> bytes | Entry | None:
        """The live entry at ``key`` (tag tokens come back encoded)."""
        with self._lock:
            item = self._get(key, time.time())
        return item.encode() if isinstance(item, str) else item

    def leases(self) -> MemoryLeases:
        """In-process leases with the Redis leases' semantics."""
        return self._leases

    def queue(self, names: QueueNames) -> MemoryQueue:
        """The in-process write-behind queue called ``names`` (one per name)."""
        with self._lock:
            queue = self._queues.get(names.stream)
            if queue is None:
                queue = self._queues[names.stream] = MemoryQueue(self, names)
            return queue

    def tally(self, key: str) -> MemoryTally:
        """The in-process table of counts at ``key`` (one per key)."""
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None:
                tally = self._tallies[key] = MemoryTally()
            return tally

    def close(self) -> None:
        """Nothing to release; the data stays for the life of the object."""
