"""Faults of one redis-server under load: frozen (SIGSTOP), restarted without persistence,
from an RDB snapshot older than the crash and with an AOF fsynced on every write, full
(``maxmemory`` with ``allkeys-lru`` evicting entries, tag keys and leases) and full without
eviction (``noeviction``: every write refused); and a worker process SIGKILLed in the middle
of a write-behind flush. Each runs on a private server of its own."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.faults.conftest import Results
from tests.faults.harness import ASYNCIO_TASKS, Load, Spares, check, cycle, mode
from tools.servers import Server, start_single


@pytest.fixture
def server() -> Iterator[Server]:
    with start_single() as started:
        yield started


@pytest.fixture
def aof_server() -> Iterator[Server]:
    with start_single(appendonly=True) as started:
        yield started


#: With a spool, a write-behind call returns during an outage; without one it raises
#: BackendError. The quick mode runs the spool; the long mode both.
SPOOL = [True] + ([False] if mode().name == "long" else [])


def _spool_note(spool: bool) -> str:
    return ("spool=PATH: write-behind calls return during the outage" if spool else
            "no spool: write-behind calls raise BackendError during the outage")


@pytest.mark.parametrize("spool", SPOOL, ids=["spool", "no-spool"][:len(SPOOL)])
def test_frozen_server(server: Server, tmp_path: Path, fault_results: Results,
                       spares: Spares, spool: bool) -> None:
    with Load(tmp_path, server.url, spool=spool, spares=spares) as load:
        cycle(load, server.pause, server.resume)
        results = load.stop()
        load.drain()
        row = load.row("Redis frozen (SIGSTOP)", "single", results, lost_promised_zero=True,
                       notes=_spool_note(spool))
    fault_results.add(row)
    check(row, behind_may_fail=not spool)


ASYNCIO_NOTE = (f"asyncio: each worker {ASYNCIO_TASKS} tasks calling async def functions on a "
                "ready redis.asyncio.Redis client; spool=PATH")


@pytest.mark.parametrize(("fault", "inject", "heal"), [
    ("Redis frozen (SIGSTOP), asyncio clients", "pause", "resume"),
    ("Redis killed, restarted without persistence, asyncio clients", "kill", "restart")],
    ids=["frozen", "killed"])
def test_asyncio_clients(server: Server, tmp_path: Path, fault_results: Results,
                         spares: Spares, *, fault: str, inject: str, heal: str) -> None:
    # an ASGI service's set-up: the backend a ready asyncio client (near cache, recovery and
    # write-behind driven from its loop, not from threads)
    with Load(tmp_path, server.url, spool=True, spares=spares, asyncio=True) as load:
        cycle(load, getattr(server, inject), getattr(server, heal))
        results = load.stop()
        load.drain()
        row = load.row(fault, "single", results, lost_promised_zero=inject == "pause",
                       notes=ASYNCIO_NOTE)
    fault_results.add(row)
    check(row, behind_may_fail=False)


def test_restart_without_persistence(server: Server, tmp_path: Path,
                                     fault_results: Results,
                                     spares: Spares) -> None:
    with Load(tmp_path, server.url, spares=spares) as load:
        cycle(load, server.kill, server.restart)
        results = load.stop()
        load.drain()
        row = load.row("Redis killed, restarted without persistence", "single", results,
                       lost_promised_zero=False,
                       notes="records queued in Redis before the crash are gone with it")
    fault_results.add(row)
    check(row)


def test_restart_from_an_older_snapshot(server: Server, tmp_path: Path,
                                        fault_results: Results, spares: Spares) -> None:
    # an RDB snapshot, 4 s of writes, then a crash: the server comes back with the snapshot,
    # entries and tag tokens that the writes since had replaced. Under this load every product
    # is written again within the three seconds a replay reaches, so the row shows the fault
    # survived rather than the lineage counter at work (tests/deploy/test_lineage.py does)
    admin = redis.Redis.from_url(server.url, socket_timeout=5)

    def snapshot_then_crash() -> None:
        admin.save()
        load.sleep(4.0)
        server.kill()

    with Load(tmp_path, server.url, spares=spares) as load:
        cycle(load, snapshot_then_crash, server.restart)
        results = load.stop()
        load.drain()
        row = load.row("Redis killed, restarted from an RDB snapshot taken 4 s before",
                       "single", results, lost_promised_zero=False,
                       notes="records queued after the snapshot are gone with it")
    admin.close()
    fault_results.add(row)
    check(row)


@pytest.mark.parametrize("spool", SPOOL, ids=["spool", "no-spool"][:len(SPOOL)])
def test_restart_with_aof_always(aof_server: Server, tmp_path: Path, fault_results: Results,
                                 spares: Spares, spool: bool) -> None:
    with Load(tmp_path, aof_server.url, spool=spool, spares=spares) as load:
        cycle(load, aof_server.kill, aof_server.restart)
        results = load.stop()
        load.drain()
        row = load.row("Redis killed, restarted with AOF (appendfsync always)", "single",
                       results, lost_promised_zero=True, notes=_spool_note(spool))
    fault_results.add(row)
    check(row, behind_may_fail=not spool)


class _Filler:
    """Writes 8 KB junk keys (outside the workers' prefix, with a TTL) in a thread while it
    runs: Redis at ``maxmemory`` must evict to take them."""

    def __init__(self, server: Server, policy: str) -> None:
        self.policy = policy
        self.client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        blob, i = b"j" * 8192, 0
        while not self.stop.wait(0.002):
            with contextlib.suppress(redis.RedisError):
                self.client.set(f"junk:{i}", blob, ex=3600)
            i += 1

    def start(self) -> None:
        used = int(self.client.info("memory")["used_memory"])
        self.client.config_set("maxmemory-policy", self.policy)
        self.client.config_set("maxmemory", str(used + 512 * 1024))
        self.thread.start()

    def heal(self) -> None:
        self.stop.set()
        self.thread.join()
        self.client.config_set("maxmemory", "0")

    def evicted(self) -> int:
        return int(self.client.info("stats")["evicted_keys"])

    def refused(self) -> int:
        """Commands refused for want of memory (``noeviction``), the filler's included."""
        return int(self.client.info("errorstats").get("errorstat_OOM", {}).get("count", 0))


#: allkeys-lru may evict the write-behind queue itself (a stream without a TTL); a volatile
#: policy evicts only what has a TTL (entries, tag keys, leases): the long mode runs both.
POLICIES = ["allkeys-lru"] + (["volatile-lru"] if mode().name == "long" else [])


@pytest.mark.parametrize("policy", POLICIES)
def test_maxmemory_evicting(server: Server, tmp_path: Path, fault_results: Results,
                            spares: Spares, policy: str) -> None:
    filler = _Filler(server, policy)
    with Load(tmp_path, server.url, spares=spares) as load:
        cycle(load, filler.start, filler.heal)
        results = load.stop()
        load.drain()
        evicted = filler.evicted()
        queue_safe = policy.startswith("volatile")
        row = load.row(f"Redis at maxmemory, {policy} evicting", "single", results,
                       lost_promised_zero=queue_safe,
                       notes=f"{evicted:,} keys evicted"
                             + (": entries, tag keys, leases (the queue has no TTL)"
                                if queue_safe else ": entries, tag keys, leases and the queue "
                                "itself (a stream without a TTL): use noeviction or volatile-*"))
    filler.client.close()
    fault_results.add(row)
    assert evicted > 0
    check(row)


def test_full_without_eviction(server: Server, tmp_path: Path, fault_results: Results,
                               spares: Spares) -> None:
    # noeviction, as the docs advise for write-behind queues: once full, Redis refuses every
    # write (stores, tombstones, tag tokens, queued records) but still deletes, and a refused
    # invalidation unlinks its keys, so readers miss at once. Not quite every one: while the
    # filler holds memory at the limit, a store now and then finds room, and a fill that read
    # the database before a write may store the old value where only the entry was unlinked
    # (no tombstone to stop it), until recovery's tombstone lands (0.25 s). So at most 0.5%
    # of the calls (176 stale reads in 2,926 calls of a quick run before the unlink, none
    # after; 14 in 67,751 of a long run after)
    filler = _Filler(server, "noeviction")
    with Load(tmp_path, server.url, spares=spares) as load:
        cycle(load, filler.start, filler.heal)
        results = load.stop()
        load.drain()
        refused = filler.refused()
        row = load.row("Redis full, noeviction: writes refused", "single", results,
                       lost_promised_zero=True,
                       notes=f"{refused:,} writes refused (OOM); a refused invalidation "
                             "unlinks its keys")
    filler.client.close()
    fault_results.add(row)
    assert refused > 0
    check(row)
    assert row.stale * 200 <= row.calls, f"{row.stale} stale reads while the server was full"


def test_worker_killed_in_a_flush(server: Server, tmp_path: Path,
                                  fault_results: Results,
                                  spares: Spares) -> None:
    with Load(tmp_path, server.url, slow_flush_worker=0, spares=spares) as load:
        assert load.slow_flush is not None
        load.start()
        load.sleep(load.plan.warm)
        load.slow_flush.unlink(missing_ok=True)
        deadline = time.monotonic() + 10
        while not load.slow_flush.exists():  # worker 0 starts a flush (then waits 1 s in it)
            assert time.monotonic() < deadline, "worker 0 never flushed"
            time.sleep(0.005)
        load.mark("fault")
        load.kill(0)  # SIGKILL in the middle of its flush: the batch is taken, not acked
        load.mark("heal")
        left = load.missing()  # returned, not in SQLite: the dead worker's batch among them
        delivered = load.wait_delivered(left, load.plan.after + load.plan.hold)
        load.sleep(max(0.0, load.plan.after - (time.time() - load.marks["heal"])))
        results = load.stop()
        load.drain()
        row = load.row("worker SIGKILLed in a write-behind flush", "single", results,
                       lost_promised_zero=True,
                       notes=f"{len(left)} record(s) returned and not yet in SQLite at the kill "
                             "(the dead worker's batch among them) delivered by the others "
                             "(claim_after=1 s); time to recover: until then")
    row.recover_s = delivered
    fault_results.add(row)
    assert left, "the killed worker had no records in flight"
    check(row)
