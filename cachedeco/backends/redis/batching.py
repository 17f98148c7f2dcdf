"""Read coalescing for asyncio: concurrent reads share pipelined round trips.

A read that finds no other read in flight goes straight to Redis, so a lone caller pays
nothing. A read that starts while others are in flight joins the batch for the next turn of
the event loop; the batch goes out as one pipeline (one round trip, identical reads sent
once), so a burst of callers costs a few round trips instead of one each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio

from cachedeco.backends.base import ReadResult
from cachedeco.backends.redis._async.single import AsyncRedisBackend
from cachedeco.backends.redis.commands import parse_read
from cachedeco.core.entry import decode_entry

__all__ = ["CoalescingRedisBackend", "ReadBatcher"]

Request = tuple[str, tuple[str, ...]]
#: Sends many reads in one pipeline and returns their raw replies in order.
SendMany = Callable[[list[Request]], Awaitable[list[Any]]]


class ReadBatcher:
    """Coalesces the reads of one event loop into pipelined batches."""

    def __init__(self, send_many: SendMany) -> None:
        self.send_many = send_many
        self.busy = 0  # reads (direct or batched) whose reply is still awaited
        #: The next batch: each distinct read and the futures of the callers waiting for it
        #: (one each, so a cancelled caller leaves the others' reply alone: cheaper than an
        #: ``asyncio.shield`` per caller, which a burst of hundreds of callers pays).
        self._batch: dict[Request, list[asyncio.Future[Any]]] | None = None

    async def join(self, key: str, tag_keys: Sequence[str]) -> Any:
        """The raw reply to one read, sent with the others of this turn of the loop."""
        loop = asyncio.get_running_loop()
        batch = self._batch
        if batch is None:
            batch = self._batch = {}
            loop.call_soon(self._flush)
        future = loop.create_future()
        batch.setdefault((key, tuple(tag_keys)), []).append(future)
        return await future

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch:
            self.busy += 1
            task = asyncio.get_running_loop().create_task(self._send(batch))
            task.add_done_callback(_retrieve)

    async def _send(self, batch: dict[Request, list[asyncio.Future[Any]]]) -> None:
        try:
            replies = await self.send_many(list(batch))
        except BaseException as exc:
            for waiters in batch.values():
                for future in waiters:
                    if not future.done():
                        future.set_exception(exc)
                        future.exception()  # retrieved: a caller that went away logs nothing
            if not isinstance(exc, Exception):
                raise
        else:
            for waiters, reply in zip(batch.values(), replies, strict=True):
                for future in waiters:
                    if not future.done():
                        future.set_result(reply)
        finally:
            self.busy -= 1


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a flush task's outcome as seen (its errors went to the callers)."""
    if not task.cancelled():
        task.exception()


class CoalescingRedisBackend(AsyncRedisBackend):
    """The asyncio single-server backend whose concurrent reads share pipelined round trips."""

    def __init__(self, client: redis.asyncio.Redis, *, companions: Sequence[Any] = (),
                 direct: bool = False) -> None:
        super().__init__(client, companions=companions, direct=direct)
        self._reads = ReadBatcher(self._read_many)

    async def read(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        """One round trip, shared with the reads that start while it is in flight."""
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
