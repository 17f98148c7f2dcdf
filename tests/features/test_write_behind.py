"""``@write_behind`` on every deployment, with SQLite behind ``flush``: the record is cached at
once and held until flushed, batching, coalescing, the flush interval, retries, burying,
``clear()`` sparing the queue, and the values the flush receives."""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import pytest

import cachedeco
from cachedeco import Registry
from tests.support._sync.writers import event_functions
from tests.support.deployments import ALL, BACKENDS, REDIS_BACKENDS, Deployment
from tests.support.events import Events
from tests.support.write_behind import HELD, RESTORED, stream_of, ttls

pytestmark = pytest.mark.deployments(*BACKENDS)


@pytest.mark.deployments(*ALL)
def test_records_are_cached_at_once_held_and_flushed(reg: Registry, events: Events,
                                                     deployment: Deployment,
                                                     prefix: str) -> None:
    get_event, record_event = event_functions(reg, events.flush, batch_size=40)
    for i in range(30):  # under batch_size: the worker is not woken yet
        assert record_event(f"e{i}", i) == {"id": f"e{i}", "v": i}
    assert get_event("e7") == {"id": "e7", "v": 7}  # the reader sees it before any flush
    assert events.rows() == []
    assert reg.stats().write_behind_pending == 30
    keys = [get_event.key(f"e{i}") for i in range(100)]
    stream = stream_of(prefix, record_event)
    if deployment.has_server:
        assert min(ttls(deployment.raw, keys[:30])) > HELD
        assert deployment.raw.xlen(stream) == 30
    for i in range(30, 100):  # full batches wake the worker: it delivers meanwhile
        record_event(f"e{i}", i)
    reg.flush()
    assert events.rows() == sorted((f"e{i}", i) for i in range(100))
    assert max(events.batches) <= 40
    if deployment.has_server:
        assert deployment.raw.xlen(stream) == 0
        restored = ttls(deployment.raw, keys)
        assert min(restored) > 0 and max(restored) <= RESTORED  # on every slot
    stats = reg.stats()
    assert (stats.write_behind_pending, stats.write_behind_flushed, stats.hits) == (0, 100, 1)
    assert stats.backend_errors == 0


def test_batches_never_exceed_batch_size(reg: Registry, events: Events) -> None:
    _, record_event = event_functions(reg, events.flush, batch_size=7)
    for i in range(30):
        record_event(f"e{i}", i)
    reg.flush()
    assert max(events.batches) <= 7 and sum(events.batches) == 30
    assert events.rows() == sorted((f"e{i}", i) for i in range(30))


def test_a_full_batch_is_flushed_without_waiting(reg: Registry, events: Events) -> None:
    _, record_event = event_functions(reg, events.flush, batch_size=10)
    for i in range(10):
        record_event(f"e{i}", i)
    deadline = time.monotonic() + 5
    while len(events.rows()) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(events.rows()) == 10


def test_records_are_flushed_within_the_flush_interval(reg: Registry, events: Events) -> None:
    _, record_event = event_functions(reg, events.flush, flush_interval=0.1)
    record_event("a", 1)
    record_event("b", 2)
    start = time.monotonic()  # queued (a first call's connections are not the worker's time)
    while len(events.rows()) < 2 and time.monotonic() - start < 5:
        time.sleep(0.01)
    assert events.rows() == [("a", 1), ("b", 2)]
    assert time.monotonic() - start < 1.0  # ten intervals: a worker that waits for more fails


def test_coalescing_keeps_the_newest_record_per_key(reg: Registry, events: Events) -> None:
    get_event, record_event = event_functions(reg, events.flush, batch_size=30)
    for v in range(3):
        for i in range(10):
            record_event(f"e{i}", 100 * v + i)
    reg.flush()
    assert events.rows() == sorted((f"e{i}", 200 + i) for i in range(10))
    assert get_event("e3") == {"id": "e3", "v": 203}
    assert reg.stats().write_behind_flushed == 10


def test_without_coalescing_every_record_is_flushed(reg: Registry, events: Events) -> None:
    _, record_event = event_functions(reg, events.flush, coalesce=False)
    for v in range(5):
        record_event("a", v)
    reg.flush()
    assert events.rows() == [("a", v) for v in range(5)]


def test_failing_twice_then_succeeding_writes_each_record_once(
        reg: Registry, events: Events, caplog: pytest.LogCaptureFixture) -> None:
    failures = [2]

    def flaky(records: list[dict[str, Any]]) -> None:
        with events.connect() as db:  # rolled back when the "database" fails
            events.insert(records, db)
            if failures[0]:
                failures[0] -= 1
                raise sqlite3.OperationalError("database is locked")

    _, record_event = event_functions(reg, flaky, retry_delay=0.01, batch_size=50)
    for i in range(120):
        record_event(f"e{i}", i)
    with caplog.at_level(logging.WARNING, logger="cachedeco"):
        reg.flush()
    assert events.rows() == sorted((f"e{i}", i) for i in range(120))  # each exactly once
    stats = reg.stats()
    assert (stats.write_behind_flushed, stats.write_behind_retried) == (120, 100)
    assert (stats.write_behind_dead, stats.write_behind_pending) == (0, 0)
    assert sum("retry" in r.getMessage() for r in caplog.records) == 2


def test_max_retries_zero_buries_at_once(reg: Registry) -> None:
    calls = []

    def flush(records: list[dict[str, Any]]) -> None:
        calls.append(records)
        if len(calls) == 1:
            raise RuntimeError("down")

    _, record_event = event_functions(reg, flush, max_retries=0)
    record_event("a", 1)
    reg.flush()
    assert len(calls) == 1 and len(reg.dead_letters()) == 1
    assert reg.replay_dead_letters() == 1  # (a dead letter left in memory warns at exit)
    reg.flush()
    assert len(calls) == 2 and reg.dead_letters() == []


def test_an_interrupted_flush_gives_its_batch_back(reg: Registry, events: Events) -> None:
    interrupt = [True]

    def flush(records: list[dict[str, Any]]) -> None:
        if interrupt[0]:
            interrupt[0] = False
            raise KeyboardInterrupt
        events.flush(records)

    _, record_event = event_functions(reg, flush)
    record_event("a", 1)
    with pytest.raises(KeyboardInterrupt):
        reg.flush()
    reg.flush()
    assert events.rows() == [("a", 1)]


def test_a_newer_pending_write_keeps_the_entry_held(reg: Registry,
                                                    deployment: Deployment) -> None:
    def flush(records: list[dict[str, Any]]) -> None:
        if records[0]["v"] == 1:
            record_event("a", 2)  # queued while the first record is being flushed

    get_event, record_event = event_functions(reg, flush)
    record_event("a", 1)
    reg.flush()
    assert get_event("a") == {"id": "a", "v": 2}
    reg.flush()
    if deployment.has_server:
        assert 0 < deployment.raw.pttl(get_event.key("a")) <= RESTORED


def test_uncacheable_results_are_still_queued(reg: Registry, events: Events) -> None:
    @cachedeco.cached(registry=reg, condition=lambda v: v["v"] >= 0)
    def get_event(event_id: str) -> dict[str, Any]:
        return {"id": event_id, "v": 0}

    @cachedeco.write_behind(get_event, flush=events.flush)
    def record_event(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    record_event("a", -1)
    assert get_event("a") == {"id": "a", "v": 0}  # the old entry was dropped, not kept
    reg.flush()
    assert events.rows() == [("a", -1)]


@dataclass(frozen=True)
class Point:
    x: int
    y: int


def test_the_flush_receives_the_values_returned(reg: Registry) -> None:
    got: list[Any] = []

    @cachedeco.write_behind(key="p:{x}", flush=got.extend, registry=reg)
    def save_point(x: int, y: int) -> Point:
        return Point(x, y)

    returned = [save_point(i, i * i) for i in range(3)]
    reg.flush()
    assert got == returned and all(type(p) is Point for p in got)


def test_methods_and_a_key_template(reg: Registry, events: Events) -> None:
    class Repo:
        @cachedeco.write_behind(key="ev:{event_id}", flush=events.flush, registry=reg)
        def record(self, event_id: str, v: int) -> dict[str, Any]:
            return {"id": event_id, "v": v}

        @cachedeco.write_behind(key="sev:{event_id}", flush=events.flush, registry=reg)
        @staticmethod
        def srecord(event_id: str, v: int) -> dict[str, Any]:
            return {"id": event_id, "v": v}

    Repo().record("a", 1)
    Repo.srecord("b", 2)
    reg.flush()
    assert events.rows() == [("a", 1), ("b", 2)]


def test_clear_keeps_queued_records_and_dead_letters(reg: Registry, events: Events,
                                                     deployment: Deployment,
                                                     prefix: str) -> None:
    broken = [True]

    def flush(records: list[dict[str, Any]]) -> None:
        if broken[0]:
            raise sqlite3.OperationalError("disk I/O error")
        events.flush(records)

    get_event, record_event = event_functions(reg, flush, max_retries=0)
    record_event("dead", 0)
    reg.flush()  # one dead letter
    broken[0] = False
    for i in range(40):
        record_event(f"e{i}", i)
    stream = stream_of(prefix, record_event)
    assert reg.clear() >= 41  # every entry (the dead letter's one too), nothing of the queue
    assert reg.invalidate_pattern("*wb*") == 0
    if deployment.has_server:
        assert deployment.raw.exists(get_event.key("e1")) == 0  # on every primary
        assert deployment.raw.xlen(stream) == 40
    assert [d.record for d in reg.dead_letters()] == [{"id": "dead", "v": 0}]
    reg.flush()
    assert events.rows() == sorted((f"e{i}", i) for i in range(40))
    assert reg.replay_dead_letters() == 1
    reg.flush()
    assert ("dead", 0) in events.rows() and reg.stats().write_behind_pending == 0
    if deployment.has_server:
        assert deployment.raw.xlen(stream) == 0


@pytest.mark.deployments(*REDIS_BACKENDS)
def test_queue_keys_live_under_the_prefix(reg: Registry, events: Events,
                                          deployment: Deployment, prefix: str) -> None:
    _, record_event = event_functions(reg, events.flush, max_retries=0)
    record_event("a", 1)
    ours = {k.decode() for k in deployment.raw.scan_iter(match="*wb*", count=1000)
            if prefix.encode() in k}
    assert ours == {stream_of(prefix, record_event)}
    assert all(k.startswith(f"{prefix}:~wb:{{") for k in ours)
