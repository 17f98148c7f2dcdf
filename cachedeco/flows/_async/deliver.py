"""The write-behind delivery driver, asyncio flavour: it carries out the operations of the
I/O-free flow (:mod:`cachedeco.flows.delivery`) against a queue.

While the user's ``flush`` runs (and while a retry waits) the lease on the batch is kept
alive (renewed every ``claim_after / 3``); when the delivery is interrupted (a cancelled task,
a ``KeyboardInterrupt``) the batch is given back so the next take claims it at once, unless
its ``flush`` had returned (then it is acknowledged first); so it is when a retry must wait
and the caller said not to (``wait=False``: :class:`Deferred`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
    Stop,
    Take,
)
from cachedeco.runtime.guard import warn
from cachedeco.runtime.primitives import (
    acancel_lost,
    acollected,
    ahere,
    akeep_alive,
    asleep,
    never,
)

__all__ = ["run"]


def _renew_failed(function: str, exc: Exception) -> None:
    warn(f"renew:{function}", "cannot renew the lease on a write-behind batch of %s (%s)",
         function, exc)


def _keeping(queue: AsyncQueue, consumer: str, ids: tuple[str, ...], settings: Settings
             ) -> contextlib.AbstractAsyncContextManager[None]:
    """Keep the lease on ``ids`` for the block (durable queues only)."""
    if not queue.durable:
        return contextlib.nullcontext()
    return akeep_alive(lambda: queue.renew(consumer, ids), settings.claim_after / 3,
                       functools.partial(_renew_failed, settings.name))


async def _flush(op: Flush, queue: AsyncQueue, consumer: str, flush: Callable[[list[Any]], Any],
                 settings: Settings) -> tuple[Any, BaseException | None]:
    """Call ``flush`` under the batch's lease: its result, and an interruption (a cancel) that
    came once it had returned, as the lease's keep-alive stopped; the batch is delivered then,
    and the driver acknowledges it before it lets the interruption through."""
    returned = False
    result: Any = None
    try:
        async with _keeping(queue, consumer, op.ids, settings):
            result = await flush(op.records)
            returned = True
    except BaseException as exc:
        if not returned or isinstance(exc, Exception):
            raise
        return result, exc
    return result, None


async def _ack(op: Ack, queue: AsyncQueue, interrupted: BaseException | None,
               loop: asyncio.AbstractEventLoop | None) -> tuple[Any, BaseException | None]:
    """Acknowledge a batch: the queue's length, and the interruption to raise once done; an
    interruption that cuts the ack short lets it run once more first (not on a ``loop``
    gone: see :func:`acollected`)."""
    try:
        return await queue.ack(op.ids, op.restores), interrupted
    except BaseException as exc:
        if isinstance(exc, Exception) or acollected(loop):
            raise
        return await queue.ack(op.ids, op.restores), interrupted or exc


async def _do(op: Op, queue: AsyncQueue, consumer: str, settings: Settings,
              hurry: Stop) -> Any:
    """Carry out a take, renew, bury or sleep (cut short once ``hurry()``)."""
    match op:
        case Take(count):
            return await queue.take(consumer, count, settings.claim_after_ms)
        case Renew(ids):
            return await queue.renew(consumer, ids)
        case Bury(ids, error):
            return await queue.bury(ids, error)
        case Sleep(seconds, ids):
            async with _keeping(queue, consumer, ids, settings):
                await asleep(seconds, hurry)
    return None


async def run(flow: Flow, queue: AsyncQueue, consumer: str, flush: Callable[[list[Any]], Any],
              settings: Settings, *, wait: bool = True, hurry: Stop = never) -> None:
    """Carry out a flow; a failing operation's error goes back into the flow. Without
    ``wait``, a retry's wait ends the run instead (:class:`Deferred`, the batch given back);
    so it does once ``hurry()`` (its registry has been closing for a while) on a durable
    queue, which keeps the batch for the next drain (memory:// retries on: its records end
    with the process).

    Once ``flush`` returned, its batch is acknowledged whatever comes: a cancel (the loop of
    ``asyncio.run()`` ending as the job that waited for the flush returns) waits for the ack,
    and an ack the cancel cut short runs again (had it reached the server, the second one
    leaves the batch's entries as tombstones: misses, not stale values). Given back instead,
    the batch would be delivered twice."""
    loop = ahere()
    hurry = hurry if queue.durable else never
    held: tuple[str, ...] = ()
    result: Any = None
    error: Exception | None = None
    interrupted: BaseException | None = None  # came once a flush returned: raised after its ack
    flushed = False  # the last operation was a flush that returned
    try:
        while True:
            if interrupted is None and acancel_lost():  # a cancel swallowed on the way (see
                raise asyncio.CancelledError           # acancel_lost): stop here
            try:
                op = flow.send(result) if error is None else flow.throw(error)
            except StopIteration:
                if interrupted is not None:
                    raise interrupted from None
                return
            if interrupted is not None and not (flushed and isinstance(op, Ack)):
                raise interrupted
            result, error, flushed = None, None, False
            if isinstance(op, Sleep) and (not wait or hurry()):
                raise Deferred(f"a retry in {op.seconds:.2f}s")
            try:
                if isinstance(op, Flush):
                    result, interrupted = await _flush(op, queue, consumer, flush, settings)
                    flushed = True
                elif isinstance(op, Ack):
                    result, interrupted = await _ack(op, queue, interrupted, loop)
                else:
                    result = await _do(op, queue, consumer, settings, hurry)
            except Exception as exc:
                if acollected(loop):  # closed by the collector: a step that failed for it (a
                    raise GeneratorExit from None  # command cut off) must not lead to another
                error = exc
            if isinstance(op, Take) and error is None:
                held = tuple(m.id for m in result[0])
            if isinstance(op, Sleep) and hurry():  # cut short: no retry now
                raise Deferred(f"a retry cut short ({op.seconds:.2f}s)")
    except BaseException:
        flow.close()
        if acollected(loop):  # closed by the collector, whatever a step raised for it: it
            raise GeneratorExit from None  # awaits nothing (the batch's lease runs out instead)
        if held:
            with contextlib.suppress(Exception):
                await asyncio.shield(queue.release(consumer, held, settings.claim_after_ms))
        raise
