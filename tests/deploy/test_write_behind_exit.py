"""A process that exits without ``close()`` while its write-behind worker flushes a batch (a
pre-fork server's worker recycled after ``max_requests``): the batch is let finish and is
acknowledged, so it does not hold the queue (one batch in flight) for ``claim_after``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
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
    record(2)  # queued behind the batch in flight: left for the other processes
    sys.exit(0)  # no close(): the interpreter exits while the batch is in flush
""")


def test_an_exit_during_a_flush_lets_the_batch_finish_and_takes_no_other(
        fresh_redis: Server, prefix: str, tmp_path: Path) -> None:
    out = tmp_path / "flushed.txt"
    done = subprocess.run([sys.executable, "-c", EXITS, fresh_redis.url, prefix, str(out)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "1\n"  # the batch in flight was delivered, no other one
    stream = Registry("memory://", prefix=prefix).keyspace.queue("__main__.record").stream
    with redis.Redis.from_url(fresh_redis.url) as raw:
        assert raw.xpending(stream, "cachedeco")["pending"] == 0  # acknowledged: not held
        assert raw.xlen(stream) == 1  # record 2 waits for another process
