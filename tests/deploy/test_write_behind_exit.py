"""A process that exits without ``close()`` while its write-behind worker flushes a batch (a
pre-fork server's worker recycled after ``max_requests``): the batch is let finish and is
acknowledged, so it does not hold the queue (one batch in flight) for ``claim_after``, and
what waits is delivered as close() would (a worker that lives less than ``flush_interval``
delivered nothing)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import redis

from cachedeco import Registry
from tools.servers import Server

EXITS = textwrap.dedent("""
    import sys, threading, time
    import cachedeco

    url, prefix, out = sys.argv[1:4]
    reg = cachedeco.Registry(url, prefix=prefix, stats_interval=0)
    flushing = threading.Event()

    def flush(records):
        flushing.set()
        time.sleep(0.5)
        with open(out, "a") as f:
            f.writelines(f"{r['n']}\\n" for r in records)

    @reg.write_behind(key="ex:{n}", flush=flush, flush_interval=0.05)
    def record(n: int) -> dict:
        return {"n": n}

    record(1)
    assert flushing.wait(10)
    record(2)  # queued behind the batch in flight
    sys.exit(0)  # no close(): the interpreter exits while the batch is in flush
""")


def test_an_exit_during_a_flush_lets_the_batch_finish_then_delivers_what_waits(
        fresh_redis: Server, prefix: str, tmp_path: Path) -> None:
    out = tmp_path / "flushed.txt"
    done = subprocess.run([sys.executable, "-c", EXITS, fresh_redis.url, prefix, str(out)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "1\n2\n"  # the batch in flight, then what waited
    stream = Registry("memory://", prefix=prefix).keyspace.queue("__main__.record").stream
    with redis.Redis.from_url(fresh_redis.url) as raw:
        assert raw.xpending(stream, "cachedeco")["pending"] == 0  # acknowledged: not held
        assert raw.xlen(stream) == 0


READS = textwrap.dedent("""
    import os, sys, time
    import cachedeco

    url, prefix, out = sys.argv[1:4]
    reg = cachedeco.Registry(url, prefix=prefix, stats_interval=0)

    def flush(records):
        with open(out, "a") as f:
            f.writelines(f"{r['n']}\\n" for r in records)

    @reg.write_behind(key="ex:{n}", flush=flush, flush_interval=3600)
    def record(n: int) -> dict:
        return {"n": n}

    mode = sys.argv[4]
    if mode == "read":
        reg.invalidate_tags("nothing")  # in use: its worker runs, but it queued nothing
        time.sleep(0.2)
        sys.exit(0)
    record(int(sys.argv[5]))  # its worker waits an hour before its first round
    if mode == "killed":
        os._exit(0)  # no exit hooks: the record stays queued
    sys.exit(0)
""")


def test_a_short_lived_writer_delivers_at_exit_and_a_reader_does_not(
        fresh_redis: Server, prefix: str, tmp_path: Path) -> None:
    out = tmp_path / "flushed.txt"

    def run(*args: str) -> None:
        done = subprocess.run([sys.executable, "-c", READS, fresh_redis.url, prefix, str(out),
                               *args], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr

    run("killed", "1")  # record 1 left queued
    run("read")
    assert not out.exists()  # a process that queued nothing leaves the queue at exit
    run("write", "2")
    assert out.read_text() == "1\n2\n"  # the writer delivered what waited as it exited


def test_a_process_that_queued_nothing_looks_for_left_records_every_claim_after(
        fresh_redis: Server, prefix: str) -> None:
    """A registry in use runs its queues' workers (to deliver what dead processes left), and
    each took the queue every flush_interval: every reader process of a service polled every
    queue so. One that queued nothing now looks every claim_after."""
    reg = Registry(fresh_redis.url, prefix=prefix, stats_interval=0)

    @reg.write_behind(key="id:{n}", flush=lambda records: None, flush_interval=0.05,
                      claim_after=30)
    def record(n: int) -> dict[str, int]:
        return {"n": n}

    @reg.cached(ttl=60, key="ir:{n}")
    def read(n: int) -> int:
        return n

    def takes(raw: redis.Redis) -> int:  # each take's script asks whether the stream exists
        return int(raw.info("commandstats").get("cmdstat_exists", {}).get("calls", 0))

    with redis.Redis.from_url(fresh_redis.url) as raw:
        before = takes(raw)
        read(1)  # in use: the queue's worker starts
        time.sleep(1.0)  # twenty rounds
        assert takes(raw) - before <= 1  # one look at the start, the next in 30 s
        record(1)  # now it queued: every round again
        time.sleep(0.5)
        assert takes(raw) - before > 3
    reg.close()


GONE = textwrap.dedent("""
    import os, sys
    import cachedeco

    url, prefix, out, role = sys.argv[1:5]
    reg = cachedeco.Registry(url, prefix=prefix, stats_interval=0)

    def flush(records):
        with open(out, "a") as f:
            f.writelines(f"{role} {r['n']}\\n" for r in records)
        if role == "gone":  # flushed, never acknowledged: as an exit while Redis is down
            os._exit(0)

    @reg.write_behind(key="gone:{n}", flush=flush, flush_interval=3600)
    def record(n: int) -> dict:
        return {"n": n}

    if role == "gone":
        for n in range(3):
            record(n)
        reg.flush()
    record(10)
    reg.flush()  # a batch in flight waits for 5 s at most: then it returns, records queued
    print(len(open(out).readlines()), flush=True)
""")


def test_a_batch_whose_process_is_gone_is_taken_over_at_once(
        fresh_redis: Server, prefix: str, tmp_path: Path) -> None:
    """A process that ended between its flush and the acknowledgement (it exited while Redis
    was down) left its batch pending: one batch in flight per queue, so every process's
    records waited for ``claim_after`` (30 s: 23 s of undelivered records after an outage
    in a gunicorn trial). A consumer of this host whose process is gone is taken over at
    once; its batch is flushed again (at least once)."""
    out = tmp_path / "flushed.txt"
    args = [sys.executable, "-c", GONE, fresh_redis.url, prefix, str(out)]
    gone = subprocess.run([*args, "gone"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert gone.returncode == 0 and gone.stdout == "", gone.stderr
    assert out.read_text() == "gone 0\ngone 1\ngone 2\n"
    stream = Registry("memory://", prefix=prefix).keyspace.queue("__main__.record").stream
    with redis.Redis.from_url(fresh_redis.url) as raw:
        assert raw.xpending(stream, "cachedeco")["pending"] == 3  # held by a gone consumer
        later = subprocess.run([*args, "later"], capture_output=True, text=True, timeout=60,
                               check=False)
        assert later.returncode == 0, later.stderr
        assert out.read_text().splitlines()[3:] == ["later 0", "later 1", "later 2",
                                                    "later 10"]
        assert raw.xpending(stream, "cachedeco")["pending"] == 0 and raw.xlen(stream) == 0
        assert [c["name"] for c in raw.xinfo_consumers(stream, "cachedeco")
                if c["pending"]] == []
