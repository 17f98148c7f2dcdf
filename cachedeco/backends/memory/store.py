"""The embedded default backend: an in-process, thread-safe, bounded LRU that honours TTLs.

It keeps values as objects (no serialization, like ``functools.lru_cache``), so a hit costs a
dict lookup under a lock. It carries out the same envelope contract as Redis, tags and
compare-and-set included, so every guarantee holds on ``memory://`` too, within one process.
Expiry times are wall-clock (``time.time()``), as Redis keeps them and as an entry's soft
expiry is, so a hit reads one clock.

``maxsize`` counts entries (and tombstones, which take an entry's place). Tag tokens live in
a table of their own, so that they neither take an entry's room nor are evicted by the
entries they validate (every entry carries at least its function's tag). That table is
bounded too, at :data:`TAGS_PER_ENTRY` times ``maxsize``, dropping the token written longest
ago (a function's own tag excepted): an entry whose token is gone is a miss, as when a tag is
invalidated.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Final, cast

from cachedeco.backends.base import ReadResult
from cachedeco.backends.memory.leases import MemoryLeases
from cachedeco.backends.memory.queues import MemoryQueue
from cachedeco.backends.memory.tally import MemoryTally
from cachedeco.core.entry import ANY_TAG, CREATED_TAG, ENTRY, NO_VALUE, Entry, Write, tag_token
from cachedeco.core.keyspace import RESERVED, QueueNames

__all__ = ["TAGS_PER_ENTRY", "MemoryBackend", "Row", "glob_to_regex"]

#: Tag tokens kept per entry of ``maxsize`` (a token is a short string: its row costs about
#: 200 bytes, a small part of an entry's).
TAGS_PER_ENTRY: Final = 4
_OWN: Final = ":" + RESERVED  # after the prefix in a key of cachedeco's own (KeySpace._own)

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


def _live(table: OrderedDict[str, Row], key: str, now: float) -> Row | None:
    """The row at ``key`` unless it expired (then it is removed)."""
    found = table.get(key)
    if found is not None and found[0] <= now:
        del table[key]
        return None
    return found


def _is_fn_tag(key: str) -> bool:
    """Whether ``key`` is a function's own tag (``prefix:~fn:…``), not a tag whose text
    holds ``:~fn:`` (``prefix:~tag:…``): the family follows the first ``:~``."""
    at = key.find(_OWN)
    return at >= 0 and key.startswith("fn:", at + len(_OWN))


class MemoryBackend:
    """A bounded LRU of envelopes, and a bounded table of tag tokens, with per-key TTLs."""

    stores_objects = True

    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[str, Row] = OrderedDict()
        #: Tag keys' rows (``Row`` of a token), oldest write first.
        self._tags: OrderedDict[str, Row] = OrderedDict()
        self._most_tags = maxsize * TAGS_PER_ENTRY
        self._lock = threading.Lock()
        self._leases = MemoryLeases()
        self._queues: dict[str, MemoryQueue] = {}
        self._tallies: dict[str, MemoryTally] = {}

    def _get(self, key: str, now: float) -> Entry | None:
        """The live entry or tombstone at ``key``, used (the LRU order), or None."""
        found = _live(self._data, key, now)
        if found is None:
            return None
        self._data.move_to_end(key)
        return cast("Entry", found[1])  # tag tokens live in _tags

    def _token(self, tag: str, now: float) -> str | None:
        """The live token of a tag key, or None."""
        found = _live(self._tags, tag, now)
        return None if found is None else cast("str", found[1])

    def _put(self, key: str, item: _Item, px: int, now: float) -> None:
        if isinstance(item, str):
            self._place_tag(key, now + px / 1000, item)
            return
        self._data[key] = _row(now + px / 1000, item)
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def _trim_tags(self) -> None:
        """Drop the tokens written longest ago beyond the bound, but not a function's own tag
        (one per function): every entry of it carries that tag, and reads do not refresh a
        token, so a hot function that is only read would lose all its entries at once."""
        tags, spared = self._tags, 0
        while len(tags) > self._most_tags and spared < len(tags):
            oldest = next(iter(tags))
            if _is_fn_tag(oldest):
                tags.move_to_end(oldest)
                spared += 1
            else:
                del tags[oldest]

    def _keep(self, tag: str, token: str, px: int, now: float) -> None:
        """A tag key a write uses again, with the token it found: it lives as long as its
        newest entry needs, and is the last its table drops (put back if the write's other
        tags just pushed it out)."""
        found = self._tags.get(tag)
        expires = now + px / 1000
        self._place_tag(tag, expires if found is None else max(found[0], expires), token)

    def _place_tag(self, tag: str, expires: float, token: str) -> None:
        """The tag key's token, the last its table drops; the table kept to its bound."""
        self._tags[tag] = _row(expires, token)
        self._tags.move_to_end(tag)
        self._trim_tags()

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
            tags = self._tags
            for tag in tag_keys:
                item = tags.get(tag)
                tokens.append(cast("str", item[1]) if item is not None and item[0] > now
                              else None)
        return (cast("Entry", found[1]) if found is not None else None), tuple(tokens)

    def table(self) -> OrderedDict[str, Row]:
        """The table itself, for the hit path compiled over this store
        (:mod:`cachedeco.flows.hot`): it reads rows (see ``Row``) with single dict operations,
        each atomic, and only ever moves a key to the end (its use); every change goes through
        the methods."""
        return self._data

    def tag_table(self) -> OrderedDict[str, Row]:
        """The tag tokens' table, for the compiled hit path likewise (it only reads it)."""
        return self._tags

    def read_many(self, reads: Sequence[tuple[str, Sequence[str]]]) -> list[ReadResult]:
        """Many reads (no round trip to save in process: each is :meth:`read`)."""
        return [self.read(key, tag_keys) for key, tag_keys in reads]

    def _check(self, key: str, write: Write, now: float) -> list[str | None] | None:
        """The conditions of a write, checked before anything changes; None means abort."""
        if write.expect is not None:
            current = self._get(key, now)
            marker = current.marker if current is not None else ""
            if marker != write.expect:
                return None
        tokens: list[str | None] = []
        for i, tag in enumerate(write.tag_keys):
            token = self._token(tag, now)
            if write.expect_tags is not None:
                seen = write.expect_tags[i]
                if seen is None and token is not None and not token.startswith(CREATED_TAG):
                    return None
                if seen is not None and seen not in (token, ANY_TAG):
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
                    self._keep(tag, token, tag_px, now)
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
                removed += old is not None and old.marker.startswith(ENTRY)
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
        live = 0
        with self._lock:
            for table in (self._data, self._tags):
                doomed = [key for key in table if regex.fullmatch(key)
                          and not (spare and key.startswith(spare))]
                for key in doomed:
                    live += table.pop(key)[0] > now
        return live

    def invalidate_tags_matching(self, pattern: str, token: str, px: int) -> int:
        """New tokens for the tag keys matching the glob; count them."""
        regex = glob_to_regex(pattern)
        now = time.time()
        with self._lock:
            tags = [key for key, row in self._tags.items() if row[0] > now
                    and regex.fullmatch(key)]
        self.invalidate_tags(tags, token, px)
        return len(tags)

    def raw(self, key: str) -> bytes | Entry | None:
        """The live entry at ``key`` (tag tokens come back encoded)."""
        now = time.time()
        with self._lock:
            token = self._token(key, now)
            return self._get(key, now) if token is None else token.encode()

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

    def beat(self, key: str) -> None:
        """None: what lives in this process never goes back in time."""
        return None

    def close(self) -> None:
        """Nothing to release; the data stays for the life of the object."""
