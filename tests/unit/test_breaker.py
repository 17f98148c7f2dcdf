"""The circuit breaker's run of failures: ``threshold`` in a row open it, and on Redis
Cluster (``grace``) only once the run has lasted that long without a success: while one
primary fails over, the others' answers cut the runs short, and the breaker would otherwise
skip every primary on a chance run of failures."""

from __future__ import annotations

import time

from cachedeco.runtime.guard import Breaker


def test_threshold_failures_in_a_row_open_it() -> None:
    breaker = Breaker(threshold=3, cooldown=60)
    for _ in range(2):
        breaker.failure()
    assert breaker.allow() and not breaker.open()
    breaker.failure()
    assert breaker.open() and not breaker.allow()


def test_with_a_grace_a_run_opens_it_only_once_it_lasted_that_long() -> None:
    breaker = Breaker(threshold=3, cooldown=60, grace=0.2)
    for _ in range(10):  # a burst of failures: too short a run
        breaker.failure()
    assert breaker.allow() and not breaker.open()
    time.sleep(0.25)
    breaker.failure()  # the run has lasted the grace: open
    assert breaker.open() and not breaker.allow()


def test_a_success_ends_the_run_its_grace_counts_from_the_next() -> None:
    breaker = Breaker(threshold=3, cooldown=60, grace=0.2)
    breaker.failure()
    time.sleep(0.25)
    breaker.success()  # another primary answered: that run is over
    for _ in range(5):
        breaker.failure()
    assert breaker.allow() and not breaker.open()
    assert breaker.failing_since is not None
    assert time.monotonic() - breaker.failing_since < 0.2  # from the new run's start


def test_with_a_grace_a_failed_probe_opens_it_again() -> None:
    breaker = Breaker(threshold=2, cooldown=0.05, grace=0.1)
    breaker.failure()
    time.sleep(0.15)
    breaker.failure()
    assert breaker.open()
    time.sleep(0.1)
    assert breaker.allow()  # the half-open probe
    breaker.failure()  # it failed: the run goes on, open again at once
    assert breaker.open()


def test_a_threshold_of_one_with_a_grace_opens_after_it() -> None:
    breaker = Breaker(threshold=1, cooldown=60, grace=0.1)
    breaker.failure()
    breaker.failure()
    assert not breaker.open()
    time.sleep(0.15)
    breaker.failure()
    assert breaker.open()
