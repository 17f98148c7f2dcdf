"""A real redis-server killed and restarted from its RDB file: an older snapshot brings back
entries and tag tokens that later changes had replaced; the lineage counter notices, and
every entry under the prefix is loaded again. A snapshot that holds every change keeps the
cache warm."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from cachedeco import Registry, cached
from cachedeco.runtime import lineage
from tests.support.calls import Calls
from tests.support.polling import poll
from tools.servers import Server

BEAT = 0.2  # the test's beat: the verdict's "a beat" and "the replay's window" scaled down
WINDOW = 0.6


@pytest.fixture(autouse=True)
def quick_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lineage, "BEAT", BEAT)
    monkeypatch.setattr(lineage, "WINDOW", WINDOW)


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


def test_a_restart_from_an_older_snapshot_loads_every_entry_again(
        make_registry: Callable[..., Registry], fresh_redis: Server,
        admin: redis.Redis) -> None:
    reg = make_registry(fresh_redis.url, stats_interval=0, socket_timeout=0.5)
    calls = Calls()
    version = itertools.count(1)

    @cached(registry=reg, ttl=600, tags=["item:{i}"])
    def item(i: int) -> int:
        calls(i)
        return next(version)

    @cached(registry=reg, ttl=600)
    def untagged(i: int) -> int:
        calls(-i)
        return -i

    assert (item(1), untagged(1)) == (1, -1)
    beats(admin, reg.keyspace.lineage, 3)
    admin.save()  # the RDB file: item(1) is 1, its tag's token the old one
    beats(admin, reg.keyspace.lineage, int(WINDOW / BEAT) + 3)
    reg.invalidate_tags("item:1")
    assert item(1) == 2
    beats(admin, reg.keyspace.lineage, int(WINDOW / BEAT) + 3)  # older than a replay reaches
    restart_from_rdb(fresh_redis, admin)
    assert admin.exists(item.key(1))  # the older dataset is back

    def renewed() -> bool:  # a beat saw the counter gone back, and the renewal landed
        stats = reg.stats()
        return stats.recoveries_done >= 1 and stats.recoveries_pending == 0

    poll(renewed, timeout=10.0)
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
    beats(admin, reg.keyspace.lineage, int(WINDOW / BEAT) + 3)
    reg.lineage.stop()  # no beat between the snapshot and the kill
    admin.save()
    restart_from_rdb(fresh_redis, admin)
    reg.lineage.ensure()
    beats(admin, reg.keyspace.lineage, 3)
    assert item(1) == 1
    assert len(calls) == 1  # a hit: the server lost nothing, nothing was invalidated
