"""Waiting for a ``concurrent.futures.Future`` that another thread completes (a lease's
release, a change reported) from a thread or from a task, without ever cancelling it: others
may wait on the same one."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math

__all__ = ["await_woken", "wait_woken"]


def _limit(timeout: float) -> float | None:
    """A timeout for waits that reject infinity (None: no limit)."""
    return None if math.isinf(timeout) else max(timeout, 0.0)


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def wait_woken(woken: concurrent.futures.Future[None], timeout: float) -> bool:
    """Block until ``woken`` completes (True) or ``timeout`` seconds pass (False; ``inf``:
    no limit)."""
    with contextlib.suppress(concurrent.futures.TimeoutError):
        woken.result(_limit(timeout))
    return woken.done()


async def await_woken(woken: concurrent.futures.Future[None], timeout: float) -> bool:
    """:func:`wait_woken` in a task."""
    if woken.done():
        return True
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: concurrent.futures.Future[None]) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody left to wake
            loop.call_soon_threadsafe(_settle, waiter)

    woken.add_done_callback(wake)
    try:  # not asyncio.wait_for: on Python 3.11 it loses a cancel that comes as it wakes
        async with asyncio.timeout(_limit(timeout)):
            await waiter
    except TimeoutError:
        return False
    return True
