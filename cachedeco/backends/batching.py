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

__all__ = ["ReadBatcher"]

Request = tuple[str, tuple[str, ...]]
#: Sends many reads in one pipeline and returns their raw replies in order.
SendMany = Callable[[list[Request]], Awaitable[list[Any]]]


class ReadBatcher:
    """Coalesces the reads of one event loop into pipelined batches."""

    def __init__(self, send_many: SendMany) -> None:
        self.send_many = send_many
        self.busy = 0  # reads (direct or batched) whose reply is still awaited
        self._batch: dict[Request, asyncio.Future[Any]] | None = None

    async def join(self, key: str, tag_keys: Sequence[str]) -> Any:
        """The raw reply to one read, sent with the others of this turn of the loop."""
        batch = self._batch
        if batch is None:
            batch = self._batch = {}
            asyncio.get_running_loop().call_soon(self._flush)
        request = (key, tuple(tag_keys))
        future = batch.get(request)
        if future is None:
            future = batch[request] = asyncio.get_running_loop().create_future()
        return await asyncio.shield(future)  # a cancelled caller leaves the others' result

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch:
            self.busy += 1
            task = asyncio.get_running_loop().create_task(self._send(batch))
            task.add_done_callback(_retrieve)

    async def _send(self, batch: dict[Request, asyncio.Future[Any]]) -> None:
        try:
            replies = await self.send_many(list(batch))
        except BaseException as exc:
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: a caller that went away logs nothing
            if not isinstance(exc, Exception):
                raise
        else:
            for future, reply in zip(batch.values(), replies, strict=True):
                if not future.done():
                    future.set_result(reply)
        finally:
            self.busy -= 1


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a flush task's outcome as seen (its errors went to the callers)."""
    if not task.cancelled():
        task.exception()
