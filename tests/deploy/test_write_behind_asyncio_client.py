"""`@write_behind` on a backend given as a ready `redis.asyncio.Redis` (an ASGI service's
set-up) with a plain `def` flush: only the loop can reach that client, so the records are
delivered by a task on it, the flush run in a thread; by the worker, by `aflush()` and by
`aclose()`, with nothing logged."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio

from cachedeco import Registry
from tests.support.polling import apoll


async def test_a_sync_flush_is_run_in_a_thread_from_the_loop(
        amake_registry: Callable[..., Registry], redis_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    reg = amake_registry(client, stats_interval=0)
    flushed: list[dict[str, Any]] = []
    threads: set[str] = set()

    def flush(records: list[dict[str, Any]]) -> None:
        threads.add(threading.current_thread().name)
        flushed.extend(records)

    @reg.cached(ttl=60)
    async def get_event(eid: str) -> dict[str, Any] | None:
        return None

    @reg.write_behind(get_event, flush=flush, flush_interval=0.1)
    async def record(eid: str, n: int) -> dict[str, Any]:
        return {"id": eid, "n": n}

    caplog.set_level(logging.WARNING, logger="cachedeco")
    try:
        assert [await record(f"e{i}", i) for i in range(3)] == [
            {"id": f"e{i}", "n": i} for i in range(3)]
        await apoll(lambda: len(flushed) == 3, timeout=5.0)  # the worker, within its interval
        await record("e3", 3)
        await reg.aflush()
        assert sorted(r["id"] for r in flushed) == ["e0", "e1", "e2", "e3"]
        assert threading.main_thread().name not in threads  # never on the loop's thread
        await record("e4", 4)
        await reg.aclose()  # a last drain
        assert sorted(r["id"] for r in flushed)[-1] == "e4"
        assert [r.getMessage() for r in caplog.records if r.name == "cachedeco"] == []
    finally:
        await client.aclose()
