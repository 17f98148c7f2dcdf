"""Auto-recovery's pieces that need no server: the spool file (ownership, take-over, order),
a change's spool encoding, and the log lines: rate-limited per backend, never per function,
naming the backend and the function each in its place."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from cachedeco.backends.contracts.queues import Push
from cachedeco.core.entry import Write
from cachedeco.core.keyspace import KeySpace
from cachedeco.core.stats import Stats
from cachedeco.errors import BackendError
from cachedeco.runtime.changes import DROP, RECORD, Change, decode_change, encode_change
from cachedeco.runtime.guard import Breaker, Guard, warn
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
        warn("test:subject-a", "cachedeco: a %s", "thing")
        warn("test:subject-b", "cachedeco: b")
    assert [r.getMessage() for r in caplog.records] == ["cachedeco: a thing", "cachedeco: b"]
