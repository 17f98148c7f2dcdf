"""The asyncio waiting primitives keep a task's cancellation: a cancel that comes as a wait
completes, or that a renewal swallows, neither hangs the caller nor is lost.

On Python 3.11, ``asyncio.wait_for`` returns the awaited result when a cancel comes just as
it completes, and redis-py sends every command under it: a keep-alive cancelled at that
moment renewed on, and the ``lock=True`` load holding it never returned."""

from __future__ import annotations

import asyncio
import concurrent.futures

from cachedeco.backends.contracts.leases import Busy, LeaseName
from cachedeco.backends.memory.leases import AsyncMemoryLeases, MemoryLeases
from cachedeco.core.woken import await_woken
from cachedeco.runtime.primitives import akeep_alive


async def test_a_keep_alive_whose_renewal_swallows_the_cancel_still_stops() -> None:
    renewals: list[str] = []
    renewing = asyncio.Event()

    async def renew() -> bool:
        renewals.append("start")
        renewing.set()
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            if "swallowed" in renewals:
                raise
            renewals.append("swallowed")  # once, as a command's wait_for does on 3.11
        return True

    async def block() -> None:
        async with akeep_alive(renew, 0.01, lambda exc: None):
            await renewing.wait()  # leave the block while a renewal is in flight

    async with asyncio.timeout(2):  # the old keep-alive renewed on, and this never returned
        await block()
    assert renewals == ["start", "swallowed"]
    await asyncio.sleep(0.05)
    assert renewals == ["start", "swallowed"]  # nothing renews after the block


async def _cancel_as_it_wakes(wake: concurrent.futures.Future[None],
                              waiting: asyncio.Task[bool]) -> None:
    """Complete ``wake``, let the wait's own future settle, then cancel the waiting task
    before it resumes: the moment 3.11's ``wait_for`` loses the cancel."""
    await asyncio.sleep(0)  # the task waits
    wake.set_result(None)
    await asyncio.sleep(0)  # the loop settles the task's future; the task has not resumed
    waiting.cancel()


async def test_a_cancel_that_comes_as_a_wake_is_not_lost() -> None:
    woken: concurrent.futures.Future[None] = concurrent.futures.Future()
    task = asyncio.create_task(await_woken(woken, 5.0))
    await _cancel_as_it_wakes(woken, task)
    await asyncio.wait({task}, timeout=2)
    assert task.cancelled()


async def test_a_cancel_that_comes_as_a_memory_lease_is_released_is_not_lost() -> None:
    released: concurrent.futures.Future[None] = concurrent.futures.Future()
    leases = AsyncMemoryLeases(MemoryLeases())
    task = asyncio.create_task(leases.wait(LeaseName("k", "lease:k"), Busy(None, released), 5.0))
    await _cancel_as_it_wakes(released, task)
    await asyncio.wait({task}, timeout=2)
    assert task.cancelled()


async def test_the_waits_still_wake_and_time_out() -> None:
    woken: concurrent.futures.Future[None] = concurrent.futures.Future()
    assert await await_woken(woken, 0.01) is False
    task = asyncio.create_task(await_woken(woken, 5.0))
    await asyncio.sleep(0)
    woken.set_result(None)
    assert await task is True
