"""Auto-recovery's pieces that need no server: the spool file (ownership, take-over, order),
a change's spool encoding, what goes out first after an outage (drops and tag invalidations
ahead of the records of other keys, records in batches), and the log lines: rate-limited per
backend, never per function, naming the backend and the function each in its place."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cachedeco.backends.contracts.queues import Push
from cachedeco.core.entry import Write
from cachedeco.core.keyspace import KeySpace
from cachedeco.core.stats import Stats
from cachedeco.errors import BackendError
from cachedeco.runtime import bounds
from cachedeco.runtime.changes import (
    DROP,
    EVERY,
    RECORD,
    TAGS,
    Change,
    decode_change,
    encode_change,
    merge_drops,
    next_run,
)
from cachedeco.runtime.guard import Breaker, Guard, warn
from cachedeco.runtime.held import Held
from cachedeco.runtime.spool import open_spool


def test_a_record_change_survives_its_spool_encoding() -> None:
    write = Write(marker="cd1:0123456789abcdef", value=b"\x00payload\xff", soft=1.5, delta=0.0,
                  px=2000, tag_keys=("p:~tag:a",), new_tag="c1", tag_px=3000)
    push = Push("p:k", ("p:~tag:a",), write, b"record\x00", "", 500)
    change = Change("default", RECORD, "p:k", 2000, function="m.f",
                    names=KeySpace("p").queue("m.f"), push=push)
    back = decode_change(encode_change(change), 7)
    assert (back.row, back.ident, back.push, back.names) == (7, change.ident, push, change.names)


def test_drops_of_one_key_share_an_ident_and_records_never_do() -> None:
    assert Change("default", DROP, "k", 1).ident == Change("default", DROP, "k", 2).ident
    assert Change("default", DROP, "k", 1).ident != Change("other", DROP, "k", 1).ident
    assert Change("default", RECORD, "k", 1).ident != Change("default", RECORD, "k", 1).ident


def _record(key: str, *tags: str) -> Change:
    write = Write(marker="cd1:0123456789abcdef", value=b"v", soft=1.5, delta=0.0, px=2000,
                  tag_keys=tags, new_tag="c1", tag_px=3000)
    return Change("default", RECORD, key, 2000, function="m.f",
                  names=KeySpace("p").queue("m.f"), push=Push(key, tags, write, b"r"))


def _kinds(run: list[Change]) -> list[tuple[str, str]]:
    return [(c.kind, c.target) for c in run]


def test_drops_and_tag_invalidations_go_ahead_of_the_records_of_other_keys() -> None:
    records = [_record(f"p:e{i}", "p:~tag:events") for i in range(300)]
    queue = [*records[:200], Change("default", DROP, "p:item", 1),
             Change("default", TAGS, "p:~tag:items", 1), *records[200:]]
    assert _kinds(next_run(queue, 500)) == [(DROP, "p:item"), (TAGS, "p:~tag:items")]
    rest = [c for c in queue if c.kind == RECORD]
    assert next_run(rest, 500) == records  # then the records, in order, in one batch
    assert next_run(rest, 100) == records[:100]


def test_a_drop_or_invalidation_waits_for_an_earlier_record_of_its_key_or_tag() -> None:
    older = _record("p:item", "p:~tag:items")  # stores the entry: a drop sent first is undone
    other = _record("p:e1")
    later = _record("p:item")
    drop, tags = Change("default", DROP, "p:item", 1), Change("default", TAGS, "p:~tag:items", 1)
    free = Change("default", DROP, "p:free", 1)
    queue = [other, older, drop, later, free]
    assert next_run(queue, 500) == [free]  # the only one that may overtake
    queue.remove(free)
    assert next_run(queue, 500) == [other, older]  # up to the drop; ``later`` waits for it
    assert next_run([drop, later], 500) == [drop]
    assert next_run([older, tags, later], 500) == [older]  # the tag's token is read by WB_PUSH
    assert next_run([_record("p:e2", "p:~tag:other"), tags], 500) == [tags]


def test_many_drops_become_one_invalidation_per_function() -> None:
    def drop(key: str, family: str = "") -> Change:
        return Change("default", DROP, key, 1000, family=family, family_px=9000)

    record = _record("p:a1", "p:~fn:a")  # a record of function a, queued before the drops
    loose = drop("p:x")  # a drop that does not know its function (a replay) stays
    older = Change("default", TAGS, "p:~fn:a", 500)
    queue = collections.OrderedDict((c.ident, c) for c in [
        drop("p:a2", "p:~fn:a"), record, loose, older, drop("p:b1", "p:~fn:b"),
        drop("p:a3", "p:~fn:a")])
    held = Held()
    for change in queue.values():
        held.hold(change)
    drops = held.family_drops("default")  # what the merge reads: not the whole queue
    assert _kinds(drops) == [(DROP, "p:a2"), (DROP, "p:b1"), (DROP, "p:a3")]
    made, gone = merge_drops(queue, drops)
    assert _kinds(made) == [(TAGS, "p:~fn:a"), (TAGS, "p:~fn:b")]
    assert {c.px for c in made} == {9000}  # the function tag's own lifetime
    assert _kinds(gone) == [(DROP, "p:a2"), (DROP, "p:b1"), (DROP, "p:a3"), (TAGS, "p:~fn:a")]
    assert list(queue.values()) == [record, loose, *made]  # queued last
    for change in gone:
        held.let_go(change)
    assert held.family_drops("default") == []
    # the invalidation of a waits for the record of a (it carries a's tag), b's does not
    assert next_run(list(queue.values()), 500) == [loose, made[1]]
    back = decode_change(encode_change(drop("p:a4", "p:~fn:a")), 1)
    assert (back.family, back.family_px) == ("p:~fn:a", 9000)  # spooled with its function


def test_too_many_tag_invalidations_become_one_invalidation_of_every_entry(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(bounds, "MOST_TAGS", 3)
    queue: collections.OrderedDict[str, Change] = collections.OrderedDict()
    held = Held()

    def add(change: Change) -> bounds.Merge | None:
        queue[change.ident] = change
        held.hold(change)
        return bounds.bound(queue, held, change, "p")  # holds what it made, lets go the rest

    record = _record("p:a1", "p:~tag:a")
    drop = Change("default", DROP, "p:k", 1000)
    tags = [Change("default", TAGS, f"p:~tag:{i}", 500 + i) for i in range(3)]
    for change in [tags[0], record, drop, *tags[1:]]:
        assert add(change) is None  # three tag invalidations may wait
    assert held.tag_changes("default") == 3
    assert not held.blocks("default", "p:other", ("p:~fn:f",))
    merge = add(Change("default", TAGS, "p:~tag:3", 100))
    assert merge is not None and merge.everything
    with caplog.at_level(logging.WARNING, logger="cachedeco"):
        merge.log("unit-every", "default")
    assert _kinds(merge.made) == [(EVERY, "p:~fn:*")]  # the glob of every function tag
    assert merge.made[0].px == 502  # the longest lifetime among those it replaces
    assert _kinds(merge.gone) == [(TAGS, f"p:~tag:{i}") for i in range(4)]
    assert list(queue.values()) == [record, drop, *merge.made]  # the others keep their place
    assert held.tag_changes("default") == 0
    # every entry of the backend is held back until it lands (and only of that backend)
    assert held.blocks("default", "p:other", ("p:~fn:f",))
    assert not held.blocks("other", "p:other", ("p:~fn:f",))
    assert "became one invalidation of every entry under the prefix" in caplog.text
    # it waits for the record before it (whose entry carries a function tag); the drop not
    assert next_run(list(queue.values()), 500) == [drop]
    assert next_run([record, *merge.made], 500) == [record]
    assert next_run(merge.made, 500) == merge.made
    # more invalidations: the next merge replaces the older EVERY too, and is queued last
    later = [Change("default", TAGS, f"p:~tag:n{i}", 100) for i in range(4)]
    for change in later[:3]:
        assert add(change) is None
    again = add(later[3])
    assert again is not None and _kinds(again.gone) == [(EVERY, "p:~fn:*"), *_kinds(later)]
    assert list(queue.values()) == [record, drop, *again.made]
    back = decode_change(encode_change(again.made[0]), 3)
    assert (back.kind, back.target, back.px, back.ident) == (EVERY, "p:~fn:*", 502,
                                                             again.made[0].ident)
    held.let_go(again.made[0])
    assert not held.blocks("default", "p:other", ("p:~fn:f",))


def test_dropped_drops_and_tags_merge_into_every_in_one_step(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bounds, "MOST_PENDING", 3)
    monkeypatch.setattr(bounds, "MOST_TAGS", 3)
    queue: collections.OrderedDict[str, Change] = collections.OrderedDict()
    held = Held()
    changes = [Change("default", TAGS, "p:~tag:a", 100), Change("default", TAGS, "p:~tag:b", 100),
               *[Change("default", DROP, f"p:{f}", 100, family=f"p:~fn:{f}", family_px=900)
                 for f in "xy"]]
    for change in changes:
        queue[change.ident] = change
        held.hold(change)
    # the queue is over the bound: the drops become two function invalidations, which makes
    # four tag invalidations: all become one EVERY; only changes that were held are let go
    merge = bounds.bound(queue, held, changes[-1], "p")
    assert merge is not None and merge.everything
    assert list(queue.values()) == merge.made and _kinds(merge.made) == [(EVERY, "p:~fn:*")]
    assert merge.made[0].px == 900
    assert sorted(_kinds(merge.gone)) == sorted(_kinds(changes))  # not the ones made here


def test_a_spool_keeps_rows_of_a_live_owner_and_hands_over_those_of_a_gone_one(
        tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    first, second = open_spool(path), open_spool(path)
    rows = [first.add("p", "default", f"drop\x00default\x00k{i}", b"x%d" % i, replace=True)
            for i in range(3)]
    first.add("p", "default", "drop\x00default\x00k1", b"newer", replace=True)  # latest wins
    first.add("other", "default", "drop\x00default\x00k9", b"other prefix", replace=True)
    assert second.adopt("p", ["default"]) == []  # the first owner is alive (same pid, listed)
    first.release()  # its registry closed
    taken = second.adopt("p", ["default"])
    assert [body for _, body in taken] == [b"x0", b"x2", b"newer"]  # in the order written
    assert taken[0][0] == rows[0]
    assert second.adopt("p", ["default"]) == []  # taken once
    second.done(row for row, _ in taken)
    assert [body for _, body in second.adopt("other", ["default"])] == [b"other prefix"]
    assert second.adopt("p", ["other backend"]) == []
    second.release()
    assert first.adopt("p", ["default"]) == []  # delivered rows are gone
    first.close()
    second.close()


def test_rows_of_a_dead_process_are_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = open_spool(path)
    spool.add("p", "default", "tags\x00default\x00t", b"body", replace=True)
    dead = os.getpid() + 1_000_000  # no such process
    spool.connection().execute("UPDATE owners SET pid = ?", (dead,))
    other = open_spool(path)
    assert [body for _, body in other.adopt("p", ["default"])] == [b"body"]
    spool.close()
    other.close()


def test_rows_taken_over_are_not_taken_over_again_by_another_process(tmp_path: Path) -> None:
    """Processes started together on a spool a dead one left: the first took its rows over,
    but was not listed as a living owner until it kept a change of its own, so the next one
    took them over again, and each delivered them (up to five times in a trial)."""
    path = tmp_path / "spool.db"
    spool = open_spool(path)
    spool.add("p", "default", "tags\x00default\x00t", b"body", replace=True)
    spool.connection().execute("UPDATE owners SET pid = ?", (os.getpid() + 1_000_000,))
    first, second = open_spool(path), open_spool(path)
    assert [body for _, body in first.adopt("p", ["default"])] == [b"body"]
    assert second.adopt("p", ["default"]) == []  # the first lives: its rows stay its own
    for each in (spool, first, second):
        each.close()


def test_a_new_spool_waits_for_another_process_holding_the_file(tmp_path: Path) -> None:
    # Workers started together open a new spool at the same moment; switching it to WAL needs
    # the file to itself, and SQLite refuses at once (no busy wait) while another connection
    # holds a write lock on it, as another worker creating the tables does.
    path = tmp_path / "spool.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other (x)")
    holder.execute("BEGIN IMMEDIATE")  # a write lock on the file, held (no busy wait for it)
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        began = time.monotonic()
        spool = open_spool(path)  # waits for the lock rather than failing
        assert time.monotonic() - began >= 0.2
        mode = spool.connection().execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        spool.close()
    finally:
        release.join()
        holder.close()


def test_warnings_of_one_backend_are_rate_limited_across_functions(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cachedeco")
    breaker = Breaker()
    guards = [Guard("default", Stats(), raise_errors=False, breaker=breaker) for _ in range(5)]
    for i, guard in enumerate(guards * 10):
        guard.absorb(ConnectionError("down"), function=f"app.f{i % 5}",
                     action="flush the write-behind queue")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert lines[0].startswith("cachedeco: backend 'default' failed to flush the write-behind "
                               "queue (function=app.f0)"), lines


def test_the_error_of_a_raising_guard_names_the_backend() -> None:
    guard = Guard("cache", Stats(), raise_errors=True)
    with pytest.raises(BackendError, match=r"^backend 'cache' failed to store"):
        guard.absorb(TimeoutError("slow"), function="app.record_event", action="store")


def test_warn_says_once_per_interval_per_subject(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cachedeco")
    for _ in range(50):
        warn("test:subject-a", "a %s", "thing")
        warn("test:subject-b", "b", prefix="shop")
    assert [r.getMessage() for r in caplog.records] == ["cachedeco: a thing", "cachedeco[shop]: b"]


def test_a_spool_closed_while_threads_write_loses_nothing(tmp_path: Path) -> None:
    """Threads and an event loop's tasks (whose rows the spool's writer thread commits) write
    while the registry is closed and used again."""
    spool = open_spool(tmp_path / "spool.db")
    errors: list[BaseException] = []
    rows: list[int] = []
    stop = threading.Event()

    def write(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                rows.append(spool.add("p", "default", f"drop\x00default\x00k{n}-{i}", b"x",
                                      replace=True))
                spool.heartbeat()
            except BaseException as exc:  # a closed database, a crash in SQLite
                errors.append(exc)
                return
            i += 1

    async def task(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                rows.extend(await asyncio.wrap_future(spool.submit_many(
                    "p", [("default", f"task-{n}-{i}", b"x", True)])))
            except BaseException as exc:
                errors.append(exc)
                return
            i += 1

    async def tasks() -> None:
        await asyncio.gather(*(task(n) for n in range(8)))

    writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    writers.append(threading.Thread(target=asyncio.run, args=(tasks(),)))
    for thread in writers:
        thread.start()
    for _ in range(200):  # a registry closed (and used again) while its spool is written
        spool.close()
        time.sleep(0.001)
    stop.set()
    for thread in writers:
        thread.join()
    assert errors == []
    spool.release()
    with contextlib.closing(sqlite3.connect(tmp_path / "spool.db")) as conn:
        assert conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0] == len(rows) > 0
        assert conn.execute("SELECT COUNT(*) FROM changes WHERE ident LIKE ?",
                            ("task-%",)).fetchone()[0] > 0  # the tasks' rows among them
    spool.close()


FORKED = """
import os, signal, sys, threading, warnings
warnings.simplefilter("ignore")  # fork() of a threaded process warns on Python 3.12+
from cachedeco.runtime import spool as spool_module
spool = spool_module.open_spool(sys.argv[1])
for hold in (lambda: spool._using(), lambda: spool_module._OPENING, lambda: spool._group):
    held, release = threading.Event(), threading.Event()
    def holder():
        with hold():
            held.set()
            release.wait()
    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    pid = os.fork()  # while another thread holds the lock
    if pid == 0:
        signal.alarm(5)  # a child that waits for its parent's lock is killed
        spool.add("p", "default", "child", b"x", replace=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    release.set()
    thread.join()
    print(os.waitstatus_to_exitcode(status))
"""


def test_a_child_forked_while_a_thread_holds_a_spool_lock_uses_the_spool(
        tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", FORKED, str(tmp_path / "spool.db")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.split() == ["0", "0", "0"], done.stdout + done.stderr


def test_a_registry_wide_fault_names_no_function(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cachedeco")
    Guard("default", Stats(), raise_errors=False).absorb(
        ConnectionError("down"), action="report the service-wide counters")
    Guard("other", Stats(), raise_errors=False).absorb(
        ConnectionError("down"), function="app.f", action="store")
    assert [r.getMessage() for r in caplog.records] == [
        "cachedeco: backend 'default' failed to report the service-wide counters: "
        "ConnectionError: down",
        "cachedeco: backend 'other' failed to store (function=app.f): ConnectionError: down"]


BREAKER_FORKED = """
import os, sys, warnings
warnings.simplefilter("ignore")  # fork() of a threaded process warns on Python 3.12+
from cachedeco.runtime.guard import Breaker
down = Breaker(threshold=2, cooldown=60)
down.failure(), down.failure()  # open for a minute
probed = Breaker(threshold=1, cooldown=0)
probed.failure()
assert probed.allow()  # this thread probes: the other calls are skipped until it ends
pid = os.fork()
if pid == 0:
    print("child", down.open(), down.allow(), probed.allow(), probed.allow(), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent", down.open(), down.allow(), probed.allow(), flush=True)
"""


def test_a_forked_child_starts_with_its_breakers_closed() -> None:
    """A pre-fork server's master that saw an outage keeps its breaker open (it makes no
    more calls), and a probe it had in flight never ends in a child: each child forked
    after it skipped Redis, answering again, and logged it unreachable."""
    done = subprocess.run([sys.executable, "-c", BREAKER_FORKED], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.stdout.splitlines() == ["child False True True True",
                                        "parent True False False"], done.stdout + done.stderr


FLIGHTS_FORKED = """
import os, warnings
warnings.simplefilter("ignore")  # fork() of a threaded process warns on Python 3.12+
from cachedeco.runtime.singleflight import Flights
flights = Flights()
state = ("", ())
_, leads = flights.join("k", state, 0)  # a load under way in the parent (its thread's)
pid = os.fork()
if pid == 0:
    print("child", flights.join("k", state, 0)[1], flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent", leads, flights.join("k", state, 0)[1], flush=True)
"""


def test_a_forked_child_leads_the_loads_its_parent_had_under_way() -> None:
    """A child joined the flight of a load its parent's thread ran, which never lands there:
    its callers waited lock_timeout (10 s) before loading alone."""
    done = subprocess.run([sys.executable, "-c", FLIGHTS_FORKED], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.stdout.splitlines() == ["child True", "parent True False"], (
        done.stdout + done.stderr)
