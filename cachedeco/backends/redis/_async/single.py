"""The Redis backend over one server, asyncio flavour (also over Sentinel's primary:
``master_for`` gives a client that follows failovers).

A read is one round trip (``GET``, or ``MGET`` of the entry and its tag keys; many reads share
one ``MGET``); a store is one
``EVALSHA`` of the STORE script; invalidations are one pipelined round trip. Commands are
built and parsed by :mod:`cachedeco.backends.redis.commands`.

A full server (``maxmemory`` with ``noeviction``) refuses an invalidation's writes but not
deletes: the keys (entries, or tag keys: their entries then miss) are unlinked at once, so
no reader gets the old value meanwhile, and the error goes on to auto-recovery, which writes
the tombstones or tokens once the server takes writes again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import redis.asyncio

from cachedeco.backends.base import ReadResult
from cachedeco.backends.redis._async.direct import DirectScript
from cachedeco.backends.redis._async.direct import direct as direct_path
from cachedeco.backends.redis._async.leases import AsyncRedisLeases
from cachedeco.backends.redis._async.queues import AsyncRedisQueue
from cachedeco.backends.redis._async.tally import AsyncRedisTally
from cachedeco.backends.redis.commands import (
    SCAN_COUNT,
    count_removed,
    many_keys,
    parse_many,
    parse_read,
    store_args,
    store_need,
)
from cachedeco.backends.redis.scripts import STORE, STORE_RELEASE
from cachedeco.backends.redis.tag_lives import TagLives, stored
from cachedeco.core.entry import Entry, Write, decode_entry, page_token, tag_token
from cachedeco.core.forking import redo_after_fork
from cachedeco.core.keyspace import QueueNames

__all__ = ["AsyncRedisBackend"]


class AsyncRedisBackend:
    """A cache backend over a ``redis.asyncio.Redis`` client."""

    stores_objects = False

    def __init__(self, client: redis.asyncio.Redis, *, companions: Sequence[Any] = (),
                 direct: bool = False) -> None:
        self.client = client
        self.companions = tuple(companions)  # e.g. the sentinels' clients, closed with ours
        #: How reads and stores are sent: straight on a pooled connection for a client
        #: cachedeco made (``direct``, see :mod:`.direct`), else through redis-py's path.
        self._exec: Callable[..., Any] = (direct_path(client) if direct
                                          else client.execute_command)
        store, store_release = client.register_script(STORE), client.register_script(STORE_RELEASE)
        self._store: Callable[..., Any] = DirectScript(self._exec, store) if direct else store
        self._store_release: Callable[..., Any] = (DirectScript(self._exec, store_release)
                                                   if direct else store_release)
        self._lives = TagLives()
        self._leases = AsyncRedisLeases(client)
        self._queues: dict[str, AsyncRedisQueue] = {}
        self._lock = threading.Lock()
        redo_after_fork(self)  # a lock of its own in a forked child

    async def read(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        """One round trip: the entry and its tags' tokens."""
        if not tag_keys:
            raw = await self._exec("GET", key)
            return (None if raw is None else decode_entry(raw)), ()
        return parse_read(await self._exec("MGET", key, *tag_keys))

    async def read_many(self, reads: Sequence[tuple[str, Sequence[str]]]) -> list[ReadResult]:
        """One ``MGET`` of every entry and every distinct tag key."""
        if not reads:
            return []
        keys, positions = many_keys(reads)
        return parse_many(await self._exec("MGET", *keys), positions)

    async def write(self, key: str, write: Write) -> bool:
        """One EVALSHA of the STORE script (asking the tag keys' lifetimes only when this
        process does not know them to be long enough), or of STORE_RELEASE when the write
        carries its load's lease (``write.release``, whose ``done`` it sets)."""
        sent = time.monotonic()
        tags = write.tag_keys
        checks = self._lives.checks(tags, store_need(write), sent) if tags else ""
        keys, args = store_args(key, write, checks)
        release = write.release
        if release is None:
            reply = await self._store(keys=keys, args=args)
        else:
            keys += (release.lease, release.wake, release.mark)
            args += (release.token, release.wake_px)
            release.sent = True
            released, reply = await self._store_release(keys=keys, args=args)
            release.done = bool(released)
        if tags and "1" in (checks or "1"):  # something was asked: keep the answer
            self._lives.note(tags, reply, sent)
        return stored(reply)

    async def invalidate(self, keys: Sequence[str], marker: str, px: int) -> int:
        """Tombstones for ``keys`` in one pipelined round trip (a full server:
        see the module's docstring)."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(key, marker, px=px, get=True)
                return count_removed(await pipe.execute())
        except redis.exceptions.OutOfMemoryError:
            await self.client.unlink(*keys)
            raise

    async def invalidate_tags(self, tag_keys: Sequence[str], token: str, px: int) -> None:
        """New tokens for every tag in one pipelined round trip (a full server:
        see the module's docstring)."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for i, tag in enumerate(tag_keys, 1):
                    pipe.set(tag, tag_token(token, i), px=px)
                await pipe.execute()
        except redis.exceptions.OutOfMemoryError:
            await self.client.unlink(*tag_keys)
            raise

    async def delete_matching(self, pattern: str, spare: str | None = None) -> int:
        """SCAN MATCH + UNLINK in batches, sparing keys that start with ``spare``; never KEYS."""
        deleted = 0
        kept = spare.encode() if spare else None
        async for page in self._pages(pattern):
            keys = [k for k in page if kept is None or not k.startswith(kept)]
            if keys:
                deleted += await self.client.unlink(*keys)
        return deleted

    async def invalidate_tags_matching(self, pattern: str, token: str, px: int) -> int:
        """SCAN MATCH, and new tokens for each page of tag keys found (one round trip a
        page; each page's tokens made from ``token`` and its number, so that each tag key
        holds a token of its own); never KEYS."""
        renewed = 0
        async for page in self._pages(pattern):
            await self.invalidate_tags([k.decode() for k in page], page_token(token, renewed),
                                       px)
            renewed += len(page)
        return renewed

    async def _pages(self, pattern: str) -> AsyncIterator[list[bytes]]:
        """The keys matching ``pattern``, ``SCAN_COUNT`` at a time (the last page shorter)."""
        page: list[bytes] = []
        async for key in self.client.scan_iter(match=pattern, count=SCAN_COUNT):
            page.append(key)
            if len(page) >= SCAN_COUNT:
                yield page
                page = []
        if page:
            yield page

    async def raw(self, key: str) -> bytes | Entry | None:
        """The bytes stored at ``key``."""
        value = await self.client.get(key)
        return value if isinstance(value, bytes) or value is None else str(value).encode()

    def leases(self) -> AsyncRedisLeases:
        """Leases on this server."""
        return self._leases

    def queue(self, names: QueueNames) -> AsyncRedisQueue:
        """The write-behind stream called ``names`` on this server."""
        with self._lock:
            queue = self._queues.get(names.stream)
            if queue is None:
                queue = self._queues[names.stream] = AsyncRedisQueue(self.client, names)
            return queue

    def tally(self, key: str) -> AsyncRedisTally:
        """The table of counts in the hash at ``key`` (all its state is in Redis)."""
        return AsyncRedisTally(self.client, key)

    async def beat(self, key: str) -> dict[str, int]:
        """INCR: the counter at ``key`` after this process's one more (sent as INCR, the
        command the ACL docs list: redis-py's ``incr`` sends INCRBY)."""
        return {key: int(await self._exec("INCR", key))}

    async def close(self) -> None:
        """Close the client's connections (and its companions')."""
        await self.client.aclose()
        for companion in self.companions:
            await companion.aclose()
