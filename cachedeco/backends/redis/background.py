"""Work a Redis backend leaves to run on its own, in both flavours: a daemon thread (sync)
or a task on the running event loop (asyncio), and the sleep each one uses. So far one job
uses it: releasing the leases that timed-out acquires may have taken (see the leases)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["aschedule", "asleep", "schedule", "sleep"]

_RUNNING: set[asyncio.Task[Any]] = set()  # tasks are kept referenced until they end


def schedule(work: Callable[[], object]) -> None:
    """Run ``work`` in a daemon thread."""
    threading.Thread(target=work, name="cachedeco-redis", daemon=True).start()


def aschedule(work: Callable[[], Coroutine[Any, Any, object]]) -> None:
    """Run ``work`` as a task of the running event loop."""
    task = asyncio.get_running_loop().create_task(work())
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)


def sleep(seconds: float) -> None:
    """Block this thread for ``seconds``."""
    time.sleep(seconds)


async def asleep(seconds: float) -> None:
    """Suspend this task for ``seconds``."""
    await asyncio.sleep(seconds)
