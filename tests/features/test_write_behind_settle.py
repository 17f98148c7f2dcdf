"""What the ack after a write-behind flush does to the flushed key, on every backend, with and
without a near cache: an entry that replaced the held one meanwhile (a fill after a tag
invalidation or an ``invalidate()``, a ``refresh()``), all loaded from the database's older
row, gives way to a tombstone, so the next read loads what was flushed; a fill that loaded
before the flush and stores after the ack stores nothing; a newer record's entry stays."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import cachedeco
from cachedeco import Registry
from tests.support.deployments import BACKENDS, Deployment
from tests.support.events import Events

pytestmark = [pytest.mark.deployments(*BACKENDS), pytest.mark.parametrize("near", [0, 100])]


class Reader:
    """A tagged ``@cached`` reader of the events table (its newest ``v`` per id) and a
    ``@write_behind`` writer into it; ``gate``, when set, holds every load after its query;
    ``flushed``, when set, runs after each flush with its records."""

    def __init__(self, reg: Registry, events: Events, *, is_async: bool = False) -> None:
        self.loads = 0
        self.gate: threading.Event | None = None
        self.queried = threading.Event()
        self.flushed: Callable[[list[dict[str, Any]]], None] | None = None

        def flush(records: list[dict[str, Any]]) -> None:
            events.flush(records)
            if self.flushed is not None:
                self.flushed(records)

        def query(event_id: str) -> dict[str, Any] | None:
            self.loads += 1
            v = dict(events.rows()).get(event_id)  # rows sorted: the newest v wins
            self.queried.set()
            if self.gate is not None:
                assert self.gate.wait(10)
            return None if v is None else {"id": event_id, "v": v}

        def record(event_id: str, v: int) -> dict[str, Any]:
            return {"id": event_id, "v": v}

        if is_async:
            async def aquery(event_id: str) -> dict[str, Any] | None:
                return query(event_id)

            async def arecord(event_id: str, v: int) -> dict[str, Any]:
                return record(event_id, v)

            self.get = cachedeco.cached(registry=reg, ttl=60, tags=["events"])(aquery)
            self.put = cachedeco.write_behind(self.get, flush=flush,
                                              flush_interval=3600)(arecord)
        else:
            self.get = cachedeco.cached(registry=reg, ttl=60, tags=["events"])(query)
            self.put = cachedeco.write_behind(self.get, flush=flush,
                                              flush_interval=3600)(record)


@pytest.fixture
def setup(make_registry: Callable[..., Registry], deployment: Deployment, events: Events,
          near: int) -> tuple[Registry, Reader]:
    """A registry (on_error="raise": a backend fault fails the test) and the reader on it,
    with the event ``a`` at v=1 in the database."""
    reg = make_registry(deployment.url, on_error="raise", near_cache=near)
    events.insert([{"id": "a", "v": 1}])
    return reg, Reader(reg, events)


def _is_tombstone(deployment: Deployment, key: str) -> bool:
    raw = deployment.raw.get(key) if deployment.has_server else None
    return raw is None or raw.startswith(b"cdT:")


@pytest.mark.parametrize("change", ["invalidate_tags", "invalidate", "refresh", "delete"])
def test_what_replaced_a_held_entry_gives_way_at_the_flush(
        setup: tuple[Registry, Reader], deployment: Deployment, change: str) -> None:
    reg, r = setup
    r.put("a", 2)
    assert r.get("a") == {"id": "a", "v": 2} and r.loads == 0  # held: served from the cache
    if change == "invalidate_tags":
        reg.invalidate_tags("events")
    elif change == "invalidate":
        assert r.get.invalidate("a")
    elif change == "refresh":
        r.get.refresh("a")
    else:
        assert reg.clear() >= 1
    # the database has not seen v=2 yet: a load now finds the older row (the price of
    # dropping an entry whose record waits), which the cache keeps until the flush
    assert r.get("a") == {"id": "a", "v": 1}
    assert r.get("a") == {"id": "a", "v": 1}
    loads = r.loads
    assert loads == 1
    reg.flush()
    if deployment.has_server:
        assert _is_tombstone(deployment, r.get.key("a"))
    assert r.get("a") == {"id": "a", "v": 2}  # loaded again: what was flushed
    assert r.get("a") == {"id": "a", "v": 2} and r.loads == loads + 1


def test_a_load_that_spans_the_flush_stores_nothing(setup: tuple[Registry, Reader],
                                                    deployment: Deployment) -> None:
    """After a tag invalidation a reader loads the older row, slowly; the flush and its ack
    come in between: its store must not land (it would hold v=1 until the TTL)."""
    reg, r = setup
    r.put("a", 2)
    reg.invalidate_tags("events")
    r.gate = threading.Event()
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(r.get("a")))
    reader.start()
    assert r.queried.wait(10)  # it read the older row and waits to store it
    reg.flush()
    r.gate.set()
    reader.join(10)
    assert got == [{"id": "a", "v": 1}]  # served what it loaded
    r.gate = None
    assert r.get("a") == {"id": "a", "v": 2}
    assert r.loads == 2


def test_a_newer_records_entry_stays_through_an_older_ones_flush(
        setup: tuple[Registry, Reader], events: Events) -> None:
    reg, r = setup
    r.put("a", 2)

    def flushed(records: list[dict[str, Any]]) -> None:
        if records[0]["v"] == 2:
            r.put("a", 3)  # queued while the first record is being flushed

    r.flushed = flushed
    reg.flush()
    assert r.get("a") == {"id": "a", "v": 3} and r.loads == 0  # still the held entry
    reg.flush()
    assert events.rows() == [("a", 1), ("a", 2), ("a", 3)]
    assert r.get("a") == {"id": "a", "v": 3} and r.loads == 0  # restored, not dropped


async def test_async_what_a_tag_invalidation_left_gives_way_at_the_flush(
        amake_registry: Callable[..., Registry], deployment: Deployment, events: Events,
        near: int) -> None:
    reg = amake_registry(deployment.url, on_error="raise", near_cache=near)
    events.insert([{"id": "a", "v": 1}])
    r = Reader(reg, events, is_async=True)
    await r.put("a", 2)
    await reg.ainvalidate_tags("events")
    assert await r.get("a") == {"id": "a", "v": 1}
    await reg.aflush()
    assert await r.get("a") == {"id": "a", "v": 2}
    assert await r.get("a") == {"id": "a", "v": 2} and r.loads == 2


def test_a_refresh_that_spans_the_flush_leaves_no_older_row(setup: tuple[Registry, Reader]
                                                            ) -> None:
    """A refresh loads the database's row from before the flush and stores after the ack:
    the entry changed meanwhile (settled under a new marker), so it is dropped instead."""
    reg, r = setup
    r.put("a", 2)
    r.gate = threading.Event()
    got: list[Any] = []
    refresher = threading.Thread(target=lambda: got.append(r.get.refresh("a")))
    refresher.start()
    assert r.queried.wait(10)
    reg.flush()
    r.gate.set()
    refresher.join(10)
    assert got == [{"id": "a", "v": 1}]  # what it loaded
    r.gate = None
    assert r.get("a") == {"id": "a", "v": 2}
