"""A real redis-server killed and restarted from its RDB file, a Sentinel service failed over
back to an old primary that never resynced, and a Cluster primary restarted from its RDB file:
older data brings back entries and tag tokens that later changes had replaced; the lineage
counter notices, and every entry under the prefix is loaded again (none served meanwhile, from
the moment the Sentinel watch follows the promoted one). A snapshot that holds
every change keeps the cache warm; a registry dropped without close() stops beating."""

from __future__ import annotations

import gc
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from cachedeco import Registry, cached
from cachedeco.runtime import lineage, recent
from tests.support.calls import Calls
from tests.support.polling import poll
from tools.servers import SentinelSetup, Server, start_cluster

BEAT = 0.2  # the test's beat: the verdict's "a beat" and "the replay's window" scaled down
WINDOW = 0.6


@pytest.fixture(autouse=True)
def quick_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lineage, "BEAT", BEAT)
    monkeypatch.setattr(lineage, "WINDOW", WINDOW)
    monkeypatch.setattr(recent, "WINDOW", WINDOW)  # what a replay reaches, alike


@pytest.fixture
def admin(fresh_redis: Server) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(fresh_redis.url, socket_timeout=2)
    yield client
    client.close()


def beats(admin: redis.Redis, key: str, n: int) -> None:
    """Wait until this process's counter moved ``n`` more times."""
    start = int(admin.get(key) or 0)
    poll(lambda: int(admin.get(key) or 0) >= start + n, timeout=10.0)


def restart_from_rdb(server: Server, admin: redis.Redis) -> None:
    server.kill()
    server.restart()
    poll(lambda: _answers(admin), timeout=10.0)


def _answers(admin: redis.Redis) -> bool:
    try:
        return bool(admin.ping())
    except redis.exceptions.ConnectionError:
        return False


#: Beats enough for the last one to be further from a change than a replay reaches.
PAST_REPLAY = int(WINDOW / BEAT) + 3


def versioned_item(reg: Registry, calls: Calls) -> Any:
    """A tagged ``item(i)`` (a cached function: ``key``, ``refresh``...) that returns 1, 2,
    3... at each load (each load in ``calls``)."""
    version = itertools.count(1)

    @cached(registry=reg, ttl=600, tags=["item:{i}"])
    def item(i: int) -> int:
        calls(i)
        return next(version)

    return item


def renewed(reg: Registry, item: Any, calls: Calls) -> bool:
    """A beat saw the counter gone back, the renewal landed, and item(1) was loaded again and
    is served from the cache (not only loaded while the backend is held)."""
    stats = reg.stats()
    if stats.recoveries_done < 1 or stats.recoveries_pending:
        return False
    value, loads = item(1), calls.count(1)
    return value >= 3 and item(1) == value and calls.count(1) == loads


def test_a_restart_from_an_older_snapshot_loads_every_entry_again(
        make_registry: Callable[..., Registry], fresh_redis: Server,
        admin: redis.Redis) -> None:
    reg = make_registry(fresh_redis.url, stats_interval=0, socket_timeout=0.5)
    calls = Calls()
    item = versioned_item(reg, calls)

    @cached(registry=reg, ttl=600)
    def untagged(i: int) -> int:
        calls(-i)
        return -i

    assert (item(1), untagged(1)) == (1, -1)
    beats(admin, reg.keyspace.lineage, 3)
    admin.save()  # the RDB file: item(1) is 1, its tag's token the old one
    beats(admin, reg.keyspace.lineage, PAST_REPLAY)
    reg.invalidate_tags("item:1")
    assert item(1) == 2
    beats(admin, reg.keyspace.lineage, PAST_REPLAY)  # the snapshot: older than a replay reaches
    restart_from_rdb(fresh_redis, admin)
    assert admin.exists(item.key(1))  # the older dataset is back

    poll(lambda: renewed(reg, item, calls), timeout=10.0)
    settled = item(1)
    assert settled >= 3  # loaded again (uncached while the renewal was pending, maybe twice)
    assert untagged(1) == -1
    assert calls.count(-1) == 2  # every entry under the prefix, not only the tagged one
    time.sleep(3 * BEAT)
    assert (item(1), untagged(1)) == (settled, -1)  # and cached again
    assert (calls.count(1), calls.count(-1)) == (settled, 2)


def test_a_restart_from_a_snapshot_holding_every_change_keeps_the_cache(
        make_registry: Callable[..., Registry], fresh_redis: Server,
        admin: redis.Redis) -> None:
    reg = make_registry(fresh_redis.url, stats_interval=0, socket_timeout=0.5)
    calls = Calls()

    @cached(registry=reg, ttl=600, tags=["item:{i}"])
    def item(i: int) -> int:
        calls(i)
        return i

    assert item(1) == 1
    beats(admin, reg.keyspace.lineage, PAST_REPLAY)
    reg.lineage.stop()  # no beat between the snapshot and the kill
    admin.save()
    restart_from_rdb(fresh_redis, admin)
    reg.lineage.ensure()
    beats(admin, reg.keyspace.lineage, 3)
    assert item(1) == 1
    assert len(calls) == 1  # a hit: the server lost nothing, nothing was invalidated


def switched_over_then_changed(sentinel: SentinelSetup, reg: Registry,
                               item: Any) -> tuple[int, int]:
    """item(1) stored as 1 on the first primary; an operator's switchover, and item(1)
    changed to 2 on the second one, longer ago than a replay reaches. Returns both ports."""
    assert item(1) == 1
    first = sentinel.switch_over()
    second = sentinel.wait_for_failover(first)
    with redis.Redis(port=second, socket_timeout=2) as on_second:
        beats(on_second, reg.keyspace.lineage, PAST_REPLAY)  # the registry moved
        reg.invalidate_tags("item:1")
        assert item(1) == 2
        beats(on_second, reg.keyspace.lineage, PAST_REPLAY)
    return first, second


def fail_back(sentinel: SentinelSetup, first: int, second: int) -> None:
    """The second primary frozen until the sentinels promote the first one again (never
    demoted nor resynced: its data is from before the switchover)."""
    frozen = sentinel.server(second)
    frozen.pause()
    try:
        assert sentinel.wait_for_failover(second) == first
    finally:
        frozen.resume()


def test_a_second_failover_back_to_the_old_primary_loads_every_entry_again(
        make_registry: Callable[..., Registry], fresh_sentinel: SentinelSetup,
        caplog: pytest.LogCaptureFixture) -> None:
    # An operator's switchover leaves the old primary running (and not yet demoted); a second
    # failover soon after, the new primary frozen, promotes it again: its data is from before
    # the first one, every change since undone (a user's trial: a value 3 writes and 9 s old was
    # served). The watch's move makes every process beat at once on the new primary.
    reg = make_registry(fresh_sentinel.url, stats_interval=0, socket_timeout=0.5)
    calls = Calls()
    item = versioned_item(reg, calls)

    first, second = switched_over_then_changed(fresh_sentinel, reg, item)
    fail_back(fresh_sentinel, first, second)
    # The connections may reach the first primary (and the renewal land) before the watch
    # follows the move back, whose hold then has item(1) loaded once more: wait for both.
    poll(lambda: f"to 127.0.0.1:{first}; following it" in caplog.text, timeout=10.0)
    with redis.Redis(port=first, socket_timeout=2) as on_first:
        assert on_first.exists(item.key(1))  # the entry of before the failover
        poll(lambda: renewed(reg, item, calls), timeout=10.0)
    settled = item(1)
    assert item(1) == settled and calls.count(1) == settled  # cached again


def test_nothing_of_a_promoted_old_primary_is_served_before_a_beat_there_was_judged(
        make_registry: Callable[..., Registry], fresh_sentinel: SentinelSetup,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The trial's last stale read: between the watch's move and the verdict of the beat sent
    # to the promoted old primary, a read served its entry of before the first failover. The
    # kick is lost here (the verdict waits for the next beat, up to a timed-out one on the
    # frozen primary): a reader going on throughout still never sees that entry.
    reg = make_registry(fresh_sentinel.url, stats_interval=0, socket_timeout=0.5,
                        breaker_threshold=1_000_000)  # reads reach Redis throughout
    calls = Calls()
    item = versioned_item(reg, calls)

    first, second = switched_over_then_changed(fresh_sentinel, reg, item)
    monkeypatch.setattr(lineage.Lineage, "kick", lambda self: None)
    seen: list[int] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            seen.append(item(1))

    thread = threading.Thread(target=reader)
    thread.start()
    recovered = reg.stats().recoveries_done
    fail_back(fresh_sentinel, first, second)
    try:
        with redis.Redis(port=first, socket_timeout=2) as on_first:
            beats(on_first, reg.keyspace.lineage, 2)  # the first one there was judged
        poll(lambda: reg.stats().recoveries_done > recovered
             and reg.stats().recoveries_pending == 0, timeout=10.0)  # and the renewal landed
        time.sleep(0.2)
    finally:
        done.set()
        thread.join()
    assert seen and 1 not in seen  # 2, then loaded anew (3, 4...): never the undone 1
    settled = item(1)
    assert settled > 2 and item(1) == settled  # cached again


def test_a_cluster_primary_restarted_from_an_older_snapshot_is_noticed_alone(
        make_registry: Callable[..., Registry]) -> None:
    # each primary beats on a counter of its own: one that goes back is noticed even while
    # the others go on (a refresh's store on that primary, undone by its restart)
    with start_cluster() as cluster:
        reg = make_registry(cluster.url, stats_interval=0, socket_timeout=0.5)
        calls = Calls()
        item = versioned_item(reg, calls)

        assert item(1) == 1
        node = cluster.owner(key_slot(item.key(1).encode()))
        with node.client() as on_node:
            pattern = f"{reg.prefix}:~lineage*"
            poll(lambda: any(on_node.scan_iter(pattern)))  # its counter, once beaten
            counter = str(next(iter(on_node.scan_iter(pattern))))
            beats(on_node, counter, 3)
            on_node.save()
            beats(on_node, counter, PAST_REPLAY)
            assert item.refresh(1) == 2  # stored on that primary only
            beats(on_node, counter, PAST_REPLAY)
        node.kill()
        cluster.restart(node)
        poll(lambda: renewed(reg, item, calls), timeout=15.0)
        settled = item(1)
        assert item(1) == settled and calls.count(1) == settled


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # its data connections: collected
def test_a_registry_dropped_without_close_ends_its_beats(redis_url: str, prefix: str) -> None:
    def beating() -> int:
        return sum(t.name.startswith("cachedeco-lineage") for t in threading.enumerate())

    before = beating()

    def job() -> None:
        reg = Registry(redis_url, prefix=prefix, stats_interval=0)

        @cached(registry=reg)
        def f(i: int) -> int:
            return i

        f(1)

    job()
    assert beating() == before + 1
    gc.collect()
    poll(lambda: beating() == before, timeout=5.0)
