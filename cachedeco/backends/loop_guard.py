"""Work run on an event loop as it shuts down, before it closes.

An asyncio connection can only be closed on its own loop, and a loop that closes with it
open keeps it open for good (its transport cannot be closed on a closed loop). A loop run by
``asyncio.run()``, ``asyncio.Runner`` or asgiref's ``async_to_sync`` closes its unfinished
async generators (``loop.shutdown_asyncgens()``) once its tasks are done and before it
closes: a guard is such a generator, started on the loop and left at its only ``yield``,
whose closing awaits the work.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

__all__ = ["on_shutdown"]


def on_shutdown(work: Callable[[], Awaitable[None]]) -> AsyncGenerator[None, None]:
    """Await ``work()`` on the running loop when it shuts down, or when the guard returned is
    closed first (``await guard.aclose()``); keep a reference to the guard meanwhile."""
    guard = _guard(work)
    step = guard.asend(None)  # registers the guard with the running loop's hooks
    try:
        step.send(None)
    except StopIteration:  # reached its yield without suspending: the guard is armed
        return guard
    raise RuntimeError("the loop guard suspended before its yield")  # pragma: no cover


async def _guard(work: Callable[[], Awaitable[None]]) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await work()
