"""@write_behind on a real Redis Cluster and a real Sentinel setup, with SQLite behind ``flush``.

The scenarios of ``test_write_behind.py`` on both deployments (delivery, a process that exits
before any flush, retries, dead letters and replay, coalescing, ``clear()``, async), then what
only the cluster has: the stream and the entry in different slots, so a call is WB_ADD first
and the cluster backend's own store after, and an ack restores the entries slot by slot.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest
import redis
import redis.asyncio.cluster
import redis.sentinel
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

import cachedeco
from cachedeco import BackendError, Registry
from cachedeco.backends.redis._async.cluster import AsyncClusterBackend
from cachedeco.backends.redis._async.queues import AsyncClusterQueue
from cachedeco.backends.redis._sync.cluster import ClusterBackend
from cachedeco.backends.redis._sync.queues import ClusterQueue
from tests.integration.test_cluster import primaries_commandstats
from tests.integration.test_write_behind import close, run, stream_of
from tests.write_behind_support import Events, make
from tools.redis_servers import cluster_hosts, sentinel_hosts

HELD = 86_400_000  # ms: a held entry's TTL is above this (30 days); a restored one is ttl=60 s
Raw = redis.Redis | RedisCluster


def cluster_client(url: str) -> RedisCluster:
    """A sync client of the cluster at ``url`` (the other nodes are discovered)."""
    host, port = cluster_hosts(url)[0]
    return RedisCluster(host=host, port=port, socket_timeout=5.0)


@pytest.fixture(params=["cluster", "sentinel"])
def url(request: pytest.FixtureRequest, cluster_url: str, sentinel_url: str,
        prefix: str) -> str:
    """Each deployment in turn (both are named so the prefix is swept from both)."""
    return cluster_url if request.param == "cluster" else sentinel_url


@pytest.fixture
def raw(url: str, cluster_url: str) -> Iterator[Raw]:
    """A plain client of the deployment: the cluster, or the primary the sentinels name."""
    if url == cluster_url:
        with cluster_client(url) as cluster:
            yield cluster
        return
    hosts, service, db = sentinel_hosts(url)
    sentinel = redis.sentinel.Sentinel(hosts, socket_timeout=5.0)  # type: ignore[no-untyped-call]
    host, port = sentinel.discover_master(service)  # type: ignore[no-untyped-call]
    for client in sentinel.sentinels:
        client.close()
    with redis.Redis(host=host, port=port, db=db, socket_timeout=5.0) as primary:
        yield primary


@pytest.fixture
def reg(url: str, prefix: str) -> Iterator[Registry]:
    registry = Registry(url, prefix=prefix, on_error="raise")
    yield registry
    close(registry)


def ttls(raw: Raw, keys: list[str]) -> list[int]:
    return [int(raw.pttl(k)) for k in keys]


# --- the scenarios, on the cluster and on sentinel ----------------------------------------------


def test_records_reach_sqlite_and_entries_get_their_ttl_back(
        reg: Registry, events: Events, raw: Raw, prefix: str) -> None:
    get_event, record_event = make(reg, events.flush, batch_size=40)
    for i in range(30):  # under batch_size: the worker is not woken yet
        assert record_event(f"e{i}", i) == {"id": f"e{i}", "v": i}
    keys = [get_event.key(f"e{i}") for i in range(100)]
    assert min(ttls(raw, keys[:30])) > HELD
    assert get_event("e7") == {"id": "e7", "v": 7}  # the reader sees the record at once
    stream = stream_of(prefix, record_event)
    assert raw.xlen(stream) == 30
    for i in range(30, 100):  # full batches wake the worker: it delivers meanwhile
        record_event(f"e{i}", i)
    reg.flush()
    assert events.rows() == sorted((f"e{i}", i) for i in range(100))
    assert max(events.batches) <= 40
    assert raw.xlen(stream) == 0
    assert min(ttls(raw, keys)) > 0 and max(ttls(raw, keys)) <= 66_000  # every slot
    stats = reg.stats()
    assert (stats.write_behind_flushed, stats.write_behind_pending) == (100, 0)
    assert stats.backend_errors == 0


def test_records_of_a_process_that_exits_before_any_flush_are_delivered(
        tmp_path: Any, url: str, prefix: str, events: Events) -> None:
    first = run(tmp_path, url, prefix, events.path, "queue-and-exit", 200, 1000)
    assert first.returncode == 0, first.stderr
    assert events.rows() == []
    second = run(tmp_path, url, prefix, events.path, "deliver", 200, 1000)
    assert second.returncode == 0, second.stderr
    assert events.rows() == sorted((f"e{i}", i) for i in range(200))
    assert json.loads(second.stdout) == {"flushed": 200, "duplicates": 0}


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
    for i in range(60):
        record_event(f"e{i}", i)
    with caplog.at_level(logging.WARNING, logger="cachedeco"):
        reg.flush()
    assert events.rows() == sorted((f"e{i}", i) for i in range(60))
    stats = reg.stats()
    assert (stats.write_behind_flushed, stats.write_behind_retried) == (60, 100)
    assert (stats.write_behind_dead, stats.write_behind_pending) == (0, 0)


def test_dead_letters_are_listed_and_replayed(reg: Registry, events: Events, raw: Raw,
                                              prefix: str) -> None:
    broken = [True]

    def flush(records: list[dict[str, Any]]) -> None:
        if broken[0]:
            raise sqlite3.OperationalError("no such table: events")
        events.flush(records)

    get_event, record_event = make(reg, flush, max_retries=1, retry_delay=0.01)
    for i in range(6):
        record_event(f"e{i}", i)
    reg.flush()
    dead = reg.dead_letters()
    assert [d.record for d in dead] == [{"id": f"e{i}", "v": i} for i in range(6)]
    assert dead[0].error == "OperationalError: no such table: events"
    assert dead[0].key == get_event.key("e0")
    assert raw.xlen(stream_of(prefix, record_event) + ":dead") == 6
    assert reg.stats().write_behind_dead == 6
    keys = [get_event.key(f"e{i}") for i in range(6)]
    assert min(ttls(raw, keys)) > HELD  # held while dead
    broken[0] = False
    assert reg.replay_dead_letters() == 6
    reg.flush()
    assert events.rows() == [(f"e{i}", i) for i in range(6)]
    assert reg.dead_letters() == []
    assert max(ttls(raw, keys)) <= 66_000


def test_coalescing_keeps_the_newest_record_per_key(reg: Registry, events: Events) -> None:
    get_event, record_event = make(reg, events.flush, batch_size=30)
    for v in range(3):
        for i in range(10):
            record_event(f"e{i}", 100 * v + i)
    reg.flush()
    assert events.rows() == sorted((f"e{i}", 200 + i) for i in range(10))
    assert get_event("e3") == {"id": "e3", "v": 203}
    assert reg.stats().write_behind_flushed == 10


def test_clear_keeps_queued_records(reg: Registry, events: Events, raw: Raw,
                                    prefix: str) -> None:
    get_event, record_event = make(reg, events.flush)
    for i in range(30):
        record_event(f"e{i}", i)
    assert reg.clear() >= 30  # the entries, on every primary
    assert raw.exists(get_event.key("e0")) == 0
    assert raw.xlen(stream_of(prefix, record_event)) == 30
    reg.flush()
    assert events.rows() == sorted((f"e{i}", i) for i in range(30))


async def test_async_records_dead_letters_and_replay(url: str, prefix: str,
                                                    events: Events) -> None:
    broken = [True]

    async def flush(records: list[dict[str, Any]]) -> None:
        if broken[0]:
            raise RuntimeError("down")
        events.flush(records)

    async with Registry(url, prefix=prefix, on_error="raise") as reg:
        @cachedeco.cached(registry=reg, ttl=60)
        async def get_event(event_id: str) -> dict[str, Any] | None:
            return None

        @cachedeco.write_behind(get_event, flush=flush, max_retries=0, flush_interval=3600)
        async def record_event(event_id: str, v: int) -> dict[str, Any]:
            return {"id": event_id, "v": v}

        for i in range(20):
            await record_event(f"e{i}", i)
        assert await get_event("e4") == {"id": "e4", "v": 4}
        await reg.aflush()
        assert len(await reg.adead_letters()) == 20
        broken[0] = False
        assert await reg.areplay_dead_letters() == 20
        await record_event("late", 99)  # left for aclose() to deliver
    assert events.rows() == sorted([("late", 99)] + [(f"e{i}", i) for i in range(20)])


# --- the cluster: two steps per call, restores per slot ------------------------------------------


@pytest.fixture
def creg(cluster_url: str, prefix: str) -> Iterator[Registry]:
    registry = Registry(cluster_url, prefix=prefix, on_error="raise")
    yield registry
    close(registry)


@pytest.fixture
def cluster(cluster_url: str, prefix: str) -> Iterator[RedisCluster]:
    with cluster_client(cluster_url) as client:
        yield client


def _spent(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in ("evalsha", "xadd", "set", "xack")
            if after.get(k, 0) != before.get(k, 0)}


def test_cluster_key_layout(creg: Registry, events: Events, cluster: RedisCluster,
                            prefix: str) -> None:
    _, record_event = make(creg, events.flush, max_retries=0)
    stream = stream_of(prefix, record_event)
    assert stream.startswith(f"{prefix}:~wb:{{")  # ~prefix:* ACLs; spared by clear()
    name = f"{record_event.__module__}.{record_event.__qualname__}"
    assert key_slot(stream.encode()) == key_slot((stream + ":dead").encode()) == key_slot(
        name.encode())
    assert isinstance(creg.slot("default").backend(), ClusterBackend)
    record_event("a", 1)
    assert cluster.xlen(stream) == 1


def test_cluster_call_queues_first_then_stores_through_the_backend(
        creg: Registry, events: Events, cluster: RedisCluster,
        monkeypatch: pytest.MonkeyPatch) -> None:
    get_event, record_event = make(creg, events.flush)
    record_event("warm", 0)  # scripts loaded, worker started
    service = record_event.write_behind
    queue = service.queue(service.link.bound())
    assert isinstance(queue, ClusterQueue)
    order: list[str] = []
    add, write = queue._add, queue.backend.write

    def traced_add(**kwargs: Any) -> Any:
        order.append("xadd")
        return add(**kwargs)

    def traced_write(key: str, w: Any) -> bool:
        order.append("write")
        return write(key, w)

    monkeypatch.setattr(queue, "_add", traced_add)
    monkeypatch.setattr(queue.backend, "write", traced_write)
    before = primaries_commandstats(cluster)
    record_event("a", 1)
    spent = _spent(before, primaries_commandstats(cluster))
    assert order == ["xadd", "write"]
    # WB_ADD, CHECK_TAGS (tag slot), STORE_ENTRY (entry slot): three round trips
    assert spent == {"evalsha": 3, "xadd": 1, "set": 1}
    assert get_event("a") == {"id": "a", "v": 1}


def test_cluster_call_raises_when_it_cannot_queue_and_stores_nothing(
        creg: Registry, events: Events, cluster: RedisCluster,
        monkeypatch: pytest.MonkeyPatch) -> None:
    get_event, record_event = make(creg, events.flush)
    record_event("a", 1)
    queue = record_event.write_behind.queue(record_event.write_behind.link.bound())
    writes: list[str] = []
    monkeypatch.setattr(queue.backend, "write", lambda key, w: writes.append(key))

    def down(**kwargs: Any) -> Any:
        raise RedisConnectionError("stream node down")

    monkeypatch.setattr(queue, "_add", down)
    with pytest.raises(BackendError, match="queue a record"):
        record_event("a", 2)
    assert writes == []  # nothing stored for a record that was never queued
    monkeypatch.undo()
    assert get_event("a") == {"id": "a", "v": 1}
    creg.flush()
    assert events.rows() == [("a", 1)]


@pytest.fixture(params=["fallback", "raise"])
def oreg(request: pytest.FixtureRequest, cluster_url: str, prefix: str) -> Iterator[Registry]:
    """A cluster registry under each failure policy."""
    registry = Registry(cluster_url, prefix=prefix, on_error=request.param)
    yield registry
    close(registry)


def test_cluster_store_failing_after_the_queue_still_delivers(
        oreg: Registry, events: Events, cluster: RedisCluster,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The record is queued (it will be flushed); the old entry is dropped; the failure is
    logged and counted, and raised only under on_error="raise", as write_through does."""
    reg, on_error = oreg, oreg.on_error
    get_event, record_event = make(reg, events.flush)
    record_event("a", 1)
    queue = record_event.write_behind.queue(record_event.write_behind.link.bound())

    def down(key: str, w: Any) -> bool:
        raise RedisConnectionError("entry node down")

    monkeypatch.setattr(queue.backend, "write", down)
    with caplog.at_level(logging.WARNING, logger="cachedeco"):
        if on_error == "raise":
            with pytest.raises(BackendError, match="will be flushed"):
                record_event("a", 2)
        else:
            assert record_event("a", 2) == {"id": "a", "v": 2}
            assert any("will be flushed" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    old = cluster.get(get_event.key("a"))
    assert isinstance(old, bytes) and old.startswith(b"cdT:")  # the old entry was dropped
    assert reg.stats().backend_errors == 1
    reg.flush()
    assert events.rows() == [("a", 2)]  # coalesced: the newest record of key "a"
    assert get_event("a") is None  # refilled from the (stand-in) reader


def test_cluster_entries_stored_out_of_queue_order_expire_after_the_flush(
        creg: Registry, events: Events, cluster: RedisCluster,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two calls with one key: the first one's entry lands after the second one's (each call
    is two steps on a cluster). The flush delivers the newest record; the entry left holding
    the older one is not held for 30 days but gets the normal TTL (then refills)."""
    get_event, record_event = make(creg, events.flush)
    record_event("warm", 0)
    queue = record_event.write_behind.queue(record_event.write_behind.link.bound())
    write = queue.backend.write
    late: list[tuple[str, Any]] = []

    def deferred(key: str, w: Any) -> bool:
        late.append((key, w))
        return True

    monkeypatch.setattr(queue.backend, "write", deferred)
    record_event("a", 1)  # queued; its entry not stored yet
    monkeypatch.undo()
    record_event("a", 2)  # queued and stored
    assert write(*late[0])  # the first call's entry lands last
    assert get_event("a") == {"id": "a", "v": 1}
    creg.flush()
    assert events.rows() == [("a", 2), ("warm", 0)]  # coalesced to the newest
    assert 0 < cluster.pttl(get_event.key("a")) <= 66_000


class _Counted:
    """A registered script whose direct calls are counted (pipelined ones use its sha)."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.sha = script.sha
        self.calls = 0

    def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        return self.script(**kwargs)


@pytest.mark.parametrize("scripts_lost", [False, True])
def test_cluster_ack_restores_every_slot_in_one_pipeline(
        creg: Registry, events: Events, cluster: RedisCluster,
        monkeypatch: pytest.MonkeyPatch, scripts_lost: bool) -> None:
    get_event, record_event = make(creg, events.flush, batch_size=100)
    for i in range(60):
        record_event(f"e{i}", i)
    keys = [get_event.key(f"e{i}") for i in range(60)]
    slots = {key_slot(k.encode()) for k in keys}
    assert len(slots) > 50
    queue = record_event.write_behind.queue(record_event.write_behind.link.bound())
    counted = _Counted(queue._restore)
    monkeypatch.setattr(queue, "_restore", counted)
    if scripts_lost:  # a failover or restart between take and ack: NOSCRIPT, loaded, redone
        restore_all = queue._restore_all

        def flushed_first(calls: Any) -> None:
            cluster.script_flush()
            restore_all(calls)

        monkeypatch.setattr(queue, "_restore_all", flushed_first)
    before = primaries_commandstats(cluster)
    creg.flush()
    spent = _spent(before, primaries_commandstats(cluster))
    assert events.rows() == sorted((f"e{i}", i) for i in range(60))
    assert max(ttls(cluster, keys)) <= 66_000 and min(ttls(cluster, keys)) > 0
    assert spent["xack"] == 1  # one WB_ACK, on the stream alone
    if scripts_lost:
        assert counted.calls == len(slots)  # each refused slot redone by the script object
    else:
        assert counted.calls == 0  # all pipelined
        # WB_TAKE, WB_RENEW, one WB_RESTORE per slot, WB_ACK
        assert spent["evalsha"] == len(slots) + 3


def test_cluster_failed_restore_still_acks(
        creg: Registry, events: Events, cluster: RedisCluster,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    get_event, record_event = make(creg, events.flush)
    for i in range(5):
        record_event(f"e{i}", i)
    queue = record_event.write_behind.queue(record_event.write_behind.link.bound())

    def down(calls: Any) -> None:
        raise RedisConnectionError("entry node down")

    monkeypatch.setattr(queue, "_restore_all", down)
    with caplog.at_level(logging.WARNING, logger="cachedeco"):
        creg.flush()
    assert any("normal expiry" in r.getMessage() for r in caplog.records)
    assert cluster.xlen(stream_of(creg.prefix, record_event)) == 0  # acknowledged anyway
    assert events.rows() == [(f"e{i}", i) for i in range(5)]
    assert min(ttls(cluster, [get_event.key(f"e{i}") for i in range(5)])) > HELD


def test_cluster_kill_during_flush_loses_nothing(tmp_path: Any, cluster_url: str,
                                                 prefix: str, events: Events) -> None:
    first = run(tmp_path, cluster_url, prefix, events.path, "kill-in-flush", 150, 50)
    assert first.returncode == -9, first.stderr
    second = run(tmp_path, cluster_url, prefix, events.path, "deliver", 150, 50)
    assert second.returncode == 0, second.stderr
    assert set(events.rows()) == {(f"e{i}", i) for i in range(150)}
    assert 0 < json.loads(second.stdout)["duplicates"] <= 50


def test_cluster_ready_client(cluster_url: str, prefix: str, events: Events,
                              cluster: RedisCluster) -> None:
    reg = Registry(cluster_client(cluster_url), prefix=prefix, on_error="raise")
    try:
        _, record_event = make(reg, events.flush)
        for i in range(5):
            record_event(f"e{i}", i)
        reg.flush()
        assert events.rows() == [(f"e{i}", i) for i in range(5)]
    finally:
        close(reg)


@pytest.fixture
async def aready(cluster_url: str) -> AsyncIterator[redis.asyncio.cluster.RedisCluster]:
    nodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in cluster_hosts(cluster_url)]
    client = redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, socket_timeout=5.0)
    yield client
    await client.aclose()


async def test_cluster_async_ready_client_two_steps_and_restores(
        aready: redis.asyncio.cluster.RedisCluster, prefix: str, events: Events,
        cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    async def flush(records: list[dict[str, Any]]) -> None:
        events.flush(records)

    reg = Registry(aready, prefix=prefix, on_error="raise")
    try:
        await _async_two_steps(reg, events, cluster, monkeypatch, flush)
    finally:
        await reg.aclose()


async def _async_two_steps(reg: Registry, events: Events, cluster: RedisCluster,
                           monkeypatch: pytest.MonkeyPatch, flush: Any) -> None:
    @cachedeco.cached(registry=reg, ttl=60, tags=["event:{event_id}"])
    async def get_event(event_id: str) -> dict[str, Any] | None:
        return None

    @cachedeco.write_behind(get_event, flush=flush, flush_interval=3600)
    async def record_event(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    await record_event("warm", 0)
    service = cast(Any, record_event).write_behind
    queue = service.aqueue(service.link.bound())
    assert isinstance(queue, AsyncClusterQueue)
    assert isinstance(queue.backend, AsyncClusterBackend)
    order: list[str] = []
    add, write = queue._add, queue.backend.write

    async def traced_add(**kwargs: Any) -> Any:
        order.append("xadd")
        return await add(**kwargs)

    async def traced_write(key: str, w: Any) -> bool:
        order.append("write")
        return await write(key, w)

    monkeypatch.setattr(queue, "_add", traced_add)
    monkeypatch.setattr(queue.backend, "write", traced_write)
    for i in range(30):
        await record_event(f"e{i}", i)
    assert order == ["xadd", "write"] * 30
    assert await get_event("e5") == {"id": "e5", "v": 5}

    async def down(key: str, w: Any) -> bool:
        raise RedisConnectionError("entry node down")

    monkeypatch.setattr(queue.backend, "write", down)
    with pytest.raises(BackendError, match="will be flushed"):
        await record_event("e0", 1000)
    monkeypatch.undo()
    await reg.aclose()  # delivers what waits
    assert events.rows() == sorted([("warm", 0), ("e0", 1000)]
                                   + [(f"e{i}", i) for i in range(1, 30)])
    keys = [get_event.key(f"e{i}") for i in range(1, 30)]
    assert max(ttls(cluster, keys)) <= 66_000 and min(ttls(cluster, keys)) > 0


@pytest.fixture
def cluster_acl_url(cluster_url: str, cluster: RedisCluster, prefix: str) -> Iterator[str]:
    """The cluster's URL logging in as a user confined to ``prefix`` on every node."""
    name, password = f"wb-{prefix}", secrets.token_hex(12)
    rules = ("reset", "on", f">{password}", f"~{prefix}:*", f"&{prefix}:*", "+@all",
             "-@dangerous")
    nodes: Any = cluster
    admins: list[Any] = [cluster.get_redis_connection(node) for node in nodes.get_nodes()]
    for admin in admins:
        admin.execute_command("ACL", "SETUSER", name, *rules)
    try:
        yield cluster_url.replace("://", f"://{name}:{password}@", 1)
    finally:
        for admin in admins:
            admin.execute_command("ACL", "DELUSER", name)


def test_cluster_user_confined_to_the_prefix(cluster_acl_url: str, prefix: str,
                                             events: Events) -> None:
    reg = Registry(cluster_acl_url, prefix=prefix, on_error="raise")
    broken = [True]

    def flush(records: list[dict[str, Any]]) -> None:
        if broken[0]:
            raise RuntimeError("down")
        events.flush(records)

    try:
        get_event, record_event = make(reg, flush, max_retries=0)
        for i in range(20):
            record_event(f"e{i}", i)
        reg.flush()
        broken[0] = False
        assert reg.replay_dead_letters() == 20
        reg.flush()
        assert events.rows() == sorted((f"e{i}", i) for i in range(20))
        assert get_event("e1") == {"id": "e1", "v": 1}
        assert reg.stats().backend_errors == 0
    finally:
        close(reg)


def test_cluster_workers_of_two_processes_share_the_queue(
        cluster_url: str, prefix: str, events: Events) -> None:
    regs = [Registry(cluster_url, prefix=prefix) for _ in range(2)]
    writers = [make(r, events.flush, batch_size=20, flush_interval=0.02, coalesce=False)[1]
               for r in regs]
    for i in range(300):
        writers[i % 2](f"e{i}", i)
    deadline = time.monotonic() + 15
    while len(events.rows()) < 300 and time.monotonic() < deadline:
        time.sleep(0.02)
    close(*regs)
    assert events.rows() == sorted((f"e{i}", i) for i in range(300))
    assert sum(r.stats().write_behind_flushed for r in regs) == 300
