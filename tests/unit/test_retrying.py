"""Auto-recovery's worker paces its attempts from their start: after one that timed out (a
frozen server) the next goes at once, so one is under way when the server answers again;
after one that failed at once it waits; an error never ends it, in a thread or on a loop.
Hurried (a call got an answer after failures), an urgent attempt goes at once beside the one
under way, which may be stuck on a connection the server never took. A cancel an attempt (or a
write-behind drain) swallowed still ends its task when its loop shuts down."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Callable

import pytest

from cachedeco.runtime.reach import Reach
from cachedeco.runtime.retrying import RETRY, Retrying
from cachedeco.runtime.workers import TaskWorker


def _gaps(took: float, attempts: int = 3) -> list[float]:
    """The pauses between the thread's attempts that each take ``took`` seconds and leave a
    change waiting (the last one lands it)."""
    spans: list[tuple[float, float]] = []
    done = threading.Event()

    def attempt(urgent: bool) -> int:
        began = time.monotonic()
        time.sleep(took)
        spans.append((began, time.monotonic()))
        if len(spans) == attempts:
            done.set()
            return 0
        return 1

    async def aattempt(urgent: bool) -> int:
        return 0

    worker = Retrying(attempt, aattempt, lambda: None, lambda: False)
    worker.kick(True)
    try:
        assert done.wait(10)
    finally:
        assert worker.close()
    return [later[0] - earlier[1] for earlier, later in itertools.pairwise(spans)]


def test_an_attempt_that_timed_out_is_followed_at_once() -> None:
    assert all(gap < RETRY / 2 for gap in _gaps(took=RETRY + 0.05))


def test_an_attempt_that_failed_at_once_is_followed_after_a_pause() -> None:
    gaps = _gaps(took=0.0, attempts=4)
    assert all(gap > RETRY / 2 for gap in gaps[1:])  # the first: the kick woke it once more


async def test_a_failing_attempt_on_a_loop_does_not_end_its_task() -> None:
    calls: list[str] = []

    async def aattempt(urgent: bool) -> int:
        calls.append("attempt")
        if len(calls) == 1:
            raise RuntimeError("boom")
        return 0

    worker = Retrying(lambda urgent: 0, aattempt, lambda: None, lambda: False)
    worker.kick(False)
    deadline = time.monotonic() + 5
    while len(calls) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert calls == ["attempt", "attempt"]


def test_a_hurry_sends_an_urgent_attempt_beside_a_stuck_one() -> None:
    stuck, released, urgent_goes = threading.Event(), threading.Event(), threading.Event()
    calls: list[tuple[str, bool]] = []

    def attempt(urgent: bool) -> int:
        calls.append((threading.current_thread().name, urgent))
        if not urgent:
            stuck.set()
            released.wait(10)  # a connect the frozen server never took
            worker.hurry(True)  # from inside an attempt (its change landed): nothing more
        else:
            urgent_goes.wait(10)
        return 0

    async def aattempt(urgent: bool) -> int:
        return 0

    worker = Retrying(attempt, aattempt, lambda: None, lambda: False)
    worker.kick(True)
    try:
        assert stuck.wait(5)
        worker.hurry(True)
        deadline = time.monotonic() + 5
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        worker.hurry(True)  # one at a time
        time.sleep(0.1)
        assert calls == [("cachedeco-recovery", False), ("cachedeco-recovery-hurry", True)]
        urgent_goes.set()
        time.sleep(0.1)
        worker.hurry(True)  # the first is over: another may go
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert calls[2] == ("cachedeco-recovery-hurry", True)
    finally:
        released.set()
        assert worker.close()
    assert len(calls) == 3  # the stuck attempt's own hurry sent nothing


async def test_a_hurry_on_a_loop_runs_an_urgent_task() -> None:
    calls: list[bool] = []
    landed = asyncio.Event()

    async def aattempt(urgent: bool) -> int:
        calls.append(urgent)
        if urgent:
            landed.set()
        return 0

    worker = Retrying(lambda urgent: 0, aattempt, lambda: None, lambda: False)
    worker.hurry(False)
    await asyncio.wait_for(landed.wait(), 5)
    assert calls == [True]
    await asyncio.sleep(0)
    worker.hurry(False)  # the first is over
    await asyncio.sleep(0.05)
    assert calls == [True, True]


class _BrokenReach(Reach):
    """Probes that fail (whatever the cause: a loop the process cannot run, say)."""

    def __init__(self) -> None:
        super().__init__(lambda: None, lambda: ())

    def wait(self, budget: float, stop: Callable[[], bool]) -> None:
        raise RuntimeError("no loop here")

    async def await_(self, budget: float, stop: Callable[[], bool], sync: bool = False) -> None:
        raise RuntimeError("no loop here")


def test_a_probe_that_fails_never_holds_a_try_back(caplog: pytest.LogCaptureFixture) -> None:
    landed = threading.Event()

    def attempt(urgent: bool) -> int:
        landed.set()
        return 0

    async def aattempt(urgent: bool) -> int:
        return 0

    worker = Retrying(attempt, aattempt, lambda: None, lambda: False, _BrokenReach())
    worker.kick(True)
    try:
        assert landed.wait(5)
    finally:
        assert worker.close()
    assert "a recovery probe failed (RuntimeError: no loop here)" in caplog.text


async def test_nor_on_a_loop() -> None:
    landed = asyncio.Event()

    async def aattempt(urgent: bool) -> int:
        landed.set()
        return 0

    worker = Retrying(lambda urgent: 0, aattempt, lambda: None, lambda: False, _BrokenReach())
    worker.kick(False)
    await asyncio.wait_for(landed.wait(), 5)


async def _swallowing(urgent: bool) -> int:
    """An attempt whose I/O swallows a cancel that comes as it completes (redis-py's
    ``asyncio.wait_for`` on Python 3.11), and leaves its change waiting."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(10)
    return 1


def _ends_with_its_loop(start: Callable[[], object]) -> bool:
    """Whether ``asyncio.run()`` of a job that starts a long-lived task returns (it cancels
    the tasks left and waits for them), within 5 s."""
    async def job() -> None:
        start()
        await asyncio.sleep(0.05)  # the task is in its I/O when the job ends

    runner = threading.Thread(target=asyncio.run, args=(job(),), daemon=True)
    runner.start()
    runner.join(5)
    return not runner.is_alive()


def test_a_cancel_swallowed_by_an_attempt_still_ends_the_task_with_its_loop() -> None:
    worker = Retrying(lambda urgent: 0, _swallowing, lambda: None, lambda: False)
    assert _ends_with_its_loop(lambda: worker.kick(False))


def test_a_cancel_swallowed_by_a_drain_still_ends_the_task_worker_with_its_loop() -> None:
    finals: list[str] = []

    async def drain(stop: Callable[[], bool]) -> None:
        await _swallowing(False)

    async def final() -> None:
        finals.append("final")

    worker = TaskWorker("w", 3600, drain, final)

    def start() -> None:
        worker.ensure()
        worker.notify()

    assert _ends_with_its_loop(start)
    assert finals == ["final"]  # its last drain ran as the loop shut down
