"""PrimaryWatch.check: which primary the sentinels' answers name, and when that is a move.

The sentinels are stand-ins answering ``SENTINEL MASTERS`` as redis-py parses it: what is
checked is the choice among their answers (the switchover itself runs against real servers in
tests/features/test_sentinel_switchover.py)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest
import redis

from cachedeco.backends.base import ConnectionOptions
from cachedeco.backends.near.sources import SentinelSource
from cachedeco.backends.redis import primary_watch
from cachedeco.backends.redis.primary_watch import PrimaryWatch
from tests.support.polling import poll

URL = "redis+sentinel://127.0.0.1:1,127.0.0.1:2,127.0.0.1:3/mymaster"


class Sentinel:
    """One sentinel's answer: a primary with its config epoch, or an error."""

    def __init__(self, port: int | None, epoch: int = 0, *, down: bool = False,
                 flags: str = "master") -> None:
        self.port, self.epoch, self.down, self.flags = port, epoch, down, flags

    def sentinel_masters(self) -> dict[str, Any]:
        if self.port is None:
            raise redis.ConnectionError("no answer")
        return {"mymaster": {"ip": "127.0.0.1", "port": self.port, "config-epoch": self.epoch,
                             "is_master": True, "is_sdown": self.down, "is_odown": False,
                             "flags": self.flags}}

    def close(self) -> None:
        pass


def watch(*sentinels: Sentinel) -> PrimaryWatch:
    made = PrimaryWatch(URL, ConnectionOptions())
    made._sentinel.sentinels = list(sentinels)
    return made


def test_the_first_answer_is_no_move() -> None:
    w = watch(Sentinel(7001, 0), Sentinel(7001, 0), Sentinel(7001, 0))
    assert w.check() is False
    assert (w.address, w.epoch) == (("127.0.0.1", 7001), 0)


def test_the_newest_configuration_wins_whoever_answers_first() -> None:
    w = watch(Sentinel(7001, 0), Sentinel(7001, 0), Sentinel(7001, 0))
    w.check()
    w._sentinel.sentinels = [Sentinel(7001, 0), Sentinel(7002, 1), Sentinel(7001, 0)]
    assert w.check() is True
    assert (w.address, w.epoch) == (("127.0.0.1", 7002), 1)


def test_a_sentinel_that_has_not_heard_yet_does_not_move_it_back() -> None:
    w = watch(Sentinel(7002, 1))
    w.check()
    w._sentinel.sentinels = [Sentinel(7001, 0), Sentinel(None), Sentinel(7001, 0)]
    assert w.check() is False
    assert (w.address, w.epoch) == (("127.0.0.1", 7002), 0)


@pytest.mark.parametrize("flags", ["master,failover_in_progress",
                                   {"master", "failover_in_progress"}], ids=["RESP2", "RESP3"])
def test_the_leader_of_a_failover_in_progress_is_not_followed(flags: Any) -> None:
    """Between the promotion and the switch, the leading sentinel names the old primary with
    the new config epoch; the others name the new primary with it. Whatever the order of the
    answers, the watch follows the new primary and never moves back."""
    w = watch(Sentinel(7001, 1))
    w.check()
    leader = Sentinel(7001, 2)
    leader.flags = flags
    for order in ([leader, Sentinel(7002, 2)], [Sentinel(7002, 2), leader]):
        w._sentinel.sentinels = order
        w.check()
        assert w.address == ("127.0.0.1", 7002)
    assert w.epoch == 1  # one move, not three
    w._sentinel.sentinels = [leader]  # the leader alone: no answer to follow
    assert w.check() is False
    assert w.address == ("127.0.0.1", 7002)


@pytest.mark.parametrize("answers", [
    [Sentinel(None), Sentinel(None)],
    [Sentinel(7009, 5, down=True)],
])
def test_no_usable_answer_keeps_what_it_knew(answers: list[Sentinel]) -> None:
    w = watch(Sentinel(7001, 2))
    w.check()
    w._sentinel.sentinels = answers
    assert w.check() is False
    assert w.address == ("127.0.0.1", 7001)


def test_listeners_hear_a_move_at_once_then_as_its_changes_in_flight_land() -> None:
    """A change sent to the old primary before the move may be noted as landed only after
    the listeners were told (a busy thread, its reply in hand): they are told again, ECHOES
    seconds after the move, then no more."""
    heard: list[tuple[int, float]] = []
    w = watch(Sentinel(7001, 0))
    w.listen(lambda: heard.append((w.epoch, time.monotonic())))
    w.check()
    w._sentinel.sentinels = [Sentinel(7002, 1)]
    w.start()
    try:
        poll(lambda: len(heard) == len(primary_watch.ECHOES), timeout=10.0)
        time.sleep(primary_watch.INTERVAL + 0.2)
    finally:
        w.close()
    assert [epoch for epoch, _ in heard] == [1] * len(primary_watch.ECHOES) == [1, 1, 1, 1]
    after = [at - heard[0][1] for _, at in heard]
    # each no sooner than its time, and within a round (INTERVAL) of it
    assert all(due - 0.01 <= at <= due + primary_watch.INTERVAL + 0.3
               for at, due in zip(after, primary_watch.ECHOES, strict=True)), after


def test_a_connection_being_opened_hurries_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    """While connections are being opened (a primary that stopped answering), the sentinels
    are asked every FAST seconds: a failover's new primary is followed at once, not at the
    next round (here a minute away)."""
    monkeypatch.setattr(primary_watch, "INTERVAL", 60.0)
    w = watch(Sentinel(7001, 0))
    w.start()
    try:
        poll(lambda: w.address is not None, timeout=5.0)  # the first round, then a minute
        w._sentinel.sentinels = [Sentinel(7002, 1)]
        time.sleep(0.3)
        assert w.address == ("127.0.0.1", 7001)  # not asked again yet
        w.hurry()
        poll(lambda: w.address == ("127.0.0.1", 7002), timeout=5.0)
        w._sentinel.sentinels = [Sentinel(7003, 2)]  # still hurried: asked again soon
        poll(lambda: w.address == ("127.0.0.1", 7003), timeout=5.0)
    finally:
        w.close()


def test_a_forked_child_watches_on_its_own_thread() -> None:
    w = watch(Sentinel(7001, 0))
    w.start()
    try:
        pid = os.fork()
        if pid == 0:  # the child: the parent's thread did not come along; a new one runs
            thread = w._thread
            os._exit(0 if thread is not None and thread.is_alive()
                     and thread.ident != threading.main_thread().ident else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        w.close()


def test_a_watch_never_started_starts_nothing_in_a_child() -> None:
    w = watch(Sentinel(7001, 0))
    pid = os.fork()
    if pid == 0:
        os._exit(0 if w._thread is None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_an_older_configuration_every_sentinel_names_is_taken() -> None:
    # sentinels set up anew count their epochs from 0 again: all of them name one primary
    w = watch(Sentinel(7002, 4))
    w.check()
    w._sentinel.sentinels = [Sentinel(7003, 0), Sentinel(7003, 0), Sentinel(7003, 0)]
    assert w.check() is True
    assert w.address == ("127.0.0.1", 7003)
    w._sentinel.sentinels = [Sentinel(7003, 1), Sentinel(7004, 0)]
    assert w.check() is False  # an epoch after the reset holds as before
    assert w.address == ("127.0.0.1", 7003)


def test_the_near_caches_change_stream_follows_the_watch() -> None:
    """The tracking connection goes where the data connections go: the watch's primary, not
    the first sentinel's answer (which may still name the old one)."""
    w = watch(Sentinel(7001, 1), Sentinel(7001, 1))
    source = SentinelSource(URL, ConnectionOptions(), w)
    assert list(source.primaries()) == ["127.0.0.1:7001"]  # asked through the watch
    w._sentinel.sentinels = [Sentinel(7001, 1), Sentinel(7002, 2)]
    w.check()
    assert list(source.primaries()) == ["127.0.0.1:7002"]
    w._sentinel.sentinels = [Sentinel(None)]  # the answer is the watch's: no question asked
    assert list(source.primaries()) == ["127.0.0.1:7002"]
    assert source.check_every < 0.5  # noticed before the next round of the watch
