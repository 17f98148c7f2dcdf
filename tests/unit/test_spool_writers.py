"""The spool under many writers: the rows a process's threads add while a transaction is
under way go in the next one together (one lock, one sync), several rows of one ident in
such a batch keep only the last, and writers of several processes all get their turn."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from cachedeco.runtime.spool import Spool, open_spool
from tests.support.polling import poll
from tests.support.spool_files import file_held


def _commits(spool: Spool) -> list[str]:
    """The COMMITs of ``spool``'s connection from now on."""
    seen: list[str] = []
    spool.connection().set_trace_callback(
        lambda statement: seen.append(statement) if statement == "COMMIT" else None)
    return seen


def test_rows_added_while_the_file_is_busy_go_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = open_spool(path)
    commits = _commits(spool)
    ids: list[int] = []
    writers = [threading.Thread(target=lambda n=n: ids.append(
        spool.add("p", "default", f"drop\x00default\x00k{n}", b"x", replace=True)))
        for n in range(16)]
    with file_held(path):
        for thread in writers:
            thread.start()
        poll(lambda: spool._filling is not None and len(spool._filling.rows) == 15,
             timeout=10.0)
    for thread in writers:
        thread.join()
    assert sorted(ids) == list(range(1, 17))  # each thread its own row
    assert len(commits) == 2  # the first writer's own, then the 15 that queued behind it
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0] == 16
    spool.close()


def test_a_batch_keeps_the_last_of_the_rows_that_replace_one_another(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = open_spool(path)
    queued = [lambda: spool._writing, lambda: spool._filling is not None
              and len(spool._filling.rows) == 1, lambda: spool._filling is not None
              and len(spool._filling.rows) == 2]
    rows = [("first", b"0"), ("same", b"older"), ("same", b"newer")]
    writers = [threading.Thread(target=spool.add, args=("p", "default", ident, body, True))
               for ident, body in rows]
    with file_held(path):
        for thread, ready in zip(writers, queued, strict=True):
            thread.start()  # one after another, in this order, into the batch
            poll(ready, timeout=10.0)
    for thread in writers:
        thread.join()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        held = conn.execute("SELECT ident, body FROM changes ORDER BY id").fetchall()
    assert held == [("first", b"0"), ("same", b"newer")]
    spool.close()


WRITER = """
import sys, threading
from cachedeco.runtime.spool import open_spool
spool = open_spool(sys.argv[1])
errors = []
def write(n):
    for i in range(int(sys.argv[3])):
        try:
            spool.add("p", "default", f"{sys.argv[2]}-{n}-{i}", b"x" * 200, replace=False)
        except Exception as exc:
            errors.append(repr(exc))
threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(len(errors), errors[:1])
"""


def test_writers_of_several_processes_all_get_their_turn(tmp_path: Path) -> None:
    # SQLite's own busy wait backs off to sleeps of 100 ms: with four processes writing
    # without a pause, one of them could lose every turn for the 5 s it waits, and fail.
    path = tmp_path / "spool.db"
    open_spool(path).close()
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n), "150"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for n in range(4)]
    outputs = [writer.communicate(timeout=120) for writer in writers]
    assert [out.split()[0] if out else err for out, err in outputs] == ["0"] * 4, outputs
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0] == 4 * 8 * 150


WRITER_FORKED = """
import os, signal, sys, warnings
warnings.simplefilter("ignore")  # fork() of a threaded process warns on Python 3.12+
from cachedeco.runtime.spool import open_spool
spool = open_spool(sys.argv[1])
print(spool.submit_many("p", [("default", "parent", b"x", True)]).result(timeout=5))
pid = os.fork()  # the parent's writer thread is not the child's
if pid == 0:
    signal.alarm(5)  # a child whose write waits for that thread is killed
    spool.submit_many("p", [("default", "child", b"x", True)]).result()
    os._exit(0)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
spool.close()
"""


def test_an_event_loops_rows_are_written_in_a_forked_child_too(tmp_path: Path) -> None:
    """Rows from an event loop are committed by the spool's writer thread, which a child
    forked after it started does not have: it starts its own."""
    done = subprocess.run([sys.executable, "-c", WRITER_FORKED, str(tmp_path / "spool.db")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.split() == ["[1]", "0"], done.stdout + done.stderr
    with contextlib.closing(sqlite3.connect(tmp_path / "spool.db")) as conn:
        assert [ident for (ident,) in conn.execute("SELECT ident FROM changes ORDER BY id")
                ] == ["parent", "child"]


def test_a_thread_interrupted_while_adding_a_batch_leaves_it_to_the_batchs_others(
        tmp_path: Path) -> None:
    """A KeyboardInterrupt reaches the main thread wherever it is: inside the transaction
    that adds a batch, it was every thread's of that batch (each raised it, its rows not
    written). Now it is that thread's alone, and another thread of the batch adds it."""
    path = tmp_path / "spool.db"
    spool = open_spool(path)
    real, sizes = spool._insert, []

    def insert(rows: list[tuple[str, str, str, bytes, bool]]) -> list[int]:
        sizes.append(len(rows))
        if len(sizes) == 2:  # the thread adding the second batch is interrupted in it
            raise KeyboardInterrupt
        return real(rows)

    spool._insert = insert  # type: ignore[method-assign]
    results: dict[int, int | str] = {}

    def write(n: int) -> None:
        try:
            results[n] = spool.add("p", "default", f"k{n}", b"x", replace=True)
        except KeyboardInterrupt:
            results[n] = "interrupted"

    first = threading.Thread(target=write, args=(0,))
    others = [threading.Thread(target=write, args=(n,)) for n in range(1, 4)]
    with file_held(path):
        first.start()  # its transaction waits for the file
        poll(lambda: spool._writing, timeout=10.0)
        for thread in others:
            thread.start()  # they wait together for the next one
        poll(lambda: spool._filling is not None and len(spool._filling.rows) == 3,
             timeout=10.0)
    for thread in [first, *others]:
        thread.join(10)
    assert sizes == [1, 3, 3]  # the second batch, interrupted, added again whole
    assert sorted(map(str, results.values())).count("interrupted") == 1, results
    with contextlib.closing(sqlite3.connect(path)) as conn:
        held = sorted(ident for (ident,) in conn.execute("SELECT ident FROM changes"))
    assert held == ["k0", "k1", "k2", "k3"]  # the interrupted thread's row with its batch
    spool.close()
