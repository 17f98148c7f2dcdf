"""The Redis backend, sync and async: the commands are built and parsed once, here, by pure
functions; the two classes differ only in whether they await the client.

A read is one round trip (``GET``, or ``MGET`` of the entry and its tag keys); a store is one
``EVALSHA`` of the STORE script; invalidations are one pipelined round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.asyncio

from cachedeco._entry import Entry, Write, decode_entry, encode_header
from cachedeco.backends._scripts import STORE
from cachedeco.backends.base import ReadResult
from cachedeco.backends.batching import ReadBatcher

__all__ = ["AsyncRedisBackend", "RedisBackend", "parse_read", "store_args"]

SCAN_COUNT = 500

def parse_read(values: Sequence[bytes | None]) -> ReadResult:
    """Turn ``MGET entry tag…`` replies into an entry and the tags' tokens."""
    raw = values[0]
    entry = None if raw is None else decode_entry(raw)
    return entry, tuple([None if v is None else v.decode("ascii", "replace") for v in values[1:]])

def store_args(key: str, write: Write) -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV of the STORE script for one write."""
    expect = "-" if write.expect is None else write.expect
    conditional = write.expect_tags is not None
    args: list[Any] = [
        expect,
        encode_header(write.marker, write.soft, write.delta),
        write.value,
        write.px,
        max(write.tag_px, write.px),
        write.new_tag,
        "1" if conditional else "0",
    ]
    if write.expect_tags is not None:
        args.extend("" if t is None else t for t in write.expect_tags)
    return [key, *write.tag_keys], args

def count_removed(replies: Sequence[bytes | None]) -> int:
    """How many of ``SET … GET`` replies were live entries (not tombstones or misses)."""
    return sum(1 for old in replies if old is not None and old.startswith(b"cd1:"))

class RedisBackend:
    """A cache backend over a synchronous ``redis.Redis`` client."""

    stores_objects = False

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._exec: Callable[..., Any] = client.execute_command
        self._store = client.register_script(STORE)

    def read(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        """One round trip: the entry and its tags' tokens."""
        if not tag_keys:
            raw = self._exec("GET", key)
            return (None if raw is None else decode_entry(raw)), ()
        return parse_read(self._exec("MGET", key, *tag_keys))

    def write(self, key: str, write: Write) -> bool:
        """One EVALSHA of the STORE script."""
        keys, args = store_args(key, write)
        return bool(self._store(keys=keys, args=args))

    def invalidate(self, keys: Sequence[str], marker: str, px: int) -> int:
        """Tombstones for ``keys`` in one pipelined round trip."""
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, marker, px=px, get=True)
            return count_removed(pipe.execute())

    def invalidate_tags(self, tag_keys: Sequence[str], token: str, px: int) -> None:
        """New tokens for every tag in one pipelined round trip."""
        with self.client.pipeline(transaction=False) as pipe:
            for tag in tag_keys:
                pipe.set(tag, token, px=px)
            pipe.execute()

    def delete_matching(self, pattern: str, spare: str | None = None) -> int:
        """SCAN MATCH + UNLINK in batches, sparing keys that start with ``spare``; never KEYS."""
        deleted = 0
        batch: list[Any] = []
        kept = spare.encode() if spare else None
        for key in self.client.scan_iter(match=pattern, count=SCAN_COUNT):
            if kept is not None and key.startswith(kept):
                continue
            batch.append(key)
            if len(batch) >= SCAN_COUNT:
                deleted += self.client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += self.client.unlink(*batch)
        return deleted

    def raw(self, key: str) -> bytes | Entry | None:
        """The bytes stored at ``key``."""
        value = self.client.get(key)
        return value if isinstance(value, bytes) or value is None else str(value).encode()

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

class AsyncRedisBackend:
    """A cache backend over a ``redis.asyncio.Redis`` client; see :class:`RedisBackend`."""

    stores_objects = False

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self._exec: Callable[..., Any] = client.execute_command
        self._store = client.register_script(STORE)
        self._reads = ReadBatcher(self._read_many)

    async def read(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        """One round trip: the entry and its tags' tokens; shared with concurrent reads."""
        reads = self._reads
        if reads.busy:
            reply = await reads.join(key, tag_keys)
        else:
            reads.busy += 1
            try:
                reply = await (self._exec("MGET", key, *tag_keys) if tag_keys
                               else self._exec("GET", key))
            finally:
                reads.busy -= 1
        if not tag_keys:
            return (None if reply is None else decode_entry(reply)), ()
        return parse_read(reply)

    async def _read_many(self, requests: list[tuple[str, tuple[str, ...]]]) -> list[Any]:
        """Many reads in one pipelined round trip."""
        async with self.client.pipeline(transaction=False) as pipe:
            for key, tag_keys in requests:
                if tag_keys:
                    pipe.execute_command("MGET", key, *tag_keys)
                else:
                    pipe.execute_command("GET", key)
            return list(await pipe.execute())

    async def write(self, key: str, write: Write) -> bool:
        """One EVALSHA of the STORE script."""
        keys, args = store_args(key, write)
        return bool(await self._store(keys=keys, args=args))

    async def invalidate(self, keys: Sequence[str], marker: str, px: int) -> int:
        """Tombstones for ``keys`` in one pipelined round trip."""
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, marker, px=px, get=True)
            return count_removed(await pipe.execute())

    async def invalidate_tags(self, tag_keys: Sequence[str], token: str, px: int) -> None:
        """New tokens for every tag in one pipelined round trip."""
        async with self.client.pipeline(transaction=False) as pipe:
            for tag in tag_keys:
                pipe.set(tag, token, px=px)
            await pipe.execute()

    async def delete_matching(self, pattern: str, spare: str | None = None) -> int:
        """SCAN MATCH + UNLINK in batches, sparing keys that start with ``spare``; never KEYS."""
        deleted = 0
        batch: list[Any] = []
        kept = spare.encode() if spare else None
        async for key in self.client.scan_iter(match=pattern, count=SCAN_COUNT):
            if kept is not None and key.startswith(kept):
                continue
            batch.append(key)
            if len(batch) >= SCAN_COUNT:
                deleted += await self.client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await self.client.unlink(*batch)
        return deleted

    async def raw(self, key: str) -> bytes | Entry | None:
        """The bytes stored at ``key``."""
        value = await self.client.get(key)
        return value if isinstance(value, bytes) or value is None else str(value).encode()

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()
