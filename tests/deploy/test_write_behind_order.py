"""Write-behind across processes: the records of one key reach ``flush`` in the order their
calls returned, whichever process queued and whichever delivers them, so the plain upsert
the docs recommend leaves the database at the newest record; and a restarted process
delivers what a dead one left, whether or not it calls the writer."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cachedeco import Registry
from tests.support.deployments import REDIS_BACKENDS, Deployment

pytestmark = pytest.mark.deployments(*REDIS_BACKENDS)

#: One process: calls of 4 keys, each made under a lock shared by the processes with the
#: key's next version (so that one key's calls follow each other across the processes); its
#: own worker delivers, into a SQLite table upserted plainly and a log of every delivery.
WORKER = textwrap.dedent("""
    import fcntl, sqlite3, sys, time
    import cachedeco

    url, prefix, db, lock_path, seconds = sys.argv[1:6]
    reg = cachedeco.Registry(url, prefix=prefix)

    def flush(records):
        con = sqlite3.connect(db, timeout=60, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT INTO t VALUES (:k, :v) ON CONFLICT (k) DO UPDATE SET "
                        "v = excluded.v", records)
        con.executemany("INSERT INTO log (k, v) VALUES (:k, :v)", records)
        con.execute("COMMIT")
        con.close()

    @reg.write_behind(key="row:{k}", flush=flush, flush_interval=0.05, batch_size=5)
    def save(k: int, v: int) -> dict:
        return {"k": k, "v": v}

    end, n = time.monotonic() + float(seconds), 0
    with open(lock_path, "a+") as lock:
        while time.monotonic() < end:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                lock.seek(0)
                versions = [int(x) for x in (lock.read().split() or ["0"] * 4)]
                versions[n % 4] += 1
                save(n % 4, versions[n % 4])  # returned: the key's newest record
                lock.seek(0)
                lock.truncate()
                lock.write(" ".join(map(str, versions)))
                lock.flush()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
            n += 1
            time.sleep(0.002)
    reg.close()
""")


def test_the_records_of_one_key_are_flushed_in_the_order_their_calls_returned(
        deployment: Deployment, prefix: str, tmp_path: Path) -> None:
    """Each process's worker took a batch while others were delivering theirs: a newer
    record of a key was flushed before an older one (dozens in a few seconds), and the plain
    upsert could end on the older."""
    db, lock = tmp_path / "db.sqlite", tmp_path / "versions"
    with sqlite3.connect(db) as con:
        con.executescript("PRAGMA journal_mode=WAL; CREATE TABLE t (k INTEGER PRIMARY KEY, "
                          "v INTEGER); CREATE TABLE log (n INTEGER PRIMARY KEY, k INTEGER, "
                          "v INTEGER);")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, deployment.url, prefix, str(db),
                               str(lock), "4"], stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with sqlite3.connect(db) as con:
        log = con.execute("SELECT k, v FROM log ORDER BY n").fetchall()
        final = dict(con.execute("SELECT k, v FROM t").fetchall())
    newest = dict(zip(range(4), map(int, lock.read_text().split()), strict=True))
    assert final == newest
    seen: dict[int, int] = {}
    backwards = []
    for k, v in log:
        if v < seen.get(k, 0):
            backwards.append((k, v, seen[k]))
        seen[k] = max(seen.get(k, 0), v)
    assert not backwards, f"{len(backwards)} of {len(log)} deliveries went back: {backwards[:5]}"


#: A process that queues records and dies before delivering any (os._exit: no close()), or
#: (argv[3] == "reads") one that only reads, then says how many records its worker flushed.
RESTARTS = textwrap.dedent("""
    import os, sys, time
    import cachedeco

    reg = cachedeco.Registry(sys.argv[1], prefix=sys.argv[2])
    flushed = []

    dies = sys.argv[3] == "dies"  # its worker would drain in an hour: it dies before

    @reg.write_behind(key="row:{k}", flush=flushed.extend, flush_interval=3600 if dies else 0.05)
    def save(k: int, v: int) -> dict:
        return {"k": k, "v": v}

    @reg.cached(ttl=60)
    def read(k: int) -> int:
        return k

    if dies:
        for k in range(5):
            save(k, k)
        os._exit(0)
    assert read(1) == 1  # the registry is in use; save is never called here
    deadline = time.monotonic() + 10
    while len(flushed) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    reg.close()
    print(sorted(r["k"] for r in flushed), flush=True)
""")


def test_a_restarted_process_delivers_what_a_dead_one_left_without_calling_the_writer(
        deployment: Deployment, prefix: str) -> None:
    """The records a process left queued when it died waited for a call of their writer in
    another process: a restarted service that only read left them there for good (their
    entries held 30 days). A registry in use starts the workers of its queues on a server."""
    for mode in ("dies", "reads"):
        done = subprocess.run([sys.executable, "-c", RESTARTS, deployment.url, prefix, mode],
                              check=False, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert done.stdout == "[0, 1, 2, 3, 4]\n", done.stderr


def test_a_flush_waits_for_another_process_batch_in_flight(
        make_registry: Callable[..., Registry], deployment: Deployment, prefix: str) -> None:
    """Two registries on one server stand for two processes sharing a queue. While one's
    batch is in its (slow) flush, the other's reg.flush() took nothing (one batch in flight
    per queue) and returned with its record still queued; it now waits for that batch."""
    flushed: list[tuple[str, int]] = []
    inside = threading.Event()

    def writer(reg: Registry, who: str, slow: float) -> Callable[[int], dict[str, int]]:
        def flush(records: list[dict[str, int]]) -> None:
            inside.set()
            time.sleep(slow)
            flushed.extend((who, r["n"]) for r in records)

        def record(n: int) -> dict[str, int]:
            return {"n": n}

        record.__qualname__ = "shared_record"  # one function, so one queue, in both
        return reg.write_behind(key="fw:{n}", flush=flush, flush_interval=3600)(record)

    first = make_registry(deployment.url, prefix=prefix)
    second = make_registry(deployment.url, prefix=prefix)
    record_first, record_second = writer(first, "first", 1.0), writer(second, "second", 0.0)
    record_first(1)
    slow = threading.Thread(target=first.flush)
    slow.start()
    assert inside.wait(10)
    record_second(2)
    second.flush()
    assert ("second", 2) in flushed  # delivered by its own flush, after the first's batch
    slow.join(10)
    assert sorted(flushed) == [("first", 1), ("second", 2)]
