"""The write-behind delivery driver, asyncio flavour: it carries out the operations of the
I/O-free flow (:mod:`cachedeco.flows.delivery`) against a queue.

While the user's ``flush`` runs (and while a retry waits) the lease on the batch is kept
alive (renewed every ``claim_after / 3``); when the delivery is interrupted (a cancelled task,
a ``KeyboardInterrupt``) the batch is given back so the next take claims it at once; so it is
when a retry must wait and the caller said not to (``wait=False``: :class:`Deferred`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from cachedeco.backends.contracts.queues import AsyncQueue
from cachedeco.flows.delivery import (
    Ack,
    Bury,
    Deferred,
    Flow,
    Flush,
    Op,
    Renew,
    Settings,
    Sleep,
    Take,
)
from cachedeco.runtime.guard import warn
from cachedeco.runtime.primitives import acancel_lost, akeep_alive, asleep

__all__ = ["run"]


def _renew_failed(exc: Exception) -> None:
    warn("renew", "cachedeco: cannot renew a write-behind lease (%s)", exc)


def _keeping(queue: AsyncQueue, consumer: str, ids: tuple[str, ...], settings: Settings
             ) -> contextlib.AbstractAsyncContextManager[None]:
    """Keep the lease on ``ids`` for the block (durable queues only)."""
    if not queue.durable:
        return contextlib.nullcontext()
    return akeep_alive(lambda: queue.renew(consumer, ids), settings.claim_after / 3,
                       _renew_failed)


async def _do(op: Op, queue: AsyncQueue, consumer: str, flush: Callable[[list[Any]], Any],
              settings: Settings) -> Any:
    match op:
        case Take(count):
            return await queue.take(consumer, count, settings.claim_after_ms)
        case Renew(ids):
            return await queue.renew(consumer, ids)
        case Flush(records, ids):
            async with _keeping(queue, consumer, ids, settings):
                return await flush(records)
        case Ack(ids, restores):
            return await queue.ack(ids, restores)
        case Bury(ids, error):
            return await queue.bury(ids, error)
        case Sleep(seconds, ids):
            async with _keeping(queue, consumer, ids, settings):
                await asleep(seconds)
    return None


async def run(flow: Flow, queue: AsyncQueue, consumer: str, flush: Callable[[list[Any]], Any],
              settings: Settings, *, wait: bool = True) -> None:
    """Carry out a flow; a failing operation's error goes back into the flow. Without
    ``wait``, a retry's wait ends the run instead (:class:`Deferred`, the batch given back)."""
    held: tuple[str, ...] = ()
    result: Any = None
    error: Exception | None = None
    try:
        while True:
            if acancel_lost():  # a cancel swallowed on the way (see acancel_lost): stop here
                raise asyncio.CancelledError
            try:
                op = flow.send(result) if error is None else flow.throw(error)
            except StopIteration:
                return
            result, error = None, None
            if isinstance(op, Sleep) and not wait:
                raise Deferred(f"a retry in {op.seconds:.2f}s")
            try:
                result = await _do(op, queue, consumer, flush, settings)
            except Exception as exc:
                error = exc
            if isinstance(op, Take) and error is None:
                held = tuple(m.id for m in result[0])
    except BaseException:
        flow.close()
        if held:
            with contextlib.suppress(Exception):
                await asyncio.shield(queue.release(consumer, held, settings.claim_after_ms))
        raise
