"""Waiting, in a test, until something observable holds (never a bare sleep that hopes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["apoll", "apoll_async", "poll"]


def poll(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Return once ``predicate()`` holds; fail the test after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


async def apoll(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """:func:`poll` for an asyncio test (the loop keeps running meanwhile)."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.005)


async def apoll_async(predicate: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """:func:`apoll` for a predicate that awaits (a read from the backend, say)."""
    end = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.005)
