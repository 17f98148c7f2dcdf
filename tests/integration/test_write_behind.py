"""@write_behind on a real redis-server with SQLite behind ``flush``: durability across a hard
exit and a kill in the middle of a flush, retries, dead letters, coalescing, batching, the
flush interval and two processes' workers competing for one queue."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import redis

import cachedeco
from cachedeco import BackendError, Registry
from tests.write_behind_support import Events, make

SCRIPT = textwrap.dedent("""
    import contextlib, json, os, signal, sqlite3, sys, time
    import cachedeco

    url, prefix, db, mode, n, batch = sys.argv[1:7]
    reg = cachedeco.Registry(url, prefix=prefix)

    @cachedeco.cached(registry=reg)
    def get_event(event_id: str) -> dict:
        return {}

    queued = False  # set once every call returned: a kill before would lose unreturned calls

    def flush(records):
        with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn, conn:
            conn.executemany("INSERT INTO events VALUES (?, ?)",
                             [(r["id"], r["v"]) for r in records])
        if mode == "kill-in-flush" and queued:  # the rows are committed, the ack never comes
            os.kill(os.getpid(), signal.SIGKILL)

    @cachedeco.write_behind(get_event, flush=flush, batch_size=int(batch),
                            flush_interval=3600, claim_after=0.5)
    def record_event(event_id: str, v: int) -> dict:
        return {"id": event_id, "v": v}

    if mode in ("queue-and-exit", "kill-in-flush"):
        for i in range(int(n)):
            record_event(f"e{i}", i)
        if mode == "queue-and-exit":
            os._exit(0)
        queued = True
        reg.flush()
    else:  # deliver: what the dead process left, claimed once it has been idle long enough
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            reg.flush()
            if reg.stats().write_behind_pending == 0:  # the stream's length, as last seen
                break
            time.sleep(0.05)
        stats = reg.stats()
        reg.close()
        print(json.dumps({"flushed": stats.write_behind_flushed,
                          "duplicates": stats.write_behind_duplicates}))
""")


def close(*regs: Registry) -> None:
    """Close every registry (stopping its workers after they drained)."""
    for reg in regs:
        reg.close()


@pytest.fixture
def reg(redis_url: str, prefix: str) -> Iterator[Registry]:
    registry = Registry(redis_url, prefix=prefix)
    yield registry
    close(registry)


def stream_of(prefix: str, writer: Any) -> str:
    """The stream of a @write_behind function: an internal key, hash-tagged by its name."""
    return f"{prefix}:~wb:{{{writer.__module__}.{writer.__qualname__}}}"


def run(tmp_path: Path, *args: object) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_records_of_a_process_that_exits_before_any_flush_are_delivered(
        tmp_path: Path, redis_url: str, prefix: str, events: Events) -> None:
    first = run(tmp_path, redis_url, prefix, events.path, "queue-and-exit", 500, 1000)
    assert first.returncode == 0, first.stderr
    assert events.rows() == []  # nothing was flushed before the hard exit
    second = run(tmp_path, redis_url, prefix, events.path, "deliver", 500, 1000)
    assert second.returncode == 0, second.stderr
    assert events.rows() == sorted((f"e{i}", i) for i in range(500))
    assert json.loads(second.stdout) == {"flushed": 500, "duplicates": 0}


def test_a_process_killed_during_flush_loses_nothing(
        tmp_path: Path, redis_url: str, prefix: str, events: Events) -> None:
    first = run(tmp_path, redis_url, prefix, events.path, "kill-in-flush", 300, 100)
    assert first.returncode == -9, first.stderr
    written = len(events.rows())  # the last batch was written, never acknowledged
    second = run(tmp_path, redis_url, prefix, events.path, "deliver", 300, 100)
    assert second.returncode == 0, second.stderr
    counts = Counter(events.rows())
    assert set(counts) == {(f"e{i}", i) for i in range(300)}  # none lost
    report = json.loads(second.stdout)
    again = report["duplicates"]  # claimed from the killed process, so delivered twice
    assert 0 < again <= 100 and report["flushed"] == 300 - written + again
    assert Counter(counts.values()) == {1: 300 - again, 2: again}


def test_failing_twice_then_succeeding_writes_each_record_once(
        reg: Registry, events: Events, caplog: pytest.LogCaptureFixture) -> None:
    failures = [2]

    def flaky(records: list[dict[str, Any]]) -> None:
        with events.connect() as db:  # rolled back when it raises
            db.executemany("INSERT INTO events VALUES (?, ?)",
                           [(r["id"], r["v"]) for r in records])
            if failures[0]:
                failures[0] -= 1
                raise sqlite3.OperationalError("database is locked")

    _, record_event = make(reg, flaky, retry_delay=0.01, batch_size=50)
    for i in range(120):
        record_event(f"e{i}", i)
    with caplog.at_level(logging.WARNING, logger="cachedeco"):
        reg.flush()
    assert events.rows() == sorted((f"e{i}", i) for i in range(120))
    stats = reg.stats()
    assert (stats.write_behind_flushed, stats.write_behind_retried) == (120, 100)
    assert (stats.write_behind_dead, stats.write_behind_pending) == (0, 0)


def test_dead_letters_are_listed_logged_and_replayed(
        reg: Registry, events: Events, redis_client: redis.Redis, prefix: str,
        caplog: pytest.LogCaptureFixture) -> None:
    broken = [True]

    def flush(records: list[dict[str, Any]]) -> None:
        if broken[0]:
            raise sqlite3.OperationalError("no such table: events")
        events.flush(records)

    get_event, record_event = make(reg, flush, max_retries=2, retry_delay=0.01)
    for i in range(4):
        record_event(f"e{i}", i)
    with caplog.at_level(logging.ERROR, logger="cachedeco"):
        reg.flush()
    assert any("dead letters" in r.getMessage() for r in caplog.records)
    dead = reg.dead_letters()
    assert [d.record for d in dead] == [{"id": f"e{i}", "v": i} for i in range(4)]
    assert dead[0].error == "OperationalError: no such table: events"
    assert dead[0].key == get_event.key("e0") and dead[0].failed_at <= time.time()
    assert reg.stats().write_behind_dead == 4
    assert get_event("e2") == {"id": "e2", "v": 2}
    assert redis_client.pttl(get_event.key("e2")) > 86_400_000  # held until flushed
    broken[0] = False
    assert reg.replay_dead_letters() == 4
    reg.flush()
    assert events.rows() == [(f"e{i}", i) for i in range(4)]
    assert reg.dead_letters() == []
    assert 0 < redis_client.pttl(get_event.key("e2")) <= 66_000  # its normal TTL again


async def test_async_dead_letters_and_replay(redis_url: str, prefix: str,
                                             events: Events) -> None:
    broken = [True]

    async def flush(records: list[dict[str, Any]]) -> None:
        if broken[0]:
            raise RuntimeError("down")
        events.flush(records)

    async with Registry(redis_url, prefix=prefix) as reg:
        @cachedeco.write_behind(key="ev:{event_id}", flush=flush, max_retries=0,
                                flush_interval=3600, registry=reg)
        async def record_event(event_id: str, v: int) -> dict[str, Any]:
            return {"id": event_id, "v": v}

        await record_event("a", 1)
        await reg.aflush()
        assert [d.record for d in await reg.adead_letters()] == [{"id": "a", "v": 1}]
        broken[0] = False
        assert await reg.areplay_dead_letters() == 1
        await reg.aflush()
        assert await reg.adead_letters() == []
    assert events.rows() == [("a", 1)]


def test_coalescing_keeps_the_newest_record_per_key(reg: Registry, events: Events) -> None:
    get_event, record_event = make(reg, events.flush, batch_size=30)
    for v in range(3):
        for i in range(10):
            record_event(f"e{i}", 100 * v + i)
    reg.flush()
    assert events.rows() == sorted((f"e{i}", 200 + i) for i in range(10))
    assert get_event("e3") == {"id": "e3", "v": 203}
    assert reg.stats().write_behind_flushed == 10


def test_batches_never_exceed_batch_size(reg: Registry, events: Events) -> None:
    _, record_event = make(reg, events.flush, batch_size=7)
    for i in range(30):
        record_event(f"e{i}", i)
    reg.flush()
    assert max(events.batches) <= 7 and sum(events.batches) == 30
    assert events.rows() == sorted((f"e{i}", i) for i in range(30))


def test_records_are_flushed_within_the_flush_interval(reg: Registry, events: Events) -> None:
    _, record_event = make(reg, events.flush, flush_interval=0.1)
    start = time.monotonic()
    record_event("a", 1)
    record_event("b", 2)
    while len(events.rows()) < 2 and time.monotonic() - start < 5:
        time.sleep(0.01)
    assert events.rows() == [("a", 1), ("b", 2)]
    assert time.monotonic() - start < 1.0


def test_a_call_is_one_round_trip_and_leaves_a_held_entry(
        reg: Registry, events: Events, redis_client: redis.Redis, prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    get_event, record_event = make(reg, events.flush)
    record_event("warm", 0)
    client = cast(Any, reg.slot("default").backend()).client
    sent: list[str] = []
    execute = client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]))
        return execute(*args, **kwargs)

    monkeypatch.setattr(client, "execute_command", counting)
    record_event("a", 1)
    assert sent == ["EVALSHA"]  # entry, tag keys and XADD: one script, one round trip
    key = get_event.key("a")
    assert redis_client.pttl(key) > 86_400_000
    stream = stream_of(prefix, record_event)
    assert redis_client.xlen(stream) == 2
    assert reg.clear() >= 1  # entries go; the queue is one of cachedeco's own keys, spared
    assert redis_client.xlen(stream) == 2
    reg.flush()
    assert redis_client.xlen(stream) == 0
    assert events.rows() == [("a", 1), ("warm", 0)]


def test_queue_keys_live_under_the_prefix(reg: Registry, events: Events,
                                          redis_client: redis.Redis, prefix: str) -> None:
    _, record_event = make(reg, events.flush, max_retries=0)
    record_event("a", 1)
    ours = {k.decode() for k in redis_client.scan_iter(match="*wb*", count=1000)
            if prefix.encode() in k}
    assert ours == {stream_of(prefix, record_event)}
    assert all(k.startswith(f"{prefix}:~wb:{{") for k in ours)


def test_clear_keeps_queued_records_and_dead_letters(
        reg: Registry, events: Events, redis_client: redis.Redis, prefix: str) -> None:
    broken = [True]

    def flush(records: list[dict[str, Any]]) -> None:
        if broken[0]:
            raise sqlite3.OperationalError("disk I/O error")
        events.flush(records)

    get_event, record_event = make(reg, flush, max_retries=0, flush_interval=3600)
    record_event("dead", 0)
    reg.flush()  # one dead letter
    broken[0] = False
    for i in range(40):
        record_event(f"e{i}", i)
    assert reg.clear() >= 41  # every entry (the dead letter's one too), nothing of the queue
    assert reg.invalidate_pattern("*wb*") == 0
    assert redis_client.exists(get_event.key("e1")) == 0
    assert [d.record for d in reg.dead_letters()] == [{"id": "dead", "v": 0}]
    reg.flush()
    assert events.rows() == sorted((f"e{i}", i) for i in range(40))
    assert reg.replay_dead_letters() == 1
    reg.flush()
    assert ("dead", 0) in events.rows() and reg.stats().write_behind_pending == 0
    assert redis_client.xlen(stream_of(prefix, record_event)) == 0


@pytest.fixture
def acl_url(redis_url: str, redis_client: redis.Redis, prefix: str) -> Iterator[str]:
    """A URL logging in as a user confined to ``prefix`` as API.md promises (the user is
    deleted after the test)."""
    name, password = f"wb-{prefix}", secrets.token_hex(12)
    admin: Any = redis_client
    admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}",
                          f"~{prefix}:*", f"&{prefix}:*", "+@all", "-@dangerous")
    parts = urlsplit(redis_url)
    try:
        yield parts._replace(netloc=f"{name}:{password}@{parts.hostname}:{parts.port}").geturl()
    finally:
        admin.execute_command("ACL", "DELUSER", name)


def test_a_user_confined_to_the_prefix_runs_write_behind(
        acl_url: str, prefix: str, events: Events) -> None:
    """Queue, flush, restore, dead letters and replay under ``~prefix:* &prefix:*``;
    on_error="raise" so a refused command fails the test rather than falling back."""
    reg = Registry(acl_url, prefix=prefix, on_error="raise")
    broken = [True]

    def flush(records: list[dict[str, Any]]) -> None:
        if broken[0]:
            raise RuntimeError("down")
        events.flush(records)

    try:
        get_event, record_event = make(reg, flush, max_retries=0, batch_size=10)
        for i in range(25):
            record_event(f"e{i}", i)
        reg.flush()
        assert len(reg.dead_letters()) == 25
        broken[0] = False
        assert reg.replay_dead_letters() == 25
        reg.flush()
        assert events.rows() == sorted((f"e{i}", i) for i in range(25))
        assert get_event("e3") == {"id": "e3", "v": 3}
        assert reg.stats().backend_errors == 0
    finally:
        close(reg)


async def test_a_user_confined_to_the_prefix_runs_async_write_behind(
        acl_url: str, prefix: str, events: Events) -> None:
    async def flush(records: list[dict[str, Any]]) -> None:
        events.flush(records)

    async with Registry(acl_url, prefix=prefix, on_error="raise") as reg:
        @cachedeco.write_behind(key="ev:{event_id}", flush=flush, flush_interval=3600,
                                registry=reg)
        async def record_event(event_id: str, v: int) -> dict[str, Any]:
            return {"id": event_id, "v": v}

        for i in range(5):
            await record_event(f"e{i}", i)
        await reg.aflush()
        assert reg.stats().write_behind_flushed == 5
    assert events.rows() == sorted((f"e{i}", i) for i in range(5))


def test_a_newer_pending_write_keeps_the_entry_held(
        reg: Registry, redis_client: redis.Redis) -> None:
    def flush(records: list[dict[str, Any]]) -> None:
        if records[0]["v"] == 1:
            record_event("a", 2)  # queued while the first record is being flushed

    get_event, record_event = make(reg, flush)
    record_event("a", 1)
    reg.flush()
    assert get_event("a") == {"id": "a", "v": 2}
    reg.flush()
    assert 0 < redis_client.pttl(get_event.key("a")) <= 66_000


def test_a_slow_flush_keeps_its_lease(redis_url: str, prefix: str, events: Events) -> None:
    regs = [Registry(redis_url, prefix=prefix) for _ in range(2)]

    def slow(records: list[dict[str, Any]]) -> None:
        time.sleep(1.0)  # over three times claim_after: the lease is renewed meanwhile
        events.flush(records)

    writers = [make(r, slow if n == 0 else events.flush, claim_after=0.3, flush_interval=0.05)[1]
               for n, r in enumerate(regs)]
    writers[1]("first", 0)  # starts the other process's worker: it polls every 50 ms
    for i in range(20):
        writers[0](f"e{i}", i)
    regs[0].flush()
    time.sleep(0.2)
    close(*regs)
    assert events.rows() == sorted([("first", 0)] + [(f"e{i}", i) for i in range(20)])
    assert regs[0].stats().write_behind_flushed > 0  # the slow one did deliver some
    assert sum(r.stats().write_behind_duplicates for r in regs) == 0


def test_two_competing_flushers_deliver_each_record_once(
        redis_url: str, prefix: str, events: Events) -> None:
    regs = [Registry(redis_url, prefix=prefix) for _ in range(2)]
    flushed_by: Counter[int] = Counter()

    def flusher(n: int) -> Any:
        def flush(records: list[dict[str, Any]]) -> None:
            flushed_by[n] += len(records)
            time.sleep(0.002)
            events.flush(records)
        return flush

    writers = [make(r, flusher(n), batch_size=25, flush_interval=0.02, coalesce=False)[1]
               for n, r in enumerate(regs)]
    for i in range(1000):
        writers[i % 2](f"e{i}", i)
    deadline = time.monotonic() + 15
    while len(events.rows()) < 1000 and time.monotonic() < deadline:
        time.sleep(0.02)
    close(*regs)
    assert events.rows() == sorted((f"e{i}", i) for i in range(1000))
    assert flushed_by[0] > 0 and flushed_by[1] > 0
    assert sum(r.stats().write_behind_flushed for r in regs) == 1000


def test_a_call_raises_backend_error_when_it_cannot_queue(events: Events) -> None:
    reg = Registry("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    calls = []

    @cachedeco.write_behind(key="e:{i}", flush=events.flush, registry=reg)
    def record(i: int) -> dict[str, Any]:
        calls.append(i)
        return {"id": str(i), "v": i}

    with pytest.raises(BackendError):
        record(1)
    assert calls == [1] and reg.stats().backend_errors == 1
    with pytest.raises(BackendError):
        reg.flush()
    close(reg)


@dataclass(frozen=True)
class Payment:
    id: str
    amount: Decimal
    at: dt.datetime


async def test_async_typed_records_reach_an_async_flush(redis_url: str, prefix: str,
                                                        events: Events) -> None:
    got: list[Payment] = []

    async def flush(records: list[Payment]) -> None:
        await asyncio.sleep(0)
        got.extend(records)
        events.flush([{"id": p.id, "v": int(p.amount)} for p in records])

    async with Registry(redis_url, prefix=prefix) as reg:
        @cachedeco.cached(registry=reg)
        async def get_payment(payment_id: str) -> Payment | None:
            return None

        @cachedeco.write_behind(get_payment, flush=flush, flush_interval=3600)
        async def pay(payment_id: str, amount: Decimal) -> Payment:
            return Payment(payment_id, amount, dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC))

        returned = await asyncio.gather(*(pay(f"p{i}", Decimal(i)) for i in range(50)))
        assert await get_payment("p7") == returned[7]  # decoded by the reader's codec
    # leaving `async with` drained the queue
    assert sorted(got, key=lambda p: int(p.amount)) == list(returned)
    assert all(type(p) is Payment and type(p.amount) is Decimal for p in got)
    assert len(events.rows()) == 50
