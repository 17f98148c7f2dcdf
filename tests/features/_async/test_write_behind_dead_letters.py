"""Write-behind dead letters on every deployment: records whose flush keeps failing are listed
(with the error, key, function and time), logged, held in the cache, replayed on demand, and
what waits is delivered when the registry closes."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest

from cachedeco import Registry
from tests.support._async.writers import event_functions
from tests.support.deployments import Deployment
from tests.support.events import Events
from tests.support.write_behind import HELD, RESTORED, stream_of, ttls


async def test_dead_letters_are_listed_logged_held_and_replayed(
        amake_registry: Callable[..., Registry], deployment: Deployment, events: Events,
        prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    reg = amake_registry(deployment.url, on_error="raise")
    broken = [True]

    async def flush(records: list[dict[str, Any]]) -> None:
        if broken[0]:
            raise sqlite3.OperationalError("no such table: events")
        events.flush(records)

    get_event, record_event = event_functions(reg, flush, max_retries=2, retry_delay=0.01)
    for i in range(6):
        await record_event(f"e{i}", i)
    assert await get_event("e4") == {"id": "e4", "v": 4}  # the reader sees it at once
    with caplog.at_level(logging.ERROR, logger="cachedeco"):
        await reg.aflush()
    assert any("dead letters" in r.getMessage() for r in caplog.records)
    dead = await reg.adead_letters()
    assert [d.record for d in dead] == [{"id": f"e{i}", "v": i} for i in range(6)]
    assert all(d.error == "OperationalError: no such table: events" for d in dead)
    assert dead[0].key == get_event.key("e0") and dead[0].failed_at <= time.time()
    assert dead[0].function.endswith("record_event")
    assert reg.stats().write_behind_dead == 6
    keys = [get_event.key(f"e{i}") for i in range(6)]
    if deployment.has_server:
        assert deployment.raw.xlen(stream_of(prefix, record_event) + ":dead") == 6
        assert min(ttls(deployment.raw, keys)) > HELD  # held while dead
    assert await get_event("e2") == {"id": "e2", "v": 2}  # still served from the cache
    broken[0] = False
    assert await reg.areplay_dead_letters() == 6
    await reg.aflush()
    assert events.rows() == [(f"e{i}", i) for i in range(6)]
    assert await reg.adead_letters() == []
    if deployment.has_server:
        assert max(ttls(deployment.raw, keys)) <= RESTORED  # the normal TTL again
    await record_event("late", 99)  # left for aclose() to deliver
    await reg.aclose()
    assert ("late", 99) in events.rows()
