"""A fork while other threads of the parent are inside the library, as in a pre-forking
server whose master used the registry (its background threads, a request served while
preloading): the child has none of those threads, so a lock one of them held stays held
there for good unless the child makes it anew. Every lock reachable from the registry is
held by another thread at the fork; the child must find none of them held, and read, load,
invalidate, queue and flush."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

FORKED = textwrap.dedent("""
    import json, os, signal, sys, threading, time, warnings
    warnings.simplefilter("ignore")  # fork() of a threaded process warns on Python 3.12+
    import cachedeco

    url, prefix, near = sys.argv[1], sys.argv[2], int(sys.argv[3])
    reg = cachedeco.Registry(url, prefix=prefix, stats_interval=0, near_cache=near)
    loads = []

    @reg.cached(ttl=60, key="fl:{x}", tags=["fl:{x}"], lock=True)
    def get(x: int) -> int:
        loads.append(x)
        return x

    flushed = []

    @reg.write_behind(get, flush=flushed.extend)
    def put(x: int) -> int:
        return x

    get(1)
    get(1)  # the warm-up: connections, the change stream, a hit
    put(3)
    LOCK = type(threading.Lock())

    def locks(root):
        # every lock reachable from root through cachedeco's objects, with its path
        seen, found, todo = set(), [], [(root, "reg")]
        while todo:
            obj, path = todo.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if isinstance(obj, LOCK):
                found.append((obj, path))
            elif isinstance(obj, dict):
                todo.extend((v, f"{path}[{k!r}]") for k, v in obj.items())
            elif isinstance(obj, (list, tuple, set, frozenset)):
                todo.extend((v, f"{path}[]") for v in obj)
            elif type(obj).__module__.startswith("cachedeco"):
                todo.extend((v, f"{path}.{k}") for k, v in getattr(obj, "__dict__", {}).items())
                todo.extend((getattr(obj, k, None), f"{path}.{k}")
                            for k in getattr(type(obj), "__slots__", ()))
        return found

    # the counters a parent reads as it forks (its own to report) are left free: it waits for them
    found = [lock for lock, path in locks(reg) if not path.startswith("reg.ledger.")]
    held, ready, forked = [], threading.Event(), threading.Event()

    def hold():  # another thread of the parent is inside every one of them at the fork
        for lock in found:
            if lock.acquire(timeout=1.0):
                held.append(lock)
        ready.set()
        forked.wait(30)
        for lock in held:
            lock.release()

    holder = threading.Thread(target=hold)
    holder.start()
    ready.wait()
    pid = os.fork()
    if pid == 0:
        taken = [(lock, path) for lock, path in locks(reg) if lock.locked()]
        time.sleep(0.5)  # a thread the child started may hold one for a moment
        stuck = sorted({path for lock, path in taken if lock.locked()})
        values = [get(1), get(2)]
        reg.invalidate_tags("fl:1")
        get.invalidate(2)
        put(4)
        reg.flush()
        values += [get(1), get(2), get(4)]
        print(json.dumps({"stuck": stuck, "values": values, "loads": len(loads),
                          "flushed": flushed}), flush=True)
        os._exit(0)
    forked.set()
    until = time.monotonic() + 20  # the child's own at-fork handlers may hang: no alarm there
    while not (done := os.waitpid(pid, os.WNOHANG))[0]:
        if time.monotonic() > until:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    holder.join()
    reg.close()
    print(json.dumps({"held": len(held), "child": os.waitstatus_to_exitcode(done[1])}), flush=True)
""")


def _fork(url: str, prefix: str, near: int) -> tuple[dict[str, Any], dict[str, Any]]:
    done = subprocess.run([sys.executable, "-c", FORKED, url, prefix, str(near)],
                          capture_output=True, text=True, timeout=90, check=False)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and len(lines) == 2, done.stdout + done.stderr
    child, parent = lines
    assert parent["child"] == 0 and parent["held"] >= 15, (parent, done.stderr)
    assert child["stuck"] == [], child
    assert child["values"] == [1, 2, 1, 2, 4], child
    assert child["loads"] == 4, child  # 2, then 1 and 2 again after their invalidation
    return child, parent


def test_memory_a_child_forked_while_threads_held_every_lock_works(prefix: str) -> None:
    child, _ = _fork("memory://", prefix, 0)
    assert child["flushed"] == [4]  # the parent's queued record is the parent's to deliver


@pytest.mark.parametrize("near", [0, 100])
def test_redis_a_child_forked_while_threads_held_every_lock_works(
        redis_url: str, prefix: str, near: int) -> None:
    child, _ = _fork(redis_url, prefix, near)
    assert sorted(child["flushed"]) == [3, 4]  # the stream is shared: the parent's record too


def test_sentinel_a_child_forked_while_threads_held_every_lock_works(
        sentinel_url: str, prefix: str) -> None:
    child, _ = _fork(sentinel_url, prefix, 100)
    assert sorted(child["flushed"]) == [3, 4]


def test_cluster_a_child_forked_while_threads_held_every_lock_works(
        cluster_url: str, prefix: str) -> None:
    child, _ = _fork(cluster_url, prefix, 100)
    assert sorted(child["flushed"]) == [3, 4]
