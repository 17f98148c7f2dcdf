"""Auto-recovery on a real server that freezes (SIGSTOP) or dies: a change that could not reach
it (a write-through's store, an invalidation, a tag invalidation) is kept, deduplicated, and
lands once the server answers again, so no process serves the old value for longer than
about a second after that; the outage is logged once when it starts and once when it ends;
records sent together all land, in order, on every kind of server."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import redis

from cachedeco import MISS, BackendError, Registry
from cachedeco.backends.contracts.queues import Push
from cachedeco.core.entry import new_tombstone
from cachedeco.runtime import bounds as bounds_module
from cachedeco.runtime.changes import EVERY, RECORD, Change, aapply, apply
from cachedeco.runtime.guard import CLUSTER_GRACE
from cachedeco.runtime.retrying import Retrying
from tests.support.deployments import Deployment
from tests.support.polling import apoll, poll
from tools.servers import Server

FAST = {"socket_timeout": 0.3, "socket_connect_timeout": 0.3, "stats_interval": 0}

READER = textwrap.dedent("""
    import sys
    import cachedeco

    reg = cachedeco.Registry(sys.argv[1], prefix=sys.argv[2], stats_interval=0)

    @reg.cached(ttl=300, key="item:{x}", tags=["item:{x}", "items"])
    def get(x: int) -> str:
        return "from-the-database"

    print(get(1))
""")


@pytest.fixture
def frozen(fresh_redis: Server) -> Iterator[Server]:
    """The private server, resumed after the test whatever happens."""
    yield fresh_redis
    fresh_redis.resume()


def _catalogue(reg: Registry, db: dict[int, str]) -> tuple[Callable[..., str], ...]:
    @reg.cached(ttl=300, key="item:{x}", tags=["item:{x}", "items"])
    def get(x: int) -> str:
        return db[x]

    @reg.write_through(get, invalidate=["items"])
    def put(x: int, value: str) -> str:
        db[x] = value
        return value

    return get, put


def _stores(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys of the stores the registry's backend is sent from now on (it still sends
    them)."""
    backend = reg.slot("default").backend()
    sent: list[str] = []
    real = backend.write

    def write(key: str, w: Any) -> bool:
        sent.append(key)
        return real(key, w)

    monkeypatch.setattr(backend, "write", write)
    return sent


def test_a_write_through_during_a_freeze_is_not_served_stale_once_the_server_is_back(
        make_registry: Callable[..., Registry], frozen: Server, prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    db = {1: "v1", 2: "w1"}
    reg = make_registry(frozen.url, **FAST)
    other = make_registry(frozen.url, **FAST)  # another process, in effect
    get, put = _catalogue(reg, db)
    oget, _ = _catalogue(other, db)
    assert (get(1), get(2)) == ("v1", "w1")
    frozen.pause()
    stores = _stores(reg, monkeypatch)
    assert put(1, "v2") == "v2"  # the database write; the cache could not be reached
    assert stores == []  # its read before the write timed out: one wait, not a second
    assert reg.stats().recoveries_pending >= 1
    assert get(1) == "v2"  # this process never serves the old entry meanwhile
    assert get.get(1) is MISS  # nor says it has one
    frozen.resume()
    poll(lambda: reg.stats().recoveries_pending == 0, timeout=2.0)
    assert oget(1) == "v2"  # the old entry is gone for everybody
    assert reg.stats().recoveries_done >= 1
    out = subprocess.run([sys.executable, "-c", READER, frozen.url, prefix],
                         check=True, capture_output=True, text=True, timeout=30)
    assert out.stdout in ("v2\n", "from-the-database\n"), out.stderr


def _snapshot(raw: redis.Redis, prefix: str) -> dict[bytes, tuple[bytes, int]]:
    """Every key under ``prefix``, dumped with its TTL: what a replica holds now."""
    return {k: (raw.dump(k), raw.pttl(k)) for k in raw.scan_iter(f"{prefix}:*")}


def _put_back(raw: redis.Redis, before: dict[bytes, tuple[bytes, int]]) -> None:
    """The keys as :func:`_snapshot` found them: the changes made since are lost, as on a
    server that took them and was then replaced by one that never saw them."""
    for k, (data, ttl) in before.items():
        raw.restore(k, max(ttl, 0), data, replace=True)


def test_changes_that_landed_just_before_an_outage_are_applied_again_after_it(
        make_registry: Callable[..., Registry], frozen: Server, prefix: str) -> None:
    # Redis replicates asynchronously: a failover can lose the changes the dying primary
    # acknowledged last, and the promoted replica then holds the old entry (and tag tokens).
    db = {1: "a", 2: "x"}
    reg = make_registry(frozen.url, **FAST)
    get, put = _catalogue(reg, db)
    assert (get(1), get(2)) == ("a", "x")
    with redis.Redis.from_url(frozen.url) as raw:
        before = _snapshot(raw, prefix)
        assert put(1, "b") == "b"  # it lands
        _put_back(raw, before)  # ...and is lost: what the replica held before
        frozen.pause()  # the outage (the failover) begins with the next change
        assert put(2, "y") == "y"
        assert reg.stats().recoveries_pending >= 3  # item 2, and item 1 and "items" again
        frozen.resume()
        poll(lambda: reg.stats().recoveries_pending == 0, timeout=3.0)
    assert (get(1), get(2)) == ("b", "y")  # not the "a" the lost change had replaced


def test_what_recovery_applied_is_applied_again_by_the_next_replay(
        make_registry: Callable[..., Registry], frozen: Server, prefix: str) -> None:
    # A killed Sentinel primary restarted empty runs as a primary for a moment before its
    # REPLICAOF: recovery may land there, and the resync then drops what it applied. The
    # replay of a Sentinel switch (Recovery.replay) must apply it again on the new primary.
    db = {1: "a", 2: "x"}
    reg = make_registry(frozen.url, **FAST)
    get, put = _catalogue(reg, db)
    assert (get(1), get(2)) == ("a", "x")
    with redis.Redis.from_url(frozen.url) as raw:
        before = _snapshot(raw, prefix)
        frozen.pause()
        assert put(2, "y") == "y"  # kept: the server does not answer
        frozen.resume()
        poll(lambda: reg.stats().recoveries_pending == 0, timeout=3.0)
        _put_back(raw, before)  # landed where it was then lost
        reg.recovery.replay("default")  # the sentinels named another primary
        poll(lambda: reg.stats().recoveries_pending == 0, timeout=3.0)
    assert get(2) == "y"  # not the "x" the write replaced


class _Watch:
    """A Sentinel watch's count of primary moves, moved by the test."""

    epoch = 0

    def close(self, **_: object) -> None:
        pass


def test_what_recovery_sent_as_the_primary_moved_is_applied_again(
        make_registry: Callable[..., Registry], frozen: Server, prefix: str) -> None:
    # The same loss, with the move seen while recovery's changes were on their way: the
    # move's replay ran before recovery noted them as landed (a busy process's recovery
    # thread, its reply in hand, waiting for the GIL), so it had nothing to apply again.
    db = {1: "a", 2: "x"}
    reg = make_registry(frozen.url, **FAST)
    get, put = _catalogue(reg, db)
    assert (get(1), get(2)) == ("a", "x")
    slot = reg.slot("default")
    slot.watch = watch = _Watch()  # type: ignore[assignment]
    backend = slot.backend()
    sent = backend.invalidate_tags  # the run's last command: drops, then tags
    with redis.Redis.from_url(frozen.url) as raw:
        before = _snapshot(raw, prefix)

        def moved_meanwhile(*args: Any, **kwargs: Any) -> Any:
            landed = sent(*args, **kwargs)
            if watch.epoch == 0:
                _put_back(raw, before)  # the old primary took the run, then lost it
                watch.epoch += 1  # the sentinels named another primary ...
                reg.recovery.replay("default")  # ... and the watch told recovery
            return landed

        backend.invalidate_tags = moved_meanwhile  # type: ignore[method-assign]
        frozen.pause()
        assert put(2, "y") == "y"  # kept: the server does not answer
        frozen.resume()
        poll(lambda: watch.epoch == 1 and reg.stats().recoveries_pending == 0, timeout=3.0)
    assert get(2) == "y"  # not the "x" the write replaced


def test_a_lease_whose_release_a_failover_lost_is_released_again_by_the_replay(
        make_registry: Callable[..., Registry], frozen: Server, prefix: str) -> None:
    # A lock=True load's lease reached the replica, its release (with the store) only the old
    # primary: the promoted replica holds the lease, and the key's callers in every process
    # would wait until it expires (lock_timeout / 2: 30 s here).
    reg = make_registry(frozen.url, **FAST)
    during: dict[bytes, tuple[bytes, int]] = {}
    with redis.Redis.from_url(frozen.url) as raw:

        @reg.cached(ttl=300, key="item:{x}", lock=True, lock_timeout=60)
        def get(x: int) -> str:
            during.update(_snapshot(raw, prefix))  # the lease is held now
            return "loaded"

        assert get(1) == "loaded"
        after = set(raw.scan_iter(f"{prefix}:*"))
        lease = set(during) - after
        assert lease  # released with the store
        raw.unlink(*after - set(during))  # the replica never saw the store either
        _put_back(raw, during)
        assert all(raw.pttl(k) > 20_000 for k in lease)  # held again, for 30 s
        reg.recovery.replay("default")  # the sentinels named another primary
        poll(lambda: not any(raw.exists(k) for k in lease), timeout=3.0)
        started = time.monotonic()
        assert get(1) == "loaded"  # loaded again (the store was lost), without waiting
        assert time.monotonic() - started < 5.0
    assert reg.stats().loads == 2


def test_a_lock_released_on_a_lost_primary_is_released_again_by_the_replay(
        make_registry: Callable[..., Registry], frozen: Server, prefix: str) -> None:
    # The same for cachedeco.lock: the next holder would wait out the lost holder's TTL.
    reg = make_registry(frozen.url, **FAST)
    with redis.Redis.from_url(frozen.url) as raw:
        with reg.lock("nightly-report", ttl=30):
            during = _snapshot(raw, prefix)
        lease = set(during) - set(raw.scan_iter(f"{prefix}:*"))
        assert lease
        _put_back(raw, during)
        assert all(raw.pttl(k) > 20_000 for k in lease)
        reg.recovery.replay("default")
        poll(lambda: not any(raw.exists(k) for k in lease), timeout=3.0)
        with reg.lock("nightly-report", ttl=30, timeout=2.0):  # LockTimeout if still held
            pass


def test_invalidate_tags_and_invalidate_during_an_outage_land_once_it_ends(
        make_registry: Callable[..., Registry], frozen: Server) -> None:
    db = {1: "a", 2: "b"}
    reg = make_registry(frozen.url, **FAST)
    get, _ = _catalogue(reg, db)
    assert (get(1), get(2)) == ("a", "b")
    frozen.kill()
    db.update({1: "a2", 2: "b2"})
    reg.invalidate_tags("item:1")  # returns: kept and retried (on_error="fallback")
    assert get.invalidate(2) is False  # nothing was removed yet
    assert reg.stats().recoveries_pending == 2
    assert (get(1), get(2)) == ("a2", "b2")  # not served from the backend meanwhile
    frozen.restart()  # no persistence: empty; the point is that the changes land
    poll(lambda: reg.stats().recoveries_pending == 0, timeout=3.0)
    assert reg.stats().recoveries_done == 2


def test_changes_kept_by_one_call_land_in_one_outage(
        make_registry: Callable[..., Registry], redis_url: str,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The changes one call could not send are all kept before the worker is woken: a worker
    that ran between two of them would end the outage and begin another, whose replay would
    apply the first ones again."""
    reg = make_registry(redis_url, **FAST)
    backend = reg.slot("default").backend()
    real, sent = backend.invalidate_tags, []

    def blip_once(tag_keys: list[str], *args: Any) -> None:
        sent.append(list(tag_keys))
        if len(sent) == 1:
            raise redis.ConnectionError("a blip")
        real(tag_keys, *args)

    monkeypatch.setattr(backend, "invalidate_tags", blip_once)
    # the worker at its quickest: it attempts as soon as it is woken, before the caller goes on
    monkeypatch.setattr(Retrying, "kick", lambda self, sync: self._attempt(False))
    caplog.set_level(logging.WARNING, logger="cachedeco")
    reg.invalidate_tags("a", "b", "c")
    stats = reg.stats()
    assert (stats.recoveries_pending, stats.recoveries_done) == (0, 3)
    tags = [reg.keyspace.tag(t) for t in ("a", "b", "c")]
    assert sent == [tags, tags]  # the failed call, then one run with all three
    lines = [r.getMessage() for r in caplog.records if r.name == "cachedeco"]
    assert sum("is unreachable" in line for line in lines) == 1, lines
    assert sum("answers again" in line for line in lines) == 1, lines


def test_a_refresh_that_cannot_store_drops_the_old_entry_later(
        make_registry: Callable[..., Registry], frozen: Server,
        monkeypatch: pytest.MonkeyPatch) -> None:
    db = {1: "a"}
    reg = make_registry(frozen.url, **FAST)
    get, _ = _catalogue(reg, db)
    assert get(1) == "a"
    frozen.kill()
    db[1] = "b"
    stores = _stores(reg, monkeypatch)
    assert get.refresh(1) == "b"  # computed; its store did not land
    assert stores == []  # not sent: the read before the load found the server gone
    assert reg.stats().recoveries_pending == 1
    frozen.restart()
    poll(lambda: reg.stats().recoveries_pending == 0, timeout=3.0)
    assert reg.stats().recoveries_done == 1


def test_changes_of_one_key_or_tag_are_kept_once(
        make_registry: Callable[..., Registry], frozen: Server) -> None:
    db = {1: "a", 2: "b"}
    reg = make_registry(frozen.url, **FAST)
    get, put = _catalogue(reg, db)
    assert (get(1), get(2)) == ("a", "b")
    frozen.pause()
    for round_ in range(3):
        put(1, f"a{round_}")  # one drop of item 1 and one invalidation of "items", kept once
        reg.invalidate_tags("item:2")
    get.invalidate(1)
    stats = reg.stats()
    assert stats.recoveries_pending == 3, stats  # item 1's entry, tag items, tag item:2
    assert stats.backend_errors >= 3
    frozen.resume()
    poll(lambda: reg.stats().recoveries_pending == 0, timeout=3.0)
    assert reg.stats().recoveries_done == 3
    db.update({1: "fresh-a", 2: "fresh-b"})
    assert (get(1), get(2)) == ("fresh-a", "fresh-b")  # both old entries are gone


def test_an_outage_is_logged_when_it_starts_and_when_it_ends(
        make_registry: Callable[..., Registry], frozen: Server,
        caplog: pytest.LogCaptureFixture) -> None:
    db = {x: str(x) for x in range(20)}
    reg = make_registry(frozen.url, **FAST)
    get, put = _catalogue(reg, db)
    get(0)
    caplog.set_level(logging.WARNING, logger="cachedeco")
    frozen.pause()
    for x in range(20):
        put(x, f"new{x}")  # the breaker opens after a few: later calls do not wait
        reg.invalidate_tags(f"item:{x}")
    frozen.resume()
    # the end is logged once the queue is empty: just after the count reads 0
    poll(lambda: reg.stats().recoveries_pending == 0 and any(
        "answers again" in r.getMessage() for r in caplog.records), timeout=3.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "cachedeco"]
    assert sum("is unreachable" in line for line in lines) == 1, lines
    ended = [line for line in lines if "answers again" in line]
    assert len(ended) == 1, lines
    assert "20 entry drop(s)" in ended[0] and "tag invalidation(s)" in ended[0], ended
    assert len(lines) <= 3, lines  # never one per call


def test_an_outages_end_counts_from_its_first_failed_call(
        make_registry: Callable[..., Registry], frozen: Server,
        caplog: pytest.LogCaptureFixture) -> None:
    """Reads failed for a second before the first change was kept: "answers again after"
    counted from that change (0.3 s), so an operator read a short blip."""
    db = {x: str(x) for x in range(3)}
    reg = make_registry(frozen.url, **FAST)
    get, put = _catalogue(reg, db)
    caplog.set_level(logging.WARNING, logger="cachedeco")
    frozen.pause()
    began = time.monotonic()
    while time.monotonic() - began < 1.2:
        assert get(1) == "1"  # each read fails (its socket timeout), served by the function
    put(2, "new")  # the first change kept
    frozen.resume()
    poll(lambda: any("answers again" in r.getMessage() for r in caplog.records), timeout=3.0)
    ended = [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()]
    after = float(ended[0].split("answers again after ")[1].split("s;")[0])
    assert after >= 1.2, ended


def test_a_flapping_backend_logs_one_outage_per_interval(
        make_registry: Callable[..., Registry], frozen: Server,
        caplog: pytest.LogCaptureFixture) -> None:
    db = {1: "a"}
    reg = make_registry(frozen.url, **FAST)
    get, put = _catalogue(reg, db)
    get(1)
    caplog.set_level(logging.WARNING, logger="cachedeco")
    for round_ in range(3):  # three short outages, well within one log interval
        frozen.pause()
        put(1, f"v{round_}")
        frozen.resume()
        poll(lambda: reg.stats().recoveries_pending == 0, timeout=3.0)
    assert reg.stats().recoveries_done >= 3
    # the end is said once no call failed for a second (the blips may make one outage)
    poll(lambda: any("answers again" in r.getMessage() for r in caplog.records), timeout=5.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "cachedeco"]
    assert sum("is unreachable" in line for line in lines) == 1, lines
    assert sum("answers again" in line for line in lines) == 1, lines
    assert get(1) == "v2"


def test_an_outages_end_waits_until_calls_stop_failing(
        make_registry: Callable[..., Registry], frozen: Server,
        caplog: pytest.LogCaptureFixture) -> None:
    """Changes landed while calls still failed (one Redis Cluster primary down: the others'
    slots answer): the end was said then ("answers again after 0.1s") and the real one,
    seconds later, never. It is said once no call failed for a second."""
    db = {x: str(x) for x in range(3)}
    reg = make_registry(frozen.url, **FAST)
    _, put = _catalogue(reg, db)
    caplog.set_level(logging.WARNING, logger="cachedeco")
    frozen.pause()
    put(1, "new")  # kept: the outage begins
    frozen.resume()
    poll(lambda: reg.stats().recoveries_pending == 0, timeout=3.0)  # landed
    breaker = reg.breaker("default")
    for _ in range(8):  # calls of another node's slots go on failing for a while
        breaker.failure()
        breaker.success()  # (the breaker stays closed: those fail, the others answer)
        time.sleep(0.2)
        assert not any("answers again" in r.getMessage() for r in caplog.records)
    poll(lambda: any("answers again" in r.getMessage() for r in caplog.records), timeout=5.0)
    ended = [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()]
    assert len(ended) == 1 and "1 entry drop(s)" in ended[0], ended
    assert float(ended[0].split("answers again after ")[1].split("s;")[0]) >= 1.6


def test_an_outages_end_waits_while_the_breaker_skips_calls(
        make_registry: Callable[..., Registry], frozen: Server,
        caplog: pytest.LogCaptureFixture) -> None:
    """The breaker opened on the calls that kept failing: calls skipped since counted as no
    failure, so the end was said a second after the changes landed, the backend still
    skipped."""
    db = {x: str(x) for x in range(3)}
    reg = make_registry(frozen.url, **FAST)
    _, put = _catalogue(reg, db)
    caplog.set_level(logging.WARNING, logger="cachedeco")
    frozen.pause()
    put(1, "new")
    frozen.resume()
    poll(lambda: reg.stats().recoveries_pending == 0, timeout=3.0)
    breaker = reg.breaker("default")
    for _ in range(breaker.threshold):  # the calls of the dead node's slots open it
        breaker.failure()
    for _ in range(8):
        assert not breaker.allow()  # skipped
        time.sleep(0.2)
        assert not any("answers again" in r.getMessage() for r in caplog.records)
    breaker.success()
    poll(lambda: any("answers again" in r.getMessage() for r in caplog.records), timeout=5.0)


def test_under_on_error_raise_the_call_raises_and_the_change_still_lands(
        make_registry: Callable[..., Registry], frozen: Server) -> None:
    db = {1: "a"}
    reg = make_registry(frozen.url, on_error="raise", **FAST)
    get, put = _catalogue(reg, db)
    assert get(1) == "a"
    frozen.pause()
    with pytest.raises(BackendError, match="failed to write through"):
        put(1, "b")
    assert db[1] == "b"
    frozen.resume()
    poll(lambda: reg.stats().recoveries_pending == 0, timeout=3.0)
    assert get(1) == "b"


async def test_asyncio_writers_and_invalidations_are_recovered_too(
        amake_registry: Callable[..., Registry], frozen: Server) -> None:
    db = {1: "a", 2: "b"}
    reg = amake_registry(frozen.url, **FAST)

    @reg.cached(ttl=300, key="item:{x}", tags=["item:{x}"])
    async def get(x: int) -> str:
        return db[x]

    @reg.write_through(get)
    async def put(x: int, value: str) -> str:
        db[x] = value
        return value

    assert (await get(1), await get(2)) == ("a", "b")
    frozen.kill()
    assert await put(1, "a2") == "a2"
    assert await get.invalidate(2) is False
    await reg.ainvalidate_tags("item:1")
    assert reg.stats().recoveries_pending == 3
    db[2] = "b2"
    assert (await get(1), await get(2)) == ("a2", "b2")
    frozen.restart()
    await apoll(lambda: reg.stats().recoveries_pending == 0, timeout=3.0)
    assert reg.stats().recoveries_done == 3


@pytest.mark.deployments("redis", "cluster", "sentinel")
async def test_records_sent_together_all_land_in_order(
        amake_registry: Callable[..., Registry], deployment: Deployment, prefix: str) -> None:
    reg = amake_registry(deployment.url, **FAST)
    names = reg.keyspace.queue("m.f")

    def records(tag: str) -> list[Change]:
        return [Change("default", RECORD, f"{prefix}:{tag}{i}", 60_000, function="m.f",
                       names=names, push=Push(f"{prefix}:{tag}{i}", (), None, f"{tag}{i}".encode(),
                                              new_tombstone(), 60_000)) for i in range(20)]

    slot = reg.slot("default")
    apply(slot.backend(), records("s"))  # one MULTI/EXEC on one server; one by one on a cluster
    await aapply(slot.abackend(), records("a"))
    taken, length = slot.backend().queue(names).take("reader", 100, 60_000)
    assert length == 40
    assert [m.record for m in taken] == [f"{t}{i}".encode() for t in "sa" for i in range(20)]
    assert [m.key for m in taken] == [f"{prefix}:{t}{i}" for t in "sa" for i in range(20)]


@pytest.mark.parametrize("spooled", [False, True], ids=["memory", "spool"])
def test_many_pending_drops_become_one_invalidation_of_their_function(
        make_registry: Callable[..., Registry], frozen: Server, *, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        spooled: bool) -> None:
    # a long outage under many writes keeps a few changes per function, not one per key
    monkeypatch.setattr(bounds_module, "MOST_PENDING", 50)
    db = {x: "a" for x in range(200)}
    spool = tmp_path / "spool.db"
    writer = make_registry(frozen.url, **FAST, **({"spool": spool} if spooled else {}))

    def rows() -> int:
        with closing(sqlite3.connect(spool)) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0])

    reader = make_registry(frozen.url, **FAST)  # another process's registry
    get, _ = _catalogue(writer, db)
    other, _ = _catalogue(reader, db)
    assert [other(x) for x in db] == ["a"] * 200
    frozen.pause()
    for x in db:
        db[x] = "b"
        get.invalidate(x)
    assert writer.stats().recoveries_pending <= 51  # not 200
    if spooled:
        assert rows() == writer.stats().recoveries_pending  # the spool too
    assert "entry drop(s) became 1 invalidation(s) of their functions" in caplog.text
    assert get(7) == "b"  # this process does not serve the function's entries meanwhile
    frozen.resume()
    poll(lambda: writer.stats().recoveries_pending == 0, timeout=5.0)
    assert [other(x) for x in db] == ["b"] * 200  # every old entry is gone, everywhere
    if spooled:
        assert rows() == 0


@pytest.mark.parametrize("spooled", [False, True], ids=["memory", "spool"])
def test_many_pending_tag_invalidations_become_one_invalidation_of_every_entry(
        make_registry: Callable[..., Registry], frozen: Server, *, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        spooled: bool) -> None:
    # a long outage under many invalidations of distinct tags keeps one change, not one a tag
    monkeypatch.setattr(bounds_module, "MOST_TAGS", 50)
    db = {x: "a" for x in range(200)}
    spool = tmp_path / "spool.db"
    writer = make_registry(frozen.url, **FAST, **({"spool": spool} if spooled else {}))
    reader = make_registry(frozen.url, **FAST)  # another process's registry
    get, _ = _catalogue(writer, db)
    other, _ = _catalogue(reader, db)
    runs: list[int] = []

    @reader.cached(ttl=300)
    def untagged(x: int) -> int:  # carries none of the tags invalidated: its function's only
        runs.append(x)
        return x

    assert [other(x) for x in db] == ["a"] * 200
    assert untagged(1) == 1 and untagged(1) == 1 and runs == [1]
    frozen.pause()
    for x in db:
        db[x] = "b"
        writer.invalidate_tags(f"item:{x}")
    assert writer.stats().recoveries_pending <= 51  # not 200
    if spooled:
        with closing(sqlite3.connect(spool)) as conn:
            assert conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0] == (
                writer.stats().recoveries_pending)
    assert "became one invalidation of every entry under the prefix" in caplog.text
    assert get(7) == "b"  # this process serves nothing from the backend meanwhile
    assert get.get(150) is MISS
    frozen.resume()
    poll(lambda: writer.stats().recoveries_pending == 0, timeout=5.0)
    assert [other(x) for x in db] == ["b"] * 200  # every old entry is gone, everywhere
    assert untagged(1) == 1 and runs == [1, 1]  # and every other entry missed once
    assert untagged(1) == 1 and runs == [1, 1]  # then is cached again
    assert get.get(150) == "b"


@pytest.mark.deployments("redis", "cluster", "sentinel")
async def test_an_invalidation_of_every_entry_lands_sync_and_async(
        make_registry: Callable[..., Registry], amake_registry: Callable[..., Registry],
        deployment: Deployment) -> None:
    runs: list[str] = []
    registries = {"sync": make_registry(deployment.url, **FAST),
                  "async": amake_registry(deployment.url, **FAST)}
    reg = registries["sync"]

    @reg.cached(ttl=300, tags=["t:{x}"])
    def tagged(x: int) -> int:
        runs.append("tagged")
        return x

    @reg.cached(ttl=300)
    def plain(x: int) -> int:
        runs.append("plain")
        return x

    every = Change("default", EVERY, reg.keyspace.fn_tags, 60_000)
    assert (tagged(1), plain(1), tagged(1), plain(1)) == (1, 1, 1, 1)
    assert runs == ["tagged", "plain"]
    for flavour in ("sync", "async"):
        runs.clear()
        slot = registries[flavour].slot("default")
        if flavour == "sync":
            apply(slot.backend(), [every])
        else:
            await aapply(slot.abackend(), [every])
        assert (tagged(1), plain(1), tagged(1), plain(1)) == (1, 1, 1, 1)
        assert runs == ["tagged", "plain"], flavour  # both missed once, then hit


def test_a_cluster_breaker_waits_for_a_run_of_failures_to_last(
        make_registry: Callable[..., Registry], cluster_url: str, redis_url: str) -> None:
    """On Redis Cluster the breaker opens only on a run of failures that lasted a second (one
    primary failing over fails a share of the calls); on one server, at once."""
    assert make_registry(cluster_url).breaker("default").grace == CLUSTER_GRACE == 1.0
    assert make_registry(redis_url).breaker("default").grace == 0.0
