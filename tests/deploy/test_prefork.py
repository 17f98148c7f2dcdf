"""A registry warmed before a fork, as gunicorn's master does under ``--preload``, then closed:
the master keeps no change stream (thread or tracking connection), and each forked worker
opens its own at its first call, with its own near cache. Left open, the master leaves the
write-behind queues to its workers."""

from __future__ import annotations

import ast
import multiprocessing
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cachedeco import Registry
from tests.support.near import near_threads, tracking_clients
from tests.support.polling import poll
from tools.servers import Server


def test_a_registry_warmed_and_closed_before_a_fork_serves_each_worker_near(
        make_registry: Callable[..., Registry], fresh_redis: Server, prefix: str) -> None:
    admin = fresh_redis.processes[0].client()
    reg = make_registry(fresh_redis.url, near_cache=100, stats_interval=0)
    loads: list[int] = []

    @reg.cached(ttl=60, key="item:{x}", tags=["item:{x}"])
    def get(x: int) -> str:
        loads.append(x)
        return f"v{x}"

    assert get(1) == "v1"  # the warm-up: connections, the change stream
    poll(lambda: len(tracking_clients(admin)) == 1, timeout=5.0)
    assert near_threads(prefix) == 1
    reg.close()
    assert near_threads(prefix) == 0 and tracking_clients(admin) == []  # the master keeps none

    context = multiprocessing.get_context("fork")
    results = context.Queue()

    def worker() -> None:  # in the child: the registry as the fork left it
        values = [get(1) for _ in range(3)]
        until = time.monotonic() + 5.0
        while get.stats().near_hits == 0 and time.monotonic() < until:
            values.append(get(1))
        results.put((set(values), get.stats().near_hits, len(loads)))

    children = [context.Process(target=worker) for _ in range(2)]
    for child in children:
        child.start()
    found = [results.get(timeout=30) for _ in children]
    for child in children:
        child.join(10)
        assert child.exitcode == 0
    for values, near_hits, loaded in found:
        assert values == {"v1"}  # from Redis (the warm-up stored it), then near
        assert near_hits >= 1
        assert loaded == 1  # the master's warm-up only: no child ran the function
    poll(lambda: tracking_clients(admin) == [], timeout=5.0)  # their streams ended with them


MASTER = textwrap.dedent("""
    import os, sys, time, warnings
    warnings.simplefilter("ignore")  # fork() of a threaded process warns on Python 3.12+
    import cachedeco

    url, prefix, out, reads = sys.argv[1:5]
    reg = cachedeco.Registry(url, prefix=prefix, stats_interval=0)

    def flush(records):
        with open(out, "a") as f:
            f.writelines(f"{os.getpid()} {r['n']}\\n" for r in records)

    @reg.write_behind(key="pf:{n}", flush=flush, flush_interval=0.2)
    def record(n: int) -> dict:
        return {"n": n}

    @reg.cached(ttl=60, key="pr:{n}")
    def read(n: int) -> int:
        return n

    @reg.cached(ttl=60, key="pw:{n}")
    def other(n: int) -> int:
        return n

    read(0)  # the app is loaded: the registry is in use, its queue's worker started
    writer = os.fork()
    if writer == 0:  # a worker queues five records and is gone before it delivers them
        for n in range(5):
            record(n)
        os._exit(0)
    os.waitpid(writer, 0)
    time.sleep(1.0)  # five rounds of the master's worker
    reader = os.fork()
    if reader == 0:  # a worker that only reads delivers what waits: its first call
        (other if reads == "other" else read)(1)  # starts the queue's worker, whether or
        # not the master called (and bound) that function before the fork
        until = time.monotonic() + 20
        while time.monotonic() < until and not (
                os.path.exists(out) and len(open(out).readlines()) >= 5):
            time.sleep(0.05)
        os._exit(0)
    os.waitpid(reader, 0)
    print(os.getpid(), reader, flush=True)
""")


@pytest.mark.parametrize("reads", ["other", "read"])
def test_a_master_left_open_leaves_the_write_behind_queue_to_its_workers(
        fresh_redis: Server, prefix: str, tmp_path: Path, reads: str) -> None:
    """gunicorn --preload without a close(): the master used the registry while loading the
    app, so its write-behind worker ran, and it delivered most records (in a trial, 7,492 of
    8,401), running ``flush`` (the database's connections) in the process that forks the
    workers. Now it leaves them to its children, and a child that only reads delivers, also
    when all it calls is a function the master called before the fork ("read": a child's
    first call of it binds it again, as its first use of the registry there)."""
    out = tmp_path / "flushed.txt"
    done = subprocess.run([sys.executable, "-c", MASTER, fresh_redis.url, prefix, str(out),
                           reads], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    master, reader = done.stdout.split()
    delivered = [line.split() for line in out.read_text().splitlines()]
    assert sorted(int(n) for _, n in delivered) == [0, 1, 2, 3, 4]
    assert master not in {pid for pid, _ in delivered}, delivered
    assert {pid for pid, _ in delivered} == {reader}, delivered


MID_FLUSH = textwrap.dedent("""
    import os, signal, sys, threading, time, warnings
    warnings.simplefilter("ignore")  # fork() of a threaded process warns on Python 3.12+
    import cachedeco

    url, prefix = sys.argv[1:3]
    reg = cachedeco.Registry(url, prefix=prefix, stats_interval=0)
    flushing, got = threading.Event(), []

    def flush(records):
        got.extend(r["n"] for r in records)
        flushing.set()
        time.sleep(1.0)  # the fork comes while this batch is in flush

    @reg.write_behind(key="mf:{n}", flush=flush, flush_interval=0.05)
    def record(n: int) -> dict:
        return {"n": n}

    def left(raw, stream):
        # records queued and not yet taken, and records taken and not acknowledged
        group = raw.xinfo_groups(stream)[0]
        after = raw.xrange(stream, min="(" + group["last-delivered-id"].decode())
        return len(after) + group["pending"]

    record(0)
    assert flushing.wait(10)
    child = os.fork()
    if child == 0:
        signal.alarm(15)  # a child that waits on its parent's drain lock is killed
        record(1)
        reg.close()  # returns once record 1 is delivered: the parent's batch (in flight)
        # acknowledged, by this close or by the parent's worker, whichever takes it first
        import redis
        with redis.Redis.from_url(url) as raw:
            waiting = left(raw, f"{prefix}:~wb:{{__main__.record}}")
        print("child", got[1:], flush=True)  # (the child's list began as a copy of [0])
        os._exit(0 if waiting == 0 else 3)
    _, status = os.waitpid(child, 0)
    reg.close()
    print("parent", os.waitstatus_to_exitcode(status), got, flush=True)
""")


def test_a_child_forked_during_a_flush_drains_its_queue(fresh_redis: Server,
                                                         prefix: str) -> None:
    """The parent's worker held the drain's lock at the fork: the child's close() (and every
    drain) waited for it for good. Then close() returned with the child's record queued, as
    the parent's batch was in flight (one per queue): it now waits for that batch, and
    returns once the record is delivered (by itself or, winning the race once the batch is
    acknowledged, by the parent's worker: a CI run saw that)."""
    done = subprocess.run([sys.executable, "-c", MID_FLUSH, fresh_redis.url, prefix],
                          capture_output=True, text=True, timeout=60, check=False)
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith("parent 0 "), done.stdout + done.stderr
    # record 1 delivered once, by the child's close() or by the parent's worker (a race
    # between them once the parent's batch is acknowledged), before that close() returned
    child, parent = ast.literal_eval(lines[0][len("child "):]), ast.literal_eval(
        lines[1][len("parent 0 "):])
    assert sorted(child + parent) == [0, 1], done.stdout
