"""Write-behind workers and their lifecycle on every deployment: closing drains what waits and
never cuts a batch short, sync and asyncio writers and flushes mix, an asyncio worker on a
short-lived loop delivers before its loop ends, a slow flush keeps its lease, and the workers
of two registries (two processes) share one queue."""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

import cachedeco
from cachedeco import Registry
from cachedeco.backends.redis._async import queues
from tests.support._sync.writers import event_functions
from tests.support.connections import settled
from tests.support.deployments import ALL, BACKENDS, REDIS_BACKENDS, Deployment
from tests.support.events import Events

pytestmark = pytest.mark.deployments(*BACKENDS)

#: Two registries share a queue only on a server: the two Redis backends.
TWO_REGISTRIES = pytest.mark.deployments(*REDIS_BACKENDS)


def test_close_drains_the_queue(
        make_registry: Callable[..., Registry], deployment: Deployment, events: Events) -> None:
    reg = make_registry(deployment.url)
    _, record_event = event_functions(reg, events.flush, batch_size=40)
    for i in range(100):
        record_event(f"e{i}", i)
    with reg:
        pass
    assert events.rows() == sorted((f"e{i}", i) for i in range(100))
    assert reg.stats().write_behind_pending == 0


def test_close_never_cuts_a_batch_short(
        make_registry: Callable[..., Registry], deployment: Deployment, events: Events) -> None:
    reg = make_registry(deployment.url)
    started, finished = threading.Event(), []

    def slow(records: list[dict[str, Any]]) -> None:
        started.set()
        time.sleep(0.3)
        events.flush(records)
        finished.append(len(records))

    _, record_event = event_functions(reg, slow, batch_size=5)  # the fifth wakes the worker
    for i in range(5):
        record_event(f"e{i}", i)
    assert started.wait(5)
    record_event("late", 9)  # queued while the worker is in the middle of a batch
    reg.close()
    assert finished[0] == 5 and sum(finished) == 6
    assert len(events.rows()) == 6


async def test_aclose_never_cuts_an_async_batch_short(
        amake_registry: Callable[..., Registry], deployment: Deployment, events: Events) -> None:
    reg = amake_registry(deployment.url)
    started, finished = asyncio.Event(), []

    async def slow(records: list[dict[str, Any]]) -> None:
        started.set()
        await asyncio.sleep(0.3)
        events.flush(records)
        finished.append(len(records))

    @cachedeco.write_behind(key="e:{event_id}", flush=slow, batch_size=5, flush_interval=3600,
                            registry=reg)  # the fifth record wakes the worker
    async def record_event(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    for i in range(5):
        await record_event(f"e{i}", i)
    await asyncio.wait_for(started.wait(), 5)
    await record_event("late", 9)
    await reg.aclose()
    assert finished[0] == 5 and sum(finished) == 6
    assert len(events.rows()) == 6


async def test_async_writer_and_async_flush_drain_on_aclose(
        amake_registry: Callable[..., Registry], deployment: Deployment, events: Events) -> None:
    reg = amake_registry(deployment.url)
    seen_threads = set()

    async def flush(records: list[dict[str, Any]]) -> None:
        seen_threads.add(threading.get_ident())
        await asyncio.sleep(0)
        events.flush(records)

    @cachedeco.cached(registry=reg)
    async def get_event(event_id: str) -> dict[str, Any] | None:
        return None

    @cachedeco.write_behind(get_event, flush=flush, flush_interval=3600, batch_size=10)
    async def record_event(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    async with reg:
        await asyncio.gather(*(record_event(f"e{i}", i) for i in range(25)))
        assert await get_event("e3") == {"id": "e3", "v": 3}
        await reg.aflush()
        assert len(events.rows()) == 25
        await record_event("late", 1)
    assert ("late", 1) in events.rows()
    assert seen_threads == {threading.get_ident()}  # a task on this loop, not a thread


def _async_writer(reg: Registry, events: Events) -> Callable[..., Any]:
    async def flush(records: list[dict[str, Any]]) -> None:
        await asyncio.sleep(0)
        events.flush(records)

    @cachedeco.write_behind(key="e:{event_id}", flush=flush, flush_interval=3600,
                            registry=reg)
    async def record_event(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    return record_event


def test_each_asyncio_run_delivers_what_it_queued(
        make_registry: Callable[..., Registry], deployment: Deployment, events: Events) -> None:
    # A worker task on a short-lived loop (asyncio.run per job, asgiref's async_to_sync)
    # is cancelled as its loop shuts down: it delivers what waits then, on that loop
    reg = make_registry(deployment.url)
    record_event = _async_writer(reg, events)

    async def job(n: int) -> None:
        await asyncio.gather(*(record_event(f"j{n}-{i}", i) for i in range(3)))

    for n in range(4):
        asyncio.run(job(n))
        assert len(events.rows()) == 3 * (n + 1)
    assert reg.stats().write_behind_pending == 0
    reg.close()
    assert sorted(events.rows()) == sorted((f"j{n}-{i}", i) for n in range(4) for i in range(3))


#: Jobs on short-lived loops, each queuing more records than a batch holds: the worker drains
#: while the job runs, so the job's end cancels it in the middle of a take or a flush.
SHORT_JOBS = textwrap.dedent("""
    import asyncio, sys
    import cachedeco

    reg = cachedeco.Registry(sys.argv[1], prefix=sys.argv[2])
    got = []

    async def flush(records):
        await asyncio.sleep(0)
        got.extend(r["n"] for r in records)

    @reg.write_behind(key="e:{n}", flush=flush, batch_size=3, flush_interval=3600)
    async def record(n: int) -> dict:
        return {"n": n}

    async def job(j):
        for i in range(7):
            await record(j * 7 + i)

    for j in range(10):
        asyncio.run(job(j))
    reg.close()
    print(sorted(set(got)) == list(range(70)), flush=True)
""")


@TWO_REGISTRIES
def test_a_job_ending_in_the_middle_of_a_drain_neither_hangs_nor_strands_a_batch(
        deployment: Deployment, prefix: str) -> None:
    """asyncio.run() cancels the worker task as its loop ends: a cancel redis-py swallowed
    left the task waiting for good (asyncio.run never returned), and a take whose reply the
    cancel cut off left its batch pending for this consumer until another process claimed
    it, 30 s later (close() did not deliver it)."""
    done = subprocess.run([sys.executable, "-c", SHORT_JOBS, deployment.url, prefix],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "True\n", done.stderr


def test_a_job_ending_as_its_flush_returns_has_its_batch_delivered_once(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    """A job that waits for its records' flush and returns: asyncio.run() cancels the worker
    right after the flush returned (as the batch's lease keep-alive stopped, before the ack);
    the batch was given back and the worker's last drain delivered it a second time."""
    reg = make_registry(deployment.url)
    calls: Counter[int] = Counter()
    flushed = [asyncio.Event()]

    async def flush(records: list[dict[str, int]]) -> None:
        calls.update(r["n"] for r in records)
        flushed[0].set()

    @cachedeco.write_behind(key="e:{n}", flush=flush, batch_size=5, flush_interval=3600,
                            registry=reg)
    async def record(n: int) -> dict[str, int]:
        return {"n": n}

    async def job(j: int) -> None:
        flushed[0] = asyncio.Event()
        for i in range(5):  # the fifth record fills a batch: the worker drains it
            await record(j * 5 + i)
        await flushed[0].wait()

    for j in range(10):
        asyncio.run(job(j))
    reg.close()
    assert sorted(calls) == list(range(50))
    assert set(calls.values()) == {1}, f"{sum(c > 1 for c in calls.values())} delivered twice"


@TWO_REGISTRIES
def test_an_ack_cut_short_by_the_loops_end_runs_again(
        make_registry: Callable[..., Registry], deployment: Deployment,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The cancel that ends the worker lands in the ack of a batch already flushed: the ack
    runs again before the task ends, so the last drain finds nothing to deliver twice."""
    reg = make_registry(deployment.url)
    calls: Counter[int] = Counter()
    kind = queues.AsyncClusterQueue if deployment.name == "cluster" else queues.AsyncRedisQueue
    real_ack, cut = kind.ack, []

    async def ack(self: Any, ids: Any, restores: Any) -> int:
        if not cut:  # the first ack: cancel the task it runs in, as asyncio.run() would
            cut.append(ids)
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            await asyncio.sleep(0)  # where the cancel lands, before the ack was sent
        return await real_ack(self, ids, restores)  # type: ignore[no-any-return]

    monkeypatch.setattr(kind, "ack", ack)

    async def flush(records: list[dict[str, int]]) -> None:
        calls.update(r["n"] for r in records)

    @cachedeco.write_behind(key="e:{n}", flush=flush, batch_size=3, flush_interval=3600,
                            registry=reg)
    async def record(n: int) -> dict[str, int]:
        return {"n": n}

    async def job() -> None:
        for n in range(3):
            await record(n)
        await asyncio.sleep(0.2)  # the worker's drain

    asyncio.run(job())
    reg.close()
    assert len(cut) == 1
    assert calls == Counter(range(3))
    assert reg.stats().write_behind_pending == 0


def test_a_loop_shutting_down_does_not_wait_to_retry_a_failing_flush(
        make_registry: Callable[..., Registry], deployment: Deployment, events: Events) -> None:
    # asyncio.run() per job while the flush fails: a job's end does not wait for the retry
    # (its backoff here: 30-60 s); the records stay queued, each job's last drain tries them
    # all once, and close() delivers them once the flush works
    reg = make_registry(deployment.url)
    failing, calls = [True], []

    async def flush(records: list[dict[str, Any]]) -> None:
        calls.append(len(records))
        if failing[0]:
            raise RuntimeError("the database is down")
        events.flush(records)

    @cachedeco.write_behind(key="e:{event_id}", flush=flush, flush_interval=3600,
                            retry_delay=60, registry=reg)
    async def record_event(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    for n in range(3):
        asyncio.run(record_event(f"e{n}", n))
    assert calls == [1, 2, 3] and events.rows() == []
    assert reg.stats().write_behind_dead == 0
    failing[0] = False
    reg.close()
    assert calls[3:] == [3]
    assert sorted(events.rows()) == [(f"e{n}", n) for n in range(3)]


@TWO_REGISTRIES
def test_close_does_not_wait_out_the_retries_of_a_failing_flush(
        make_registry: Callable[..., Registry], deployment: Deployment, events: Events) -> None:
    """The database is down as a process stops: close() waited through every retry of the
    batch (its backoff: seconds to minutes), holding a rolling restart, though the records
    are kept in Redis. It now retries for CLOSE_GRACE (5 s) at most and leaves the batch
    queued for the next start; memory://, whose records end with the process, retries on."""
    calls = []

    def failing(records: list[dict[str, Any]]) -> None:
        calls.append(len(records))
        raise RuntimeError("the database is down")

    reg = make_registry(deployment.url)
    _, record_event = event_functions(reg, failing, flush_interval=0.05, retry_delay=30)
    record_event("e1", 1)
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.monotonic()
    reg.close()  # the worker waits 15-30 s before its first retry
    assert time.monotonic() - began < 10
    assert reg.stats().write_behind_dead == 0
    restarted = make_registry(deployment.url)
    event_functions(restarted, events.flush)
    restarted.flush()
    assert events.rows() == [("e1", 1)]


def test_close_delivers_what_a_loop_closed_under_its_worker_left(
        make_registry: Callable[..., Registry], deployment: Deployment, events: Events) -> None:
    # A loop closed without cancelling its tasks takes the worker down unfinished: the
    # records wait in the queue (in Redis: durable) and the registry's close delivers them
    reg = make_registry(deployment.url)
    record_event = _async_writer(reg, events)
    loop = asyncio.new_event_loop()
    try:
        for i in range(5):
            loop.run_until_complete(record_event(f"e{i}", i))
        loop.run_until_complete(loop.shutdown_asyncgens())  # closes the loop's clients
    finally:
        loop.close()
    assert events.rows() == []
    reg.close()
    assert sorted(events.rows()) == [(f"e{i}", i) for i in range(5)]


def test_a_record_queued_from_another_loop_during_a_loops_last_drain_is_delivered(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    """Loops in two threads (asyncio.run, async_to_sync): thread B's job queues a record while
    the worker, on thread A's loop, runs its last drain as that loop ends. B saw a worker at
    work and started none, and its record came after the drain's take: it waited for the next
    call or close(). A loop of the worker's own now takes over and delivers it."""
    reg = make_registry(deployment.url)
    flushed: list[int] = []
    in_flush, delivered = threading.Event(), threading.Event()

    async def flush(records: list[dict[str, int]]) -> None:
        in_flush.set()
        await asyncio.sleep(0.2)  # B queues its record meanwhile
        flushed.extend(r["n"] for r in records)
        if 4 in flushed:
            delivered.set()

    @cachedeco.write_behind(key="e:{n}", flush=flush, batch_size=5, flush_interval=0.5,
                            registry=reg)
    async def record(n: int) -> dict[str, int]:
        return {"n": n}

    async def job(ns: list[int]) -> None:
        for n in ns:
            await record(n)

    a = threading.Thread(target=asyncio.run, args=(job([1, 2, 3]),))
    a.start()
    assert in_flush.wait(10)  # A's loop is ending: its worker's last drain flushes 1-3
    asyncio.run(job([4]))  # B's job, in this thread; then no call follows
    a.join()
    assert delivered.wait(10), f"flushed {flushed}: record 4 waits for a call"
    assert sorted(flushed) == [1, 2, 3, 4]
    reg.close()
    assert sorted(flushed) == [1, 2, 3, 4]


def test_close_delivers_what_waits_on_a_parked_loop(
        make_registry: Callable[..., Registry], deployment: Deployment, events: Events) -> None:
    """One loop reused with run_until_complete() per job and never closed: between jobs it is
    parked, and its worker can neither drain nor be awaited. close() delivered nothing, the
    records left to the next process; it now runs the last drain on a loop of its own."""
    reg = make_registry(deployment.url)
    record_event = _async_writer(reg, events)
    loop = asyncio.new_event_loop()
    try:
        for i in range(5):
            loop.run_until_complete(record_event(f"e{i}", i))
        reg.close()
        assert sorted(events.rows()) == [(f"e{i}", i) for i in range(5)]
        loop.run_until_complete(record_event("e5", 5))  # the loop used again: a new worker
        loop.run_until_complete(reg.aclose())
        assert len(events.rows()) == 6
    finally:
        loop.close()


#: A loop closed without cancelling its tasks, its worker in the middle of a drain; then
#: close() delivers, and the process exits (the collector closes the abandoned coroutines).
CLOSED_UNDER = textwrap.dedent("""
    import asyncio, logging, sys
    import cachedeco

    logging.basicConfig(level=logging.WARNING)
    reg = cachedeco.Registry(sys.argv[1], prefix=sys.argv[2])
    got = set()

    async def flush(records):
        await asyncio.sleep(0.01)
        got.update(r["n"] for r in records)

    @reg.write_behind(key="e:{n}", flush=flush, batch_size=5, flush_interval=3600)
    async def record(n: int) -> dict:
        return {"n": n}

    async def job():
        for n in range(23):
            await record(n)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(job())
    loop.close()
    reg.close()
    print(sorted(got) == list(range(23)), flush=True)
""")


def _ours(qualname: str) -> bool:
    """Whether the coroutine named so (a warning's qualname) is defined in cachedeco: redis-py's
    own, cut off when the loop was closed under them, may be named in such warnings too."""
    outer = qualname.split(".", maxsplit=1)[0]
    pattern = re.compile(rf"^\s*(async def|def|class) {re.escape(outer)}\b", re.MULTILINE)
    return any(pattern.search(path.read_text())
               for path in pathlib.Path(cachedeco.__file__).parent.rglob("*.py"))


@TWO_REGISTRIES
def test_a_worker_abandoned_with_its_loop_ends_quietly(deployment: Deployment,
                                                       prefix: str) -> None:
    """The collector closes the coroutine of a worker whose loop was closed under it: it
    awaited there (giving its batch back, stopping its lease's keep-alive), which cannot
    work without a loop, and logged "the write-behind worker failed" (no running event
    loop), a coroutine never awaited and exceptions ignored; close() had delivered all."""
    done = subprocess.run([sys.executable, "-c", CLOSED_UNDER, deployment.url, prefix],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "True\n", done.stderr
    # asyncio's own "Task was destroyed but it is pending!" stays (the loop was closed so),
    # and redis-py's coroutines may complain of their own: none of ours does
    assert "ERROR:cachedeco" not in done.stderr, done.stderr
    assert not [name for name in re.findall(r"coroutine '([^']+)' was never awaited",
                                            done.stderr) if _ours(name)], done.stderr
    ignored = done.stderr.split("Exception ignored in:")[1:]
    assert not [i for i in ignored if "/cachedeco/" in i.split("\nERROR:")[0]], done.stderr


def test_a_registry_used_again_after_close_delivers_again(
        make_registry: Callable[..., Registry], deployment: Deployment, events: Events) -> None:
    reg = make_registry(deployment.url)
    _, record_event = event_functions(reg, events.flush, batch_size=40)
    arecord_event = _async_writer(reg, events)
    for round_ in range(2):
        for i in range(3):
            record_event(f"s{round_}-{i}", i)
            asyncio.run(arecord_event(f"a{round_}-{i}", i))
        reg.close()
        assert len(events.rows()) == 6 * (round_ + 1)
    assert reg.stats().write_behind_pending == 0


async def test_sync_flush_behind_an_async_writer(
        amake_registry: Callable[..., Registry], deployment: Deployment, events: Events) -> None:
    reg = amake_registry(deployment.url)
    _, record_event = event_functions(reg, events.flush)

    @cachedeco.write_behind(key="x:{event_id}", flush=events.flush, registry=reg)
    async def arecord(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    await arecord("a", 1)
    record_event("b", 2)
    await reg.aflush()
    assert events.rows() == [("a", 1), ("b", 2)]
    await arecord("c", 3)
    await reg.aclose()
    assert len(events.rows()) == 3


@pytest.mark.deployments(*ALL)
def test_async_flush_behind_a_sync_writer_outside_any_loop(
        make_registry: Callable[..., Registry], deployment: Deployment, events: Events,
        prefix: str) -> None:
    """The flush runs on a loop of the worker's own; closing the registry closes the
    connections opened there too (named after the test, looked for in CLIENT LIST)."""
    reg = make_registry(deployment.url, client_name=prefix)

    async def flush(records: list[dict[str, Any]]) -> None:
        events.flush(records)

    _, record_event = event_functions(reg, flush)
    record_event("a", 1)
    reg.flush()
    record_event("b", 2)
    reg.close()
    assert events.rows() == [("a", 1), ("b", 2)]
    if deployment.has_server:
        assert not any(settled(deployment, prefix).values())


@dataclass(frozen=True)
class Payment:
    id: str
    amount: Decimal
    at: dt.datetime


async def test_async_typed_records_reach_an_async_flush(deployment: Deployment, prefix: str,
                                                        events: Events) -> None:
    got: list[Payment] = []

    async def flush(records: list[Payment]) -> None:
        await asyncio.sleep(0)
        got.extend(records)
        events.flush([{"id": p.id, "v": int(p.amount)} for p in records])

    # Generous timeouts: the 50 calls below open their connections at once, which on a
    # loaded machine can take longer than the default second (a record that cannot be queued
    # raises BackendError).
    async with Registry(deployment.url, prefix=prefix, socket_timeout=10.0,
                        socket_connect_timeout=10.0) as reg:
        @cachedeco.cached(registry=reg)
        async def get_payment(payment_id: str) -> Payment | None:
            return None

        @cachedeco.write_behind(get_payment, flush=flush, flush_interval=3600)
        async def pay(payment_id: str, amount: Decimal) -> Payment:
            return Payment(payment_id, amount, dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC))

        returned = await asyncio.gather(*(pay(f"p{i}", Decimal(i)) for i in range(50)))
        assert await get_payment("p7") == returned[7]  # decoded by the reader's codec
    # leaving `async with` drained the queue
    assert sorted(got, key=lambda p: int(p.amount)) == list(returned)
    assert all(type(p) is Payment and type(p.amount) is Decimal for p in got)
    assert len(events.rows()) == 50


# --- two registries sharing a queue ---------------------------------------------------------------


@TWO_REGISTRIES
def test_a_slow_flush_keeps_its_lease(make_registry: Callable[..., Registry],
                                      deployment: Deployment, events: Events) -> None:
    regs = [make_registry(deployment.url) for _ in range(2)]

    started = threading.Event()

    def slow(records: list[dict[str, Any]]) -> None:
        started.set()
        time.sleep(1.0)  # over three times claim_after: the lease is renewed meanwhile
        events.flush(records)

    writers = [event_functions(r, slow if n == 0 else events.flush, claim_after=0.3,
                               flush_interval=0.05)[1]
               for n, r in enumerate(regs)]
    for i in range(20):
        writers[0](f"e{i}", i)
    assert started.wait(5)  # the slow one holds a batch: it delivers some, whatever the timing
    writers[1]("first", 0)  # starts the other process's worker: it polls every 50 ms
    regs[0].flush()
    time.sleep(0.2)
    for r in regs:
        r.close()
    assert events.rows() == sorted([("first", 0)] + [(f"e{i}", i) for i in range(20)])
    assert regs[0].stats().write_behind_flushed > 0  # the slow one did deliver some
    assert sum(r.stats().write_behind_duplicates for r in regs) == 0


@TWO_REGISTRIES
def test_two_competing_flushers_deliver_each_record_once(
        make_registry: Callable[..., Registry], deployment: Deployment, events: Events) -> None:
    regs = [make_registry(deployment.url) for _ in range(2)]
    flushed_by: Counter[int] = Counter()

    def flusher(n: int) -> Any:
        def flush(records: list[dict[str, Any]]) -> None:
            flushed_by[n] += len(records)
            time.sleep(0.002)
            events.flush(records)
        return flush

    writers = [event_functions(r, flusher(n), batch_size=25, flush_interval=0.02, coalesce=False)[1]
               for n, r in enumerate(regs)]
    for i in range(1000):
        writers[i % 2](f"e{i}", i)
    deadline = time.monotonic() + 15
    while len(events.rows()) < 1000 and time.monotonic() < deadline:
        time.sleep(0.02)
    for r in regs:
        r.close()
    assert events.rows() == sorted((f"e{i}", i) for i in range(1000))
    # one batch in flight per queue: whoever asks first after an ack takes the next, so
    # either may deliver most; none is delivered twice
    assert sum(flushed_by.values()) == 1000
    assert sum(r.stats().write_behind_flushed for r in regs) == 1000
