"""Read combining for threads (no server: the round trips are functions the test controls):
a lone read goes straight out; reads that start while one is in flight share the next round
trip, each getting its own result; a failed round trip fails its readers as backend errors;
a latch wakes every waiter."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

import pytest
import redis.exceptions

from cachedeco.backends.base import ReadResult
from cachedeco.backends.redis.combining import ReadCombiner
from cachedeco.core.latch import Latch
from tests.support.polling import poll


class Server:
    """Round trips that block until released, recording what each asked."""

    def __init__(self) -> None:
        self.trips: list[list[tuple[str, tuple[str, ...]]]] = []
        self.gate = threading.Semaphore(0)
        self.fail: BaseException | None = None

    def one(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        self.trips.append([(key, tuple(tag_keys))])
        self.gate.acquire()
        return None, (key,)

    def many(self, reads: Sequence[tuple[str, tuple[str, ...]]]) -> list[ReadResult]:
        self.trips.append(list(reads))
        self.gate.acquire()
        if self.fail is not None:
            raise self.fail
        return [(None, (key,)) for key, _ in reads]


def reader(combiner: ReadCombiner, key: str, out: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        try:
            out[f"{key}/{threading.get_ident()}"] = combiner.read(key, ["t"])
        except Exception as exc:
            out[f"{key}/{threading.get_ident()}"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_lone_read_goes_straight_out() -> None:
    server = Server()
    combiner = ReadCombiner(server.one, server.many)
    server.gate.release()
    assert combiner.read("a", ["t"]) == (None, ("a",))
    server.gate.release()
    assert combiner.read("b", []) == (None, ("b",))
    assert server.trips == [[("a", ("t",))], [("b", ())]]


def test_reads_during_a_round_trip_share_the_next_one() -> None:
    server = Server()
    combiner = ReadCombiner(server.one, server.many)
    out: dict[str, Any] = {}
    first = reader(combiner, "a", out)
    poll(lambda: len(server.trips) == 1)
    later = [reader(combiner, key, out) for key in ("b", "c", "b", "b")]
    poll(lambda: combiner._open is not None and len(combiner._open.requests) == 2)
    server.gate.release()  # the first round trip returns: the batch goes out
    poll(lambda: len(server.trips) == 2)
    server.gate.release()
    for thread in [first, *later]:
        thread.join(5)
    assert server.trips == [[("a", ("t",))], [("b", ("t",)), ("c", ("t",))]]
    assert sorted(v[1][0] for v in out.values()) == ["a", "b", "b", "b", "c"]
    assert combiner._busy is False and combiner._open is None


def test_a_failed_round_trip_fails_its_readers_as_backend_errors() -> None:
    server = Server()
    combiner = ReadCombiner(server.one, server.many)
    out: dict[str, Any] = {}
    first = reader(combiner, "a", out)
    poll(lambda: len(server.trips) == 1)
    server.fail = redis.exceptions.TimeoutError("slow")
    later = [reader(combiner, key, out) for key in ("b", "c")]
    poll(lambda: combiner._open is not None and len(combiner._open.requests) == 2)
    server.gate.release()
    poll(lambda: len(server.trips) == 2)
    server.gate.release()
    for thread in [first, *later]:
        thread.join(5)
    errors = [v for k, v in out.items() if not k.startswith("a/")]
    assert len(errors) == 2
    assert all(isinstance(e, redis.exceptions.RedisError) for e in errors)
    server.fail = None
    server.gate.release()
    assert combiner.read("d", ["t"]) == (None, ("d",))  # the turn went on


def test_a_latch_wakes_every_waiter_and_later_waits_return_at_once() -> None:
    latch = Latch()
    woke: list[bool] = []
    threads = [threading.Thread(target=lambda: woke.append(latch.wait(5))) for _ in range(20)]
    for thread in threads:
        thread.start()
    assert latch.wait(0.01) is False
    latch.open()
    for thread in threads:
        thread.join(5)
    assert woke == [True] * 20
    assert latch.wait(0) is True


def test_a_latch_wakes_hundreds_of_waiters_through_its_tree_after_some_gave_up() -> None:
    latch = Latch()
    woke: list[bool] = []
    lock = threading.Lock()

    def wait(timeout: float | None) -> None:
        got = latch.wait(timeout)
        with lock:
            woke.append(got)

    quitters = [threading.Thread(target=wait, args=(0.01,)) for _ in range(30)]
    stayers = [threading.Thread(target=wait, args=(None,)) for _ in range(200)]
    for i, thread in enumerate(stayers):  # those that give up sit between those that stay
        thread.start()
        if i < len(quitters):
            quitters[i].start()
    for thread in quitters:
        thread.join(5)
    assert woke == [False] * 30
    latch.open()
    latch.open()  # a second open changes nothing
    for thread in stayers:
        thread.join(5)
    assert woke == [False] * 30 + [True] * 200


@pytest.mark.parametrize("timeout", [0.0, 0.02])
def test_a_latch_wait_times_out(timeout: float) -> None:
    assert Latch().wait(timeout) is False


COMBINER_FORKED = """
import os, signal, threading, warnings
warnings.simplefilter("ignore")  # fork() of a threaded process warns on Python 3.12+
from cachedeco.backends.redis.combining import ReadCombiner
inside, release = threading.Event(), threading.Event()

def one(key, tag_keys):
    inside.set()
    release.wait()  # the parent's round trip is in flight during the fork
    return (key, ())

combiner = ReadCombiner(one, lambda requests: [(k, ()) for k, _ in requests])
reader = threading.Thread(target=combiner.read, args=("a", ()))
reader.start()
inside.wait()
pid = os.fork()
if pid == 0:
    release.set()  # the child's own reads are not held
    signal.alarm(5)  # a child that waits for its parent's round trip is killed
    print("child", combiner.read("b", ()), flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
release.set()
reader.join()
print("parent", os.waitstatus_to_exitcode(status), flush=True)
"""


def test_a_forked_child_reads_though_its_parent_had_a_round_trip_in_flight() -> None:
    """The child's first read joined the batch waiting for the parent's round trip, which
    never returns there: it hung for good."""
    done = subprocess.run([sys.executable, "-c", COMBINER_FORKED], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.stdout.splitlines() == ["child ('b', ())", "parent 0"], (
        done.stdout + done.stderr)
