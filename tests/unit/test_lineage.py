"""The lineage counter: when a backend's data went back in time (a restart from an older
snapshot, a failover to a replica that lagged), what this process does about it."""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis.exceptions
from redis.crc import key_slot

from cachedeco import Registry, cached
from cachedeco.backends.redis.cluster_plan import counter_keys, counter_slots, slot_tag
from cachedeco.runtime import lineage
from cachedeco.runtime.lineage import Beat, Lineage, verdict
from tests.support.calls import Calls
from tests.support.polling import poll


def beats(*pairs: tuple[float, int]) -> collections.deque[Beat]:
    return collections.deque(pairs, maxlen=lineage.KEEP)


def test_a_counter_that_goes_on_says_nothing() -> None:
    assert verdict(beats(), 1) is None
    assert verdict(beats((0.0, 5), (1.0, 9)), 10) is None


def test_a_counter_gone_back_a_little_replays_without_renewing() -> None:
    # the server lost the last beat (at 10 s) only: a failover's usual lag
    history = beats((6.0, 60), (7.0, 70), (8.0, 80), (9.0, 90), (10.0, 100))
    assert verdict(history, 95) == (8.0, False)  # replay from the beat 2 s before the last


def test_a_counter_gone_back_further_renews_everything() -> None:
    history = beats((6.0, 60), (7.0, 70), (8.0, 80), (9.0, 90), (10.0, 100))
    assert verdict(history, 41) == (8.0, True)  # it lost the beat of 8 s too
    assert verdict(history, 1) == (8.0, True)  # restarted empty, or the key was deleted


def test_a_young_process_compares_with_its_first_beat_and_one_beat_tells_nothing() -> None:
    assert verdict(beats((9.5, 90), (10.0, 100)), 50) == (9.5, True)
    assert verdict(beats((9.5, 90), (10.0, 100)), 95) == (9.5, False)
    assert verdict(beats((10.0, 100)), 1) == (10.0, False)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def quiet_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    """No beat thread: the test beats by hand."""
    monkeypatch.setattr(Lineage, "ensure", lambda self: None)


@pytest.fixture
def client() -> Iterator[fakeredis.FakeRedis]:
    server = fakeredis.FakeServer()
    yield fakeredis.FakeRedis(server=server)


def hand_beats(reg: Registry, clock: Clock) -> Callable[[int], None]:
    """A lineage on a fake clock; returns: beat n times, a second apart."""
    reg.lineage = Lineage(reg.recovery, lambda: reg, clock=clock)

    def beat(n: int) -> None:
        for _ in range(n):
            clock.now += 1.0
            reg.lineage.beat()
    return beat


@pytest.mark.usefixtures("quiet_beats")
def test_a_restored_older_dataset_is_invalidated_everywhere_under_the_prefix(
        make_registry: Callable[..., Registry], client: fakeredis.FakeRedis) -> None:
    reg = make_registry(client, stats_interval=0)
    calls = Calls()
    version = itertools.count(1)

    @cached(registry=reg, tags=["item:{i}"])
    def item(i: int) -> int:
        calls(i)
        return next(version)

    @cached(registry=reg)
    def other(i: int) -> int:
        calls(-i)
        return -i

    assert (item(1), other(1)) == (1, -1)
    beat = hand_beats(reg, Clock())
    beat(5)
    snapshot = {key: client.dump(key) for key in client.scan_iter(f"{reg.prefix}:*")}
    reg.invalidate_tags("item:1")
    assert item(1) == 2
    beat(4)  # the snapshot is now older than what a replay reaches
    for key, dumped in snapshot.items():  # the server comes back with the older dataset
        client.restore(key, 0, dumped, replace=True)
    assert item(1) == 1  # served until a beat sees the counter gone back
    beat(1)
    reg.flush()  # deliver the renewal now (the recovery worker would within RETRY)
    assert item(1) == 3  # loaded again: the older value is never served after the beat
    assert other(1) == -1
    assert calls.count(-1) == 2  # every entry under the prefix, not only the tagged one
    assert item(1) == 3
    assert reg.stats().recoveries_done >= 1


@pytest.mark.usefixtures("quiet_beats")
def test_a_counter_that_lost_only_its_last_beat_keeps_the_entries(
        make_registry: Callable[..., Registry], client: fakeredis.FakeRedis) -> None:
    reg = make_registry(client, stats_interval=0)
    calls = Calls()

    @cached(registry=reg)
    def item(i: int) -> int:
        calls(i)
        return i

    item(1)
    beat = hand_beats(reg, Clock())
    beat(5)
    client.decr(reg.keyspace.lineage)  # a failover's usual lag: the last beat is lost
    beat(1)
    reg.flush()
    assert item(1) == 1
    assert len(calls) == 1  # a hit: nothing older than the replay's window was lost


def lineage_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("cachedeco-lineage")]


def test_each_process_beats_on_redis_and_not_on_memory(
        make_registry: Callable[..., Registry], client: fakeredis.FakeRedis) -> None:
    before = lineage_threads()
    mem = make_registry("memory://")
    on_redis = make_registry(client, stats_interval=0)

    @cached(registry=mem)
    def local(i: int) -> int:
        return i

    local(1)
    assert lineage_threads() == before  # nothing to beat on memory://

    @cached(registry=on_redis)
    def remote(i: int) -> int:
        return i

    remote(1)
    assert len(lineage_threads()) == len(before) + 1
    poll(lambda: int(client.get(on_redis.keyspace.lineage) or 0) >= 2, timeout=5.0)
    on_redis.close()
    assert lineage_threads() == before


class Node:
    def __init__(self, name: str) -> None:
        self.name = name


def test_each_cluster_primary_gets_a_counter_in_its_lowest_slot() -> None:
    a, b, c = Node("a"), Node("b"), Node("c")
    slots = {**{s: [a] for s in range(0, 5461)}, **{s: [b, c] for s in range(5461, 10923)},
             **{s: [c] for s in range(10923, 16384)}}
    found = counter_slots(slots, ["a", "b", "c"], {})
    names = counter_keys("p:~lineage", found)
    assert [key_slot(name.encode()) for name in names] == [0, 5461, 10923]
    assert all(name.startswith("p:~lineage:{l") for name in names)
    assert counter_keys("p:~lineage", found) == names  # the same names every beat
    assert key_slot(f"x{{{slot_tag(16383)}}}".encode()) == 16383
    # kept while each counter's slot is still its primary's, whatever else moves
    slots[7000] = [a]
    assert counter_slots(slots, ["a", "b", "c"], found) == found
    slots[0] = [b]  # a's counter slot moved: a is given its lowest slot now
    assert counter_slots(slots, ["a", "b", "c"], found) == {"a": 1, "b": 0, "c": 10923}
    assert counter_slots(slots, ["a", "b", "c", "d"], found) == {"a": 1, "b": 0, "c": 10923}



class NoIncr(fakeredis.FakeRedis):
    """A client whose user may not run INCR (a minimal ACL written before the counter)."""

    incrs = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if args and args[0] == "INCR":
            NoIncr.incrs += 1
            raise redis.exceptions.NoPermissionError("this user has no permissions to run "
                                                     "the 'incr' command")
        return super().execute_command(*args, **options)


@pytest.mark.usefixtures("quiet_beats")
def test_a_user_without_incr_is_told_once_and_the_rest_works(
        make_registry: Callable[..., Registry], caplog: pytest.LogCaptureFixture) -> None:
    reg = make_registry(NoIncr(), stats_interval=0)

    @cached(registry=reg)
    def item(i: int) -> int:
        return i

    assert item(1) == 1
    reg.lineage.beat()
    reg.lineage.beat()
    assert NoIncr.incrs == 1  # given up after the first refusal
    told = [r.getMessage() for r in caplog.records if "lineage counter" in r.getMessage()]
    assert len(told) == 1 and "refuses INCR" in told[0]
    assert item(1) == 1 and item.stats().hits == 1


@pytest.mark.usefixtures("quiet_beats")
def test_configure_to_another_server_compares_nothing_with_the_last_one(
        make_registry: Callable[..., Registry], caplog: pytest.LogCaptureFixture) -> None:
    first, second = fakeredis.FakeRedis(), fakeredis.FakeRedis(server=fakeredis.FakeServer())
    reg = make_registry(first, stats_interval=0)
    beat = hand_beats(reg, Clock())
    beat(6)
    reg.configure(second, prefix=reg.prefix, stats_interval=0)
    beat(2)  # the second server's counter starts at 1: not a loss
    assert int(second.get(reg.keyspace.lineage) or 0) == 2
    assert not [r for r in caplog.records if "lost changes" in r.getMessage()]
    assert reg.recovery.pending == 0


@pytest.mark.usefixtures("quiet_beats")
def test_a_flushed_server_is_told_apart_from_an_older_one(
        make_registry: Callable[..., Registry], client: fakeredis.FakeRedis,
        caplog: pytest.LogCaptureFixture) -> None:
    reg = make_registry(client, stats_interval=0)

    @cached(registry=reg)
    def item(i: int) -> int:
        return i

    item(1)
    beat = hand_beats(reg, Clock())
    beat(5)
    client.set(reg.keyspace.lineage, 1)  # an older snapshot: the counter of long ago
    beat(1)
    client.delete(reg.keyspace.lineage)  # FLUSHDB, or a restart without persistence
    beat(1)
    told = [r.getMessage() for r in caplog.records if "every entry under the prefix" in
            r.getMessage()]
    assert len(told) == 1 and "lost changes" in told[0]  # the flush comes after one beat only
    # (another process that counted from 1 first makes this one see it go back: named too)
    assert "restart without its data" in told[0] and "FLUSHDB" in told[0]
    beat(5)
    client.delete(reg.keyspace.lineage)
    beat(1)
    told = [r.getMessage() for r in caplog.records if "every entry under the prefix" in
            r.getMessage()]
    assert len(told) == 2 and "holds no lineage counter any more" in told[1]
