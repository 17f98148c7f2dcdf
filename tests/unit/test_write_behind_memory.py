"""@write_behind on memory://: the in-process queue, batching, coalescing, retries, dead
letters and the lifecycle, with SQLite as the database behind ``flush``."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import cachedeco
from cachedeco import ConfigurationError, Registry
from cachedeco.backends.contracts.queues import Message
from cachedeco.core.stats import Stats
from cachedeco.flows.delivery import Ack, Bury, Flush, Job, Settings, deliver, describe
from tests.write_behind_support import Events, make


@pytest.fixture
def reg() -> Iterator[Registry]:
    registry = Registry("memory://", prefix="wbmem")
    yield registry
    registry.close()


@pytest.mark.parametrize("options", [
    {"batch_size": 0}, {"batch_size": 1.5}, {"batch_size": True}, {"batch_size": 10**6},
    {"flush_interval": 0}, {"flush_interval": float("nan")}, {"flush_interval": "5"},
    {"max_retries": -1}, {"max_retries": 2.0}, {"coalesce": 1}, {"claim_after": 0},
    {"retry_delay": -1}, {"ttl": 0}, {"tags": "t"}, {"backend": 3}, {"backend": "nope"},
    {"registry": object()}, {"flush": 42},
])
def test_bad_arguments_are_refused_at_decoration(reg: Registry, options: dict[str, Any]) -> None:
    @cachedeco.cached(registry=reg)
    def get_event(event_id: str) -> dict[str, Any]:
        return {}

    options = {"flush": list.append, "registry": reg, **options}
    with pytest.raises(ConfigurationError):
        decorator = cachedeco.write_behind(key="e:{event_id}", **options)

        @decorator
        def record_event(event_id: str) -> dict[str, Any]:
            return {}


def test_target_and_key_are_exclusive_and_names_unique(reg: Registry) -> None:
    @cachedeco.cached(registry=reg)
    def get_event(event_id: str) -> dict[str, Any]:
        return {}

    with pytest.raises(ConfigurationError):
        @cachedeco.write_behind(get_event, key="e:{event_id}", flush=print)
        def both(event_id: str) -> dict[str, Any]:
            return {}

    with pytest.raises(ConfigurationError):  # the target's parameter is missing
        @cachedeco.write_behind(get_event, flush=print)
        def unnamed(other: str) -> dict[str, Any]:
            return {}

    def twice() -> None:
        @cachedeco.write_behind(key="e:{event_id}", flush=print, registry=reg)
        def record(event_id: str) -> dict[str, Any]:
            return {}

    twice()
    with pytest.raises(ConfigurationError, match="already attached"):
        twice()


def test_record_is_cached_at_once_and_flushed_on_flush(reg: Registry, events: Events) -> None:
    get_event, record_event = make(reg, events.flush)
    assert record_event("a", 1) == {"id": "a", "v": 1}
    assert get_event("a") == {"id": "a", "v": 1}  # the reader sees it before any flush
    assert events.rows() == []
    assert reg.stats().write_behind_pending == 1
    reg.flush()
    assert events.rows() == [("a", 1)]
    stats = reg.stats()
    assert (stats.write_behind_pending, stats.write_behind_flushed, stats.hits) == (0, 1, 1)


def test_close_drains_the_memory_queue(events: Events) -> None:
    reg = Registry("memory://")
    _, record_event = make(reg, events.flush, batch_size=40)
    for i in range(100):
        record_event(f"e{i}", i)
    with reg:
        pass
    assert events.rows() == sorted((f"e{i}", i) for i in range(100))
    assert reg.stats().write_behind_pending == 0


def test_batches_never_exceed_batch_size(reg: Registry, events: Events) -> None:
    _, record_event = make(reg, events.flush, batch_size=7)
    for i in range(30):
        record_event(f"e{i}", i)
    reg.flush()
    assert len(events.rows()) == 30
    assert max(events.batches) <= 7 and sum(events.batches) == 30


def test_coalescing_keeps_the_newest_record_per_key(reg: Registry, events: Events) -> None:
    get_event, record_event = make(reg, events.flush)
    for v in range(5):
        record_event("a", v)
        record_event("b", 10 + v)
    record_event("c", 0)
    reg.flush()
    assert events.rows() == [("a", 4), ("b", 14), ("c", 0)]
    assert get_event("a") == {"id": "a", "v": 4}
    assert reg.stats().write_behind_flushed == 3


def test_without_coalescing_every_record_is_flushed(reg: Registry, events: Events) -> None:
    _, record_event = make(reg, events.flush, coalesce=False)
    for v in range(5):
        record_event("a", v)
    reg.flush()
    assert events.rows() == [("a", v) for v in range(5)]


def test_records_are_flushed_every_flush_interval(reg: Registry, events: Events) -> None:
    _, record_event = make(reg, events.flush, flush_interval=0.1)
    start = time.monotonic()
    record_event("a", 1)
    while not events.rows() and time.monotonic() - start < 5:
        time.sleep(0.01)
    assert events.rows() == [("a", 1)]
    assert time.monotonic() - start < 1.0


def test_a_full_batch_is_flushed_without_waiting(reg: Registry, events: Events) -> None:
    _, record_event = make(reg, events.flush, batch_size=10)
    for i in range(10):
        record_event(f"e{i}", i)
    deadline = time.monotonic() + 5
    while len(events.rows()) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(events.rows()) == 10


def test_failing_flush_is_retried_then_succeeds(reg: Registry, events: Events,
                                                caplog: pytest.LogCaptureFixture) -> None:
    failures = [2]

    def flaky(records: list[dict[str, Any]]) -> None:
        with events.connect() as db:  # rolled back when the "database" fails
            db.executemany("INSERT INTO events VALUES (?, ?)",
                           [(r["id"], r["v"]) for r in records])
            if failures[0]:
                failures[0] -= 1
                raise sqlite3.OperationalError("database is locked")

    _, record_event = make(reg, flaky, retry_delay=0.01)
    for i in range(10):
        record_event(f"e{i}", i)
    with caplog.at_level(logging.WARNING, logger="cachedeco"):
        reg.flush()
    assert events.rows() == sorted((f"e{i}", i) for i in range(10))  # each exactly once
    stats = reg.stats()
    assert (stats.write_behind_retried, stats.write_behind_flushed) == (20, 10)
    assert stats.write_behind_dead == 0
    assert sum("retry" in r.getMessage() for r in caplog.records) == 2


def test_dead_letters_and_replay(reg: Registry, events: Events,
                                 caplog: pytest.LogCaptureFixture) -> None:
    broken = [True]

    def flush(records: list[dict[str, Any]]) -> None:
        if broken[0]:
            raise ValueError("no such table")
        events.flush(records)

    get_event, record_event = make(reg, flush, max_retries=2, retry_delay=0.01)
    for i in range(3):
        record_event(f"e{i}", i)
    with caplog.at_level(logging.ERROR, logger="cachedeco"):
        reg.flush()
    assert any("dead letters" in r.getMessage() for r in caplog.records)
    dead = reg.dead_letters()
    assert [d.record for d in dead] == [{"id": f"e{i}", "v": i} for i in range(3)]
    assert all(d.error == "ValueError: no such table" for d in dead)
    assert dead[0].function.endswith("record_event")
    assert reg.stats().write_behind_dead == 3
    assert get_event("e1") == {"id": "e1", "v": 1}  # still held in the cache
    broken[0] = False
    assert reg.replay_dead_letters() == 3
    reg.flush()
    assert events.rows() == [(f"e{i}", i) for i in range(3)]
    assert reg.dead_letters() == []


def test_max_retries_zero_buries_at_once(reg: Registry) -> None:
    calls = []

    def flush(records: list[dict[str, Any]]) -> None:
        calls.append(records)
        if len(calls) == 1:
            raise RuntimeError("down")

    _, record_event = make(reg, flush, max_retries=0)
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

    _, record_event = make(reg, flush)
    record_event("a", 1)
    with pytest.raises(KeyboardInterrupt):
        reg.flush()
    reg.flush()
    assert events.rows() == [("a", 1)]


def test_a_pending_entry_does_not_expire_before_its_flush(reg: Registry,
                                                          events: Events) -> None:
    loads = []

    @cachedeco.cached(ttl=1, jitter=0, registry=reg)
    def get_event(event_id: str) -> dict[str, Any] | None:
        loads.append(event_id)
        return None

    @cachedeco.write_behind(get_event, flush=events.flush, flush_interval=3600)
    def record_event(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    record_event("a", 1)
    time.sleep(1.2)  # past the reader's TTL, but the record is not flushed yet
    assert get_event("a") == {"id": "a", "v": 1}
    reg.flush()
    time.sleep(1.2)  # flushed: the normal TTL applies again
    assert get_event("a") is None and loads == ["a"]


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


async def test_async_writer_and_async_flush_drain_on_aclose(events: Events) -> None:
    reg = Registry("memory://")
    seen_threads = set()

    async def flush(records: list[dict[str, Any]]) -> None:
        seen_threads.add(threading.get_ident())
        await asyncio.sleep(0)
        events.flush(records)

    @cachedeco.cached(registry=reg)
    async def get_event(event_id: str) -> dict[str, Any] | None:
        return None

    @cachedeco.write_behind(get_event, flush=flush, flush_interval=3600, batch_size=10)
    async def record_event(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    async with reg:
        await asyncio.gather(*(record_event(f"e{i}", i) for i in range(25)))
        assert await get_event("e3") == {"id": "e3", "v": 3}
        await reg.aflush()
        assert len(events.rows()) == 25
        await record_event("late", 1)
    assert ("late", 1) in events.rows()
    assert seen_threads == {threading.get_ident()}  # a task on this loop, not a thread


async def test_sync_flush_behind_an_async_writer(events: Events) -> None:
    reg = Registry("memory://")
    _, record_event = make(reg, events.flush)

    @cachedeco.write_behind(key="x:{event_id}", flush=events.flush, registry=reg)
    async def arecord(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    await arecord("a", 1)
    record_event("b", 2)
    await reg.aflush()
    assert events.rows() == [("a", 1), ("b", 2)]
    await arecord("c", 3)
    await reg.aclose()
    assert len(events.rows()) == 3


def test_async_flush_behind_a_sync_writer_outside_any_loop(events: Events) -> None:
    reg = Registry("memory://")

    async def flush(records: list[dict[str, Any]]) -> None:
        events.flush(records)

    _, record_event = make(reg, flush)
    record_event("a", 1)
    reg.flush()
    record_event("b", 2)
    reg.close()
    assert events.rows() == [("a", 1), ("b", 2)]


def test_exit_with_records_in_memory_logs_a_warning(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import cachedeco

        reg = cachedeco.Registry("memory://")

        @cachedeco.write_behind(key="e:{i}", flush=print, flush_interval=3600, registry=reg)
        def record(i: int) -> int:
            return i

        for i in range(3):
            record(i)
    """)
    path = tmp_path / "leave.py"
    path.write_text(script)
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=30, check=True)
    assert "3 write-behind record(s)" in done.stderr and "lost" in done.stderr


def test_close_never_cuts_a_batch_short(events: Events) -> None:
    reg = Registry("memory://")
    started, finished = threading.Event(), []

    def slow(records: list[dict[str, Any]]) -> None:
        started.set()
        time.sleep(0.3)
        events.flush(records)
        finished.append(len(records))

    _, record_event = make(reg, slow, flush_interval=0.01)
    for i in range(5):
        record_event(f"e{i}", i)
    assert started.wait(5)
    record_event("late", 9)  # queued while the worker is in the middle of a batch
    reg.close()
    assert finished[0] == 5 and sum(finished) == 6
    assert len(events.rows()) == 6


async def test_aclose_never_cuts_an_async_batch_short(events: Events) -> None:
    reg = Registry("memory://")
    started, finished = asyncio.Event(), []

    async def slow(records: list[dict[str, Any]]) -> None:
        started.set()
        await asyncio.sleep(0.3)
        events.flush(records)
        finished.append(len(records))

    @cachedeco.write_behind(key="e:{event_id}", flush=slow, flush_interval=0.01, registry=reg)
    async def record_event(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    for i in range(5):
        await record_event(f"e{i}", i)
    await asyncio.wait_for(started.wait(), 5)
    await record_event("late", 9)
    await reg.aclose()
    assert finished[0] == 5 and sum(finished) == 6
    assert len(events.rows()) == 6


# --- the flow itself (no queue) ------------------------------------------------------------------


def _ack_of(*, fail: bool) -> Ack:
    """Drive one batch of the pure flow: records k=A, k=B (newer), j=C; return its Ack."""
    settings = Settings(name="f", batch_size=10, flush_interval=1.0, coalesce=True,
                        max_retries=0, claim_after=30.0, retry_delay=0.01)
    job = Job(settings, Stats(), durable=False, decode=lambda r, key: r,
              expiry=lambda now, value: (now + 60, 60_000), stop=lambda: False,
              describe=describe)
    messages = [Message("1-0", {"v": 1}, "k", "cd1:" + "a" * 16),
                Message("2-0", {"v": 2}, "k", "cd1:" + "b" * 16),
                Message("3-0", {"v": 3}, "j", "cd1:" + "c" * 16)]
    flow = deliver(job, messages)
    op = next(flow)
    assert isinstance(op, Flush) and op.records == [{"v": 2}, {"v": 3}]  # coalesced
    if fail:
        op = flow.throw(RuntimeError("down"))
        assert isinstance(op, Bury) and op.ids == ("2-0", "3-0")
        op = flow.send(0)
    else:
        op = flow.send(None)
    assert isinstance(op, Ack)
    with pytest.raises(StopIteration):
        flow.send(0)
    return op


def test_the_ack_restores_flushed_entries_and_those_they_superseded() -> None:
    """A superseded record's entry is restored too once its key was flushed: on Redis Cluster
    an older call's entry may land after a newer call's; it must not stay held."""
    ack = _ack_of(fail=False)
    assert set(ack.ids) == {"1-0", "2-0", "3-0"}
    assert {(r.key, r.marker[4]) for r in ack.restores} == {("k", "a"), ("k", "b"), ("j", "c")}
    assert all(r.px == 60_000 for r in ack.restores)


def test_a_buried_batch_restores_nothing() -> None:
    ack = _ack_of(fail=True)
    assert ack.ids == ("1-0",)  # the superseded record is acked; its key was not delivered
    assert ack.restores == ()


def test_configure_refuses_to_strand_records_waiting_in_memory(events: Events) -> None:
    reg = Registry("memory://", prefix="strand")

    @cachedeco.cached(registry=reg)
    def get_event(event_id: str) -> dict[str, Any]:
        raise AssertionError("served from the cache")

    @cachedeco.write_behind(get_event, flush=events.flush, flush_interval=60, registry=reg)
    def record_event(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    record_event("e1", 1)
    with pytest.raises(ConfigurationError, match="flush"):
        reg.configure("memory://", prefix="strand")
    assert reg.prefix == "strand" and events.rows() == []
    reg.flush()
    reg.configure("memory://", prefix="other")
    assert events.rows() == [("e1", 1)]
    reg.close()
