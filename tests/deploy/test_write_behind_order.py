"""Write-behind order across processes: the records of one key reach ``flush`` in the order
their calls returned, whichever process queued and whichever delivers them, so the plain
upsert the docs recommend leaves the database at the newest record."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
