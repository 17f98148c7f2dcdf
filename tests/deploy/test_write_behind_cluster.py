"""Write-behind's cluster mechanics: the stream and the entry lie in different slots, so a call
is WB_ADD first and the cluster backend's own two-step store after (three round trips; nothing
stored for a record that was never queued; a failed store still delivers), entries stored out
of queue order give way after the flush, and an ack settles the entries slot by slot in one
pipeline (redone when the scripts were lost) and still acks when it cannot settle them (their
drops then go to auto-recovery)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
import redis.asyncio.cluster
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

import cachedeco
from cachedeco import BackendError, Registry
from cachedeco.backends.redis._async.cluster import AsyncClusterBackend
from cachedeco.backends.redis._async.queues import AsyncClusterQueue
from cachedeco.backends.redis._sync.cluster import ClusterBackend
from cachedeco.backends.redis._sync.queues import ClusterQueue
from tests.support._sync.writers import event_functions
from tests.support.commands import commandstats
from tests.support.deployments import acluster_client
from tests.support.events import Events
from tests.support.polling import poll
from tests.support.write_behind import RESTORED, stream_of, ttls


def _spent(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in ("evalsha", "xadd", "set", "xack")
            if after.get(k, 0) != before.get(k, 0)}


def test_cluster_key_layout(make_registry: Callable[..., Registry], cluster_url: str,
                            events: Events, cluster_client: RedisCluster, prefix: str) -> None:
    creg = make_registry(cluster_url, on_error="raise")
    _, record_event = event_functions(creg, events.flush, max_retries=0)
    stream = stream_of(prefix, record_event)
    assert stream.startswith(f"{prefix}:~wb:{{")  # ~prefix:* ACLs; spared by clear()
    name = f"{record_event.__module__}.{record_event.__qualname__}"
    assert key_slot(stream.encode()) == key_slot((stream + ":dead").encode()) == key_slot(
        name.encode())
    assert isinstance(creg.slot("default").backend(), ClusterBackend)
    record_event("a", 1)
    assert cluster_client.xlen(stream) == 1


def test_cluster_call_queues_first_then_stores_through_the_backend(
        make_registry: Callable[..., Registry], cluster_url: str, events: Events,
        cluster_client: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    creg = make_registry(cluster_url, on_error="raise")
    get_event, record_event = event_functions(creg, events.flush)
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
    before = commandstats(cluster_client)
    record_event("a", 1)
    spent = _spent(before, commandstats(cluster_client))
    assert order == ["xadd", "write"]
    # WB_ADD, CHECK_TAGS (tag slot), STORE_ENTRY (entry slot): three round trips
    assert spent == {"evalsha": 3, "xadd": 1, "set": 1}
    assert get_event("a") == {"id": "a", "v": 1}


def test_cluster_call_raises_when_it_cannot_queue_and_stores_nothing(
        make_registry: Callable[..., Registry], cluster_url: str, events: Events,
        cluster_client: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    creg = make_registry(cluster_url, on_error="raise")
    get_event, record_event = event_functions(creg, events.flush)
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


@pytest.mark.parametrize("on_error", ["fallback", "raise"])
def test_cluster_store_failing_after_the_queue_still_delivers(
        make_registry: Callable[..., Registry], cluster_url: str, events: Events,
        cluster_client: RedisCluster, *, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, on_error: str) -> None:
    """The record is queued (it will be flushed); the old entry is dropped; the failure is
    logged and counted, and raised only under on_error="raise", as write_through does."""
    reg = make_registry(cluster_url, on_error=on_error)
    get_event, record_event = event_functions(reg, events.flush)
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
    old = cluster_client.get(get_event.key("a"))
    assert isinstance(old, bytes) and old.startswith(b"cdT:")  # the old entry was dropped
    assert reg.stats().backend_errors == 1
    reg.flush()
    assert events.rows() == [("a", 2)]  # coalesced: the newest record of key "a"
    assert get_event("a") is None  # refilled from the (stand-in) reader


def test_cluster_entries_stored_out_of_queue_order_expire_after_the_flush(
        make_registry: Callable[..., Registry], cluster_url: str, events: Events,
        cluster_client: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two calls with one key: the first one's entry lands after the second one's (each call
    is two steps on a cluster). The flush delivers the newest record; the entry left holding
    the older one is neither held for 30 days nor served: it gives way to a tombstone."""
    creg = make_registry(cluster_url, on_error="raise")
    get_event, record_event = event_functions(creg, events.flush)
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
    assert 0 < cluster_client.pttl(get_event.key("a")) <= RESTORED
    assert cluster_client.get(get_event.key("a")).startswith(b"cdT:")


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
        make_registry: Callable[..., Registry], cluster_url: str, events: Events,
        cluster_client: RedisCluster, *, monkeypatch: pytest.MonkeyPatch,
        scripts_lost: bool) -> None:
    creg = make_registry(cluster_url, on_error="raise")
    get_event, record_event = event_functions(creg, events.flush, batch_size=100)
    for i in range(60):
        record_event(f"e{i}", i)
    keys = [get_event.key(f"e{i}") for i in range(60)]
    slots = {key_slot(k.encode()) for k in keys}
    assert len(slots) > 30  # many slots (keys this alike share a slot more often than chance)
    queue = record_event.write_behind.queue(record_event.write_behind.link.bound())
    counted = _Counted(queue._restore)
    monkeypatch.setattr(queue, "_restore", counted)
    if scripts_lost:  # a failover or restart between take and ack: NOSCRIPT, loaded, redone
        restore_all = queue._restore_all

        def flushed_first(calls: Any) -> None:
            cluster_client.script_flush()
            restore_all(calls)

        monkeypatch.setattr(queue, "_restore_all", flushed_first)
    before = commandstats(cluster_client)
    creg.flush()
    spent = _spent(before, commandstats(cluster_client))
    assert events.rows() == sorted((f"e{i}", i) for i in range(60))
    assert max(ttls(cluster_client, keys)) <= RESTORED and min(ttls(cluster_client, keys)) > 0
    assert spent["xack"] == 1  # one WB_ACK, on the stream alone
    if scripts_lost:
        assert counted.calls == len(slots)  # each refused slot redone by the script object
    else:
        assert counted.calls == 0  # all pipelined
        # WB_TAKE, WB_RENEW, one WB_RESTORE per slot, WB_ACK
        assert spent["evalsha"] == len(slots) + 3


def test_cluster_failed_settle_still_acks_and_drops_the_entries_later(
        make_registry: Callable[..., Registry], cluster_url: str, events: Events,
        cluster_client: RedisCluster, *, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    creg = make_registry(cluster_url, on_error="raise")
    get_event, record_event = event_functions(creg, events.flush)
    for i in range(5):
        record_event(f"e{i}", i)
    queue = record_event.write_behind.queue(record_event.write_behind.link.bound())

    def down(calls: Any) -> None:
        raise RedisConnectionError("entry node down")

    monkeypatch.setattr(queue, "_restore_all", down)
    with caplog.at_level(logging.WARNING, logger="cachedeco"):
        creg.flush()
    assert any("could not be settled" in r.getMessage() for r in caplog.records)
    assert cluster_client.xlen(stream_of(creg.prefix, record_event)) == 0  # acknowledged anyway
    assert events.rows() == [(f"e{i}", i) for i in range(5)]
    # what the entries hold may predate the flush (a refill): auto-recovery drops them, the
    # five kept together (one outage: none applied twice)
    assert creg.stats().recoveries_pending + creg.stats().recoveries_done == 5
    poll(lambda: creg.stats().recoveries_pending == 0, timeout=5.0)
    assert creg.stats().recoveries_done == 5
    keys = [get_event.key(f"e{i}") for i in range(5)]
    assert all(cluster_client.get(k).startswith(b"cdT:") for k in keys)


def test_cluster_ready_client(make_registry: Callable[..., Registry], events: Events,
                              cluster_client: RedisCluster) -> None:
    reg = make_registry(cluster_client, on_error="raise")
    _, record_event = event_functions(reg, events.flush)
    for i in range(5):
        record_event(f"e{i}", i)
    reg.flush()
    assert events.rows() == [(f"e{i}", i) for i in range(5)]


@pytest.fixture
async def aready(cluster_url: str) -> AsyncIterator[redis.asyncio.cluster.RedisCluster]:
    client = acluster_client(cluster_url)
    yield client
    await client.aclose()


async def test_cluster_async_ready_client_two_steps_and_restores(
        amake_registry: Callable[..., Registry], aready: redis.asyncio.cluster.RedisCluster,
        events: Events, cluster_client: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = amake_registry(aready, on_error="raise")

    async def flush(records: list[dict[str, Any]]) -> None:
        events.flush(records)

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
    assert max(ttls(cluster_client, keys)) <= RESTORED and min(ttls(cluster_client, keys)) > 0
