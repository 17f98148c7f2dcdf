"""The spool (``Registry(spool=PATH)``, SQLite in WAL mode) on a real server that dies: a
``@write_behind`` call returns during the outage and its record is delivered once the server
is back, by this process or by a new one started on the same spool after the first was
killed; after an outage, the drops go out first (ahead of the records of other keys, behind
those of their own key) and the records many per round trip; a path that cannot be a file is
a ConfigurationError when the registry is configured."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from cachedeco import BackendError, ConfigurationError, Registry
from cachedeco.runtime import bounds
from cachedeco.runtime.retrying import Retrying
from tests.support.calls import Calls
from tests.support.events import Events
from tests.support.near import warm
from tests.support.polling import apoll, poll
from tools.servers import Server
from tools.servers.process import free_port

FAST = {"socket_timeout": 0.3, "socket_connect_timeout": 0.3, "stats_interval": 0}

#: What every writer process starts with: a registry on the server and the spool its
#: arguments name.
SPOOLED = textwrap.dedent("""
    import sys, time
    import cachedeco

    url, prefix, spool = sys.argv[1:4]
    reg = cachedeco.Registry(url, prefix=prefix, spool=spool, socket_timeout=0.3,
                             socket_connect_timeout=0.3, stats_interval=0)
""")

WRITER = SPOOLED + textwrap.dedent("""
    name = sys.argv[4]

    @reg.write_behind(key="event:{id}", flush=print, flush_interval=60)
    def record(id: str, v: int) -> dict:
        return {"id": id, "v": v}

    for v in range(5):
        record(f"{name}{v}", v)  # the server is down: into the spool, and the call returns
    reg.invalidate_tags("events")  # a pending recovery: kept in the spool too
    print("queued", flush=True)
    time.sleep(60)  # killed here, its records still in the spool
""")


def test_write_behind_returns_during_an_outage_and_its_records_arrive_after_it(
        make_registry: Callable[..., Registry], fresh_redis: Server, events: Events,
        tmp_path: Path) -> None:
    reg = make_registry(fresh_redis.url, spool=tmp_path / "spool.db", **FAST)
    calls = Calls()
    db: dict[str, dict[str, Any]] = {}

    @reg.cached(ttl=300, key="ev:{id}")
    def get(id: str) -> dict[str, Any]:
        calls(id)
        return db.get(id, {"id": id, "v": -1})

    @reg.write_through(get)
    def put(id: str, v: int) -> dict[str, Any]:
        db[id] = {"id": id, "v": v}
        return db[id]

    def flush(records: list[dict[str, Any]]) -> None:
        db.update((r["id"], r) for r in records)
        events.flush(records)

    @reg.write_behind(get, flush=flush, flush_interval=0.1)
    def save(id: str, v: int) -> dict[str, Any]:
        return {"id": id, "v": v}

    assert get("a") == {"id": "a", "v": -1}
    fresh_redis.kill()
    assert put("a", 1) == {"id": "a", "v": 1}  # a drop of ev:a, kept
    assert save("a", 2) == {"id": "a", "v": 2}  # then a record of ev:a: kept after it
    assert save("b", 3) == {"id": "b", "v": 3}
    assert reg.stats().recoveries_pending == 3
    assert reg.stats().write_behind_pending == 2  # the records waiting in the spool
    fresh_redis.restart()
    poll(lambda: reg.stats().recoveries_pending == 0, timeout=3.0)
    assert reg.stats().recoveries_done == 3
    poll(lambda: reg.stats().write_behind_pending == 0)  # flushed (flush_interval 0.1 s)
    loads = len(calls)
    # a record kept during the outage is queued without its entry (other processes may have
    # cached newer values meanwhile): the read loads what the flush wrote, then hits
    assert get("a") == {"id": "a", "v": 2}
    assert get("a") == {"id": "a", "v": 2}
    assert len(calls) == loads + 1
    reg.flush()
    assert events.rows() == [("a", 2), ("b", 3)]


class _Monitor:
    """The commands a server runs, in the order it runs them (MONITOR, read in a thread)."""

    STOP = "monitor-stop"

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.commands: list[str] = []  # the clients' commands (not those run by scripts)
        self._monitor = self.client.monitor().__enter__()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            seen = self._monitor.next_command()
            if self.STOP in seen["command"]:
                return
            if seen["client_type"] != "lua":
                self.commands.append(seen["command"])

    def stop(self) -> list[str]:
        self.client.echo(self.STOP)
        self._thread.join(timeout=10)
        self._monitor.__exit__()
        self.client.close()
        return self.commands


def _killed_once_queued(runs: list[list[str]], said: str) -> None:
    """Start a writer per argument list (the script and its arguments), wait until each has
    said ``said`` (what it wrote is in the spool), then kill every one (``kill -9``)."""
    writers = [subprocess.Popen([sys.executable, "-c", *argv], stdout=subprocess.PIPE,
                                text=True) for argv in runs]
    try:
        for writer in writers:
            assert writer.stdout is not None
            assert writer.stdout.readline() == said
    finally:
        for writer in writers:
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait(timeout=10)
            assert writer.stdout is not None
            writer.stdout.close()


def _batches(commands: list[str]) -> list[list[str]]:
    """The MULTI ... EXEC blocks among ``commands``, each as its commands."""
    blocks: list[list[str]] = []
    block: list[str] | None = None
    for command in commands:
        if command == "MULTI":
            block = []
        elif command == "EXEC" and block is not None:
            blocks.append(block)
            block = None
        elif block is not None:
            block.append(command)
    return blocks


ORDERED = SPOOLED + textwrap.dedent("""
    @reg.cached(ttl=300, key="item:{id}")
    def get(id: str) -> dict:
        return {"id": id, "v": 0}

    @reg.write_through(get)
    def put(id: str, v: int) -> dict:
        return {"id": id, "v": v}

    @reg.write_behind(get, flush=print, flush_interval=60)
    def save(id: str, v: int) -> dict:
        return {"id": id, "v": v}

    save("p", 5)  # a record that stores item p's entry...
    for n in range(30):
        save(f"e{n}", n)
    put("p", 6)  # ...then the drop of that entry
    put("q", 2)  # a drop behind 31 records of other keys
    print("queued", reg.stats().recoveries_pending, flush=True)
    time.sleep(60)  # killed here, its changes in the spool
""")


def test_after_an_outage_drops_go_first_and_records_in_one_batch(
        make_registry: Callable[..., Registry], fresh_redis: Server, events: Events,
        tmp_path: Path, prefix: str) -> None:
    spool = tmp_path / "spool.db"
    fresh_redis.kill()
    _killed_once_queued([[ORDERED, fresh_redis.url, prefix, str(spool)]], "queued 33\n")
    fresh_redis.restart()
    monitor = _Monitor(fresh_redis.url)
    reg = make_registry(fresh_redis.url, spool=spool, **FAST)

    def save(id: str, v: int) -> dict[str, Any]:
        return {"id": id, "v": v}

    save.__module__, save.__qualname__ = "__main__", "save"  # the writer's function
    reg.write_behind(key="item:{id}", flush=events.flush, flush_interval=60)(save)
    reg.flush()  # takes the spool over and delivers it
    commands = monitor.stop()
    assert reg.stats().recoveries_done == 33
    assert [len(b) for b in _batches(commands)] == [31], commands  # one round trip
    drop = {k: commands.index(next(c for c in commands if c.startswith(f"SET {prefix}:{k} ")))
            for k in ("item:p", "item:q")}  # a drop: SET key tombstone GET PX
    assert drop["item:q"] < commands.index("MULTI") < drop["item:p"]

    @reg.cached(ttl=300, key="item:{id}")
    def get(id: str) -> dict[str, Any]:
        return {"id": id, "v": "db"}

    assert get("p") == {"id": "p", "v": "db"}  # the record's entry (5) was dropped after it
    reg.flush()
    assert events.rows() == sorted([("p", 5), *((f"e{n}", n) for n in range(30))])


def test_a_new_process_on_the_same_spool_delivers_what_killed_ones_kept(
        make_registry: Callable[..., Registry], fresh_redis: Server, events: Events,
        tmp_path: Path, prefix: str) -> None:
    spool = tmp_path / "spool.db"
    fresh_redis.kill()
    _killed_once_queued([[WRITER, fresh_redis.url, prefix, str(spool), name]
                         for name in ("a", "b")],  # two processes sharing the spool file
                        "queued\n")
    fresh_redis.restart()

    reg = make_registry(fresh_redis.url, spool=spool, **FAST)

    def record(id: str, v: int) -> dict[str, Any]:
        return {"id": id, "v": v}

    record.__module__, record.__qualname__ = "__main__", "record"  # the writer's function
    reg.write_behind(key="event:{id}", flush=events.flush, flush_interval=60)(record)
    reg.flush()  # the registry is used: what the spool holds is taken over and delivered
    assert events.rows() == sorted((f"{name}{v}", v) for name in "ab" for v in range(5))
    # the ten records, and one invalidation of the tag both writers invalidated (deduplicated)
    assert reg.stats().recoveries_done == 11
    with fresh_redis.process.client() as raw:
        assert raw.exists(reg.keyspace.tag("events"))


def test_a_record_kept_during_an_outage_leaves_no_older_value_cached(
        make_registry: Callable[..., Registry], fresh_redis: Server, tmp_path: Path,
        prefix: str) -> None:
    """A record a killed process kept (k0, v 0) is queued once the server is back, after a
    newer record of that key another process queued and flushed meanwhile (v 10): its entry
    was stored over the newer one's and served until the TTL, while the database (a
    versioned upsert) kept v 10. Now it leaves the entry to the next read."""
    spool = tmp_path / "spool.db"
    db: dict[str, dict[str, Any]] = {}

    def upsert(records: list[dict[str, Any]]) -> None:
        for r in records:
            if r["v"] > db.get(r["id"], {"v": -1})["v"]:
                db[r["id"]] = r

    fresh_redis.kill()
    _killed_once_queued([[WRITER, fresh_redis.url, prefix, str(spool), "k"]], "queued\n")
    fresh_redis.restart()
    other = make_registry(fresh_redis.url, prefix=prefix, **FAST)
    calls = Calls()

    @other.cached(ttl=300, key="event:{id}")
    def get(id: str) -> dict[str, Any]:
        calls(id)
        return db[id]

    @other.write_behind(get, flush=upsert, flush_interval=60)
    def save(id: str, v: int) -> dict[str, Any]:
        return {"id": id, "v": v}

    assert save("k0", 10) == {"id": "k0", "v": 10}
    other.flush()
    assert get("k0") == {"id": "k0", "v": 10} and db["k0"]["v"] == 10 and not calls
    taker = make_registry(fresh_redis.url, prefix=prefix, spool=spool, **FAST)

    def record(id: str, v: int) -> dict[str, Any]:
        return {"id": id, "v": v}

    record.__module__, record.__qualname__ = "__main__", "record"  # the writer's function
    taker.write_behind(key="event:{id}", flush=upsert, flush_interval=60)(record)
    taker.flush()  # what the spool holds is taken over and delivered: k0 v 0 among them
    assert db["k0"] == {"id": "k0", "v": 10}  # the upsert kept the newer row
    assert get("k0") == {"id": "k0", "v": 10}  # and so does the cache
    assert calls.log == ["k0"]  # loaded: the entry was left to this read


@pytest.mark.parametrize("operation", ["clear", "invalidate_pattern", "lock",
                                       "ainvalidate_pattern", "alock"])
def test_any_registry_operation_takes_over_what_the_spool_holds(
        make_registry: Callable[..., Registry], fresh_redis: Server, tmp_path: Path,
        operation: str) -> None:
    """A maintenance process that only clears, cleans a pattern or takes a lock uses its
    registry too: what killed processes left in the spool is delivered (it waited for a
    decorated call or an invalidate_tags before)."""
    spool = tmp_path / "spool.db"
    fresh_redis.kill()
    prefix = "spooled"  # (the writer's; the test's own prefix fixture is for its registries)
    _killed_once_queued([[WRITER, fresh_redis.url, prefix, str(spool), "a"]], "queued\n")
    fresh_redis.restart()
    reg = make_registry(fresh_redis.url, prefix=prefix, spool=spool, **FAST)
    if operation == "clear":
        reg.clear()
    elif operation == "invalidate_pattern":
        reg.invalidate_pattern("nothing:*")
    elif operation == "lock":
        with reg.lock("maintenance"):
            pass
    else:
        async def use() -> None:
            if operation == "ainvalidate_pattern":
                await reg.ainvalidate_pattern("nothing:*")
            else:
                async with reg.lock("maintenance"):
                    pass
        asyncio.run(use())
    with fresh_redis.process.client() as raw:
        stream = reg.keyspace.queue("__main__.record").stream
        poll(lambda: raw.exists(reg.keyspace.tag("events")) and raw.xlen(stream) == 5)
    # the five records and the invalidation (counted once each has landed: just after)
    poll(lambda: reg.stats().recoveries_done == 6)


DROPPER = SPOOLED + textwrap.dedent("""
    @reg.cached(ttl=300, key="item:{x}")
    def get(x: int) -> str:
        return "b"

    for x in range(120):
        get.invalidate(x)  # the server does not answer: 120 drops, each a row of the spool
    print("queued", flush=True)
    time.sleep(60)  # killed here
""")


def test_changes_taken_over_from_the_spool_are_bounded_as_the_calls_own(
        make_registry: Callable[..., Registry], fresh_redis: Server, tmp_path: Path,
        prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the leftovers of killed processes become a few changes per function, as one process's
    # own do in a long outage, instead of one per key however many they are
    monkeypatch.setattr(bounds, "MOST_PENDING", 50)
    spool = tmp_path / "spool.db"
    db = {x: "a" for x in range(120)}
    reader = make_registry(fresh_redis.url, **FAST)  # another process's, no spool

    def get(x: int) -> str:
        return db[x]

    get.__module__, get.__qualname__ = "__main__", "get"  # the writer's function
    cached = reader.cached(ttl=300, key="item:{x}")(get)
    assert [cached(x) for x in db] == ["a"] * 120

    fresh_redis.pause()
    try:
        db.update((x, "b") for x in db)
        _killed_once_queued([[DROPPER, fresh_redis.url, prefix, str(spool)]], "queued\n")
        assert _rows(spool) == 120
        reg = make_registry(fresh_redis.url, spool=spool, **FAST)
        reg.flush()  # taken over, and tried: the server still does not answer
        assert 0 < reg.stats().recoveries_pending <= 51  # the drops became one invalidation
        assert _rows(spool) == reg.stats().recoveries_pending
    finally:
        fresh_redis.resume()
    reg.flush()  # delivered now: the server answers again
    assert reg.stats().recoveries_pending == _rows(spool) == 0
    assert [cached(x) for x in db] == ["b"] * 120  # every old entry is gone


def test_changes_taken_over_from_the_spool_drop_the_near_values_they_concern(
        make_registry: Callable[..., Registry], redis_url: str, tmp_path: Path,
        prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # a process that could not reach Redis (another address here) left drops in the spool;
    # this one kept the entries near: once it takes the drops over, it serves neither copy
    monkeypatch.setattr(Retrying, "start", lambda self: None)  # adopt below, attempt never
    spool = tmp_path / "spool.db"
    db = {x: "a" for x in range(120)}
    reg = make_registry(redis_url, spool=spool, near_cache=1000, **FAST)

    def get(x: int) -> str:
        return db[x]

    get.__module__, get.__qualname__ = "__main__", "get"  # the writer's function
    cached = reg.cached(ttl=300, key="item:{x}")(get)
    warm(lambda: cached(1), cached.stats)
    db.update((x, "b") for x in db)
    assert cached(1) == "a"  # a near hit
    dead = f"redis://127.0.0.1:{free_port()}/0"
    _killed_once_queued([[DROPPER, dead, prefix, str(spool)]], "queued\n")
    reg.recovery.adopt()
    assert reg.stats().recoveries_pending == 120
    assert cached(1) == "b"


def test_without_a_spool_a_write_behind_call_raises_during_an_outage(
        make_registry: Callable[..., Registry], fresh_redis: Server, events: Events) -> None:
    reg = make_registry(fresh_redis.url, **FAST)

    @reg.write_behind(key="event:{id}", flush=events.flush)
    def save(id: str, v: int) -> dict[str, Any]:
        return {"id": id, "v": v}

    fresh_redis.kill()
    with pytest.raises(BackendError, match="spool"):
        save("a", 1)


@pytest.mark.parametrize("where", ["a directory", "a missing directory"])
def test_a_spool_path_that_cannot_be_a_file_is_refused(tmp_path: Path, where: str) -> None:
    path = tmp_path if where == "a directory" else tmp_path / "missing" / "spool.db"
    with pytest.raises(ConfigurationError, match="spool"):
        Registry("memory://", spool=path)
    registry = Registry("memory://")
    with pytest.raises(ConfigurationError, match="spool"):
        registry.configure("memory://", spool=str(path))
    assert registry.recovery.spool is None  # left as it was


def _open_files(path: Path) -> list[str]:
    """The files of this process open under ``path``'s name (the spool, its -wal, -shm)."""
    fds = Path("/proc/self/fd")
    return [target for fd in fds.iterdir()
            if (target := os.path.realpath(fd)).startswith(str(path))]


def _rows(path: Path) -> int:
    """The changes a spool file holds."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM changes").fetchone()[0])


def test_configure_to_another_spool_during_an_outage_forgets_each_change_in_its_own(
        make_registry: Callable[..., Registry], fresh_redis: Server, tmp_path: Path,
        prefix: str) -> None:
    """Changes kept in one spool land after configure() named another: their rows go from
    the first spool, and the second one's rows with the same ids (another change, still
    waiting) stay."""
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    nowhere = {"other": "redis://127.0.0.1:1/0"}  # nothing listens: its changes never land
    reg = make_registry(fresh_redis.url, backends=nowhere, spool=first, **FAST)
    fresh_redis.kill()
    for tag in ("t1", "t2", "t3"):
        reg.invalidate_tags(tag)
    assert _rows(first) == 3
    reg.configure(fresh_redis.url, prefix=prefix, backends=nowhere, spool=second, **FAST)
    reg.invalidate_tags("x", backend="other")
    assert _rows(second) == 1
    fresh_redis.restart()
    # landed (counted just before their rows go): forgotten where they were kept
    poll(lambda: reg.stats().recoveries_done >= 3 and _rows(first) == 0, timeout=5.0)
    assert _rows(second) == 1  # its row (id 1, as one of the first's) still waits
    assert reg.stats().recoveries_pending == 1


def test_a_change_replaced_after_configure_named_another_spool_leaves_neither_row_behind(
        make_registry: Callable[..., Registry], fresh_redis: Server, tmp_path: Path,
        prefix: str) -> None:
    """One tag invalidated during an outage, before and after configure() named another
    spool: the second replaces the first (one pending change), in the files too."""
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    reg = make_registry(fresh_redis.url, spool=first, **FAST)
    fresh_redis.kill()
    reg.invalidate_tags("t")
    assert _rows(first) == 1
    reg.configure(fresh_redis.url, prefix=prefix, spool=second, **FAST)
    reg.invalidate_tags("t")
    assert reg.stats().recoveries_pending == 1
    assert (_rows(first), _rows(second)) == (0, 1)  # the next process on first has none


def test_a_closed_registry_closes_its_spool(tmp_path: Path, redis_url: str,
                                            prefix: str) -> None:
    path = tmp_path / "spool.db"
    registry = Registry(redis_url, prefix=prefix, spool=path, **FAST)

    @registry.cached(ttl=60)
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    assert _open_files(path)  # SQLite holds the file while the registry runs
    registry.close()
    assert _open_files(path) == []  # Python 3.13 warns of a connection never closed
    assert f(2) == 2
    registry.invalidate_tags("t")  # used again: its worker looks at the spool again
    poll(lambda: bool(_open_files(path)), timeout=5.0)
    registry.close()
    assert _open_files(path) == []


async def test_an_asyncio_write_behind_call_returns_during_an_outage_with_a_spool(
        amake_registry: Callable[..., Registry], fresh_redis: Server, events: Events,
        tmp_path: Path) -> None:
    reg = amake_registry(fresh_redis.url, spool=tmp_path / "spool.db", **FAST)

    @reg.write_behind(key="event:{id}", flush=events.flush, flush_interval=60)
    async def save(id: str, v: int) -> dict[str, Any]:
        return {"id": id, "v": v}

    fresh_redis.kill()
    assert [await save(f"e{v}", v) for v in range(3)] == [
        {"id": f"e{v}", "v": v} for v in range(3)]
    fresh_redis.restart()
    await reg.aflush()
    assert events.rows() == [(f"e{v}", v) for v in range(3)]


async def test_changes_taken_over_for_an_asyncio_client_land_without_another_failure(
        amake_registry: Callable[..., Registry], redis_url: str, tmp_path: Path,
        prefix: str) -> None:
    # a backend given an asyncio client only is reached from a task on its loop, never from
    # the recovery thread that takes over the spool: its calls must have the task started
    spool = tmp_path / "spool.db"
    dead = f"redis://127.0.0.1:{free_port()}/0"
    _killed_once_queued([[DROPPER, dead, prefix, str(spool)]], "queued\n")
    client = redis.asyncio.Redis.from_url(redis_url)
    reg = amake_registry(client, spool=spool, **FAST)

    async def get(x: int) -> str:
        return "b"

    get.__module__, get.__qualname__ = "__main__", "get"  # the writer's function
    cached = reg.cached(ttl=300, key="item:{x}")(get)
    assert await cached(1) == "b"  # the registry is in use: the spool is taken over
    await apoll(lambda: reg.stats().recoveries_done == 120, timeout=5.0)
    assert reg.stats().recoveries_pending == 0
    await client.aclose()
