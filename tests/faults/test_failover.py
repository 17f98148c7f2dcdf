"""Failovers under load: the Sentinel primary killed (``kill -9``) and its replica promoted,
an operator's Sentinel switchover (``SENTINEL FAILOVER``: the old primary runs on and accepts
writes until the sentinels demote it), a Cluster primary killed or frozen and its replica
promoted, and a Cluster scaled out (a new primary receiving slots, as
``redis-cli --cluster reshard`` moves them). Each on a private deployment.

With ``@write_behind(replicas=1)`` (when the library has it) a call returns only once a replica
holds its record, so the failover loses none; without it, a record the dead primary had not
replicated yet is lost, and the row says so. Once the replica is promoted, the killed node is
started again and rejoins as a replica of the promoted one (until then ``replicas=1`` cannot
be met: such calls raise ``BackendError``, counted among the errors and in the time to
recover).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot

import cachedeco
from tests.faults.conftest import Results
from tests.faults.harness import ASYNCIO_TASKS, Load, Spares, check, cycle
from tools.servers import Cluster, RedisProcess, SentinelSetup, start_cluster, start_sentinel

#: ``replicas=1`` where ``@write_behind`` takes it: then no record a call returned is lost.
REPLICAS = 1 if "replicas" in inspect.signature(cachedeco.write_behind).parameters else 0


@pytest.fixture
def sentinel() -> Iterator[SentinelSetup]:
    with start_sentinel() as started:
        yield started


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with start_cluster(3, replicas=1, node_timeout=1000) as started:
        yield started


def _rejoin(setup: SentinelSetup) -> None:
    """Wait for the failover, then start the killed primary again as a replica of the new one
    (what an operator does; the sentinels would convert it themselves, ~10 s later)."""
    port = setup.wait_for_failover()
    old = setup.killed[-1]
    old.restart()
    with old.client() as admin:
        admin.replicaof(setup.host, port)


def _notes(promoted: str) -> str:
    return (f"{promoted}; write-behind with replicas={REPLICAS}"
            + ("" if REPLICAS else " (records not yet replicated may be lost)"))


def _outlast(load: Load, sentinel: SentinelSetup, *, replica: bool = False) -> None:
    """Keep the load running for the whole ``after`` window past a failover the sentinels
    made of their own after the heal (see :func:`_settle`), so that the recovery from it can
    show (one 2.2 s after the heal left 1 s of a 3.2 s window on a loaded machine). With
    ``replica``, the window starts once the new primary has a replica in sync again: until
    then a ``replicas=1`` write-behind call rightly fails (the node the sentinels demoted
    takes a few seconds to resync; a run once ended before it had)."""
    seen = load.marks["heal"]
    for _ in range(3):  # a busy machine may make them fail over once more meanwhile
        later = [at for at in sentinel.switched_at() if at > seen]
        if not later:
            return
        seen = later[-1]
        start = max(seen, sentinel.wait_for_replica(timeout=30.0)) if replica else seen
        left = start + load.plan.after - time.time()
        if left > 0:
            load.sleep(left)


def _settle(load: Load, sentinel: SentinelSetup) -> str:
    """A failover the sentinels made of their own after the heal (a primary they judged down
    because a busy machine kept it from answering for a second) is a fault of its own: the
    recovery interval then counts from the last one. Returns what the row's notes add."""
    heal = load.marks["heal"]
    later = [at for at in sentinel.switched_at() if at > heal]
    if not later:
        return ""
    load.marks["heal"] = later[-1]
    return (f"; the sentinels failed over again {later[-1] - heal:.1f} s after the heal, "
            "counted from there")


def test_sentinel_primary_killed(sentinel: SentinelSetup, tmp_path: Path,
                                 fault_results: Results,
                                 spares: Spares) -> None:
    with Load(tmp_path, sentinel.url, replicas=REPLICAS, hold=0.0, spares=spares) as load:
        cycle(load, sentinel.kill_primary, lambda: _rejoin(sentinel))
        _outlast(load, sentinel, replica=bool(REPLICAS))
        results = load.stop()
        load.drain()
        took = f"failover took {load.held():.1f} s"
        row = load.row("Sentinel primary killed (kill -9), replica promoted", "sentinel",
                       results, lost_promised_zero=bool(REPLICAS),
                       notes=_notes(took + _settle(load, sentinel)))
    fault_results.add(row)
    check(row)


def test_sentinel_switchover(sentinel: SentinelSetup, tmp_path: Path,
                             fault_results: Results, spares: Spares) -> None:
    """An operator's failover: the old primary keeps accepting writes until the sentinels
    demote it, about ten seconds after they name the new one. The heal is when they name
    it: a process must follow them then, and not lose what it wrote in between."""
    old: list[int] = []
    # No replica until the old primary is demoted: write-behind with replicas=1 would fail
    # throughout; without it, a record the old primary took after the switch may be lost.
    with Load(tmp_path, sentinel.url, replicas=0, hold=0.0, spares=spares) as load:
        cycle(load, lambda: old.append(sentinel.switch_over()),
              lambda: sentinel.wait_for_failover(old[0]))
        _outlast(load, sentinel)
        results = load.stop()
        load.drain()
        took = f"sentinels named the new primary after {load.held():.1f} s"
        row = load.row("Sentinel switchover (SENTINEL FAILOVER), old primary demoted ~10 s "
                       "later", "sentinel", results, lost_promised_zero=False,
                       notes=took + _settle(load, sentinel) + "; write-behind with "
                       "replicas=0 (no replica until the old primary is demoted)")
    fault_results.add(row)
    check(row)


@pytest.mark.parametrize("asyncio", [False, True], ids=["sync", "asyncio"])
def test_cluster_primary_killed(cluster: Cluster, tmp_path: Path,
                                fault_results: Results,
                                spares: Spares, *, asyncio: bool) -> None:
    # asyncio: each worker an asyncio service on a ready redis.asyncio.RedisCluster
    with Load(tmp_path, cluster.url, replicas=REPLICAS, hold=0.0, spares=spares,
              asyncio=asyncio) as load:
        cycle(load, cluster.kill_primary,
              lambda: (cluster.wait_for_failover(), cluster.restart(cluster.killed[-1])))
        results = load.stop()
        load.drain()
        fault = "Cluster primary killed (kill -9), replica promoted"
        row = load.row(fault + (", asyncio clients" if asyncio else ""), "cluster",
                       results, lost_promised_zero=bool(REPLICAS),
                       notes=_notes(f"failover took {load.held():.1f} s "
                                    "(cluster-node-timeout 1 s)")
                       + (f"; asyncio: {ASYNCIO_TASKS} tasks per worker on a ready "
                          "redis.asyncio.RedisCluster" if asyncio else ""))
    fault_results.add(row)
    check(row)


def test_cluster_primary_frozen(cluster: Cluster, tmp_path: Path, fault_results: Results,
                                spares: Spares) -> None:
    """A primary that hangs (SIGSTOP: its connections stay open, nothing is answered, as a
    hung host or a partition) until its replica is promoted, then resumes: it finds its slots
    served by that replica and becomes its replica; commands its clients sent while it hung
    run then, on a node about to drop what it holds."""
    frozen: list[RedisProcess] = []

    def heal() -> None:
        cluster.wait_for_failover(frozen[0])
        cluster.thaw(frozen[0])

    with Load(tmp_path, cluster.url, replicas=REPLICAS, hold=0.0, spares=spares) as load:
        cycle(load, lambda: frozen.append(cluster.freeze_primary()), heal)
        results = load.stop()
        load.drain()
        row = load.row("Cluster primary frozen (SIGSTOP), replica promoted, then resumed",
                       "cluster", results, lost_promised_zero=bool(REPLICAS),
                       notes=_notes(f"failover took {load.held():.1f} s "
                                    "(cluster-node-timeout 1 s)")
                       + "; the frozen primary resumed as a replica")
    fault_results.add(row)
    check(row)


def _busy_slots(cluster: Cluster, prefix: str) -> list[int]:
    """The slots holding the run's keys now (entries, tag keys, streams), found by SCAN."""
    slots: set[int] = set()
    for node in cluster.primaries():
        with node.client() as probe:
            slots.update(key_slot(key.encode())
                         for key in probe.scan_iter(match=f"*{prefix}*", count=1000))
    return sorted(slots)


#: In long mode the move itself (a thousand slots' keys, one MIGRATE per slot, under load)
#: took 30-50 s on two cores: with the load's 29 s and the cluster's start, 120 s was too
#: little once.
@pytest.mark.timeout(300)
def test_cluster_scale_out(tmp_path: Path, fault_results: Results, spares: Spares) -> None:
    """A new primary joins and every second slot holding the run's keys moves to it, the
    tags' slot among them: the fault migrates their keys while the old primaries still serve
    the slots (answering ``ASK`` for the keys they no longer hold), the heal hands the slots
    over. Nothing is down and nothing crashes: every call must be answered (write-behind
    included), no read may be stale beyond the near cache's reach, no record lost."""
    moving: list[int] = []
    fresh: list[RedisProcess] = []
    with start_cluster(3) as cluster, \
            Load(tmp_path, cluster.url, replicas=0, spares=spares) as load:

        def scale_out() -> None:
            fresh.append(cluster.add_primary())
            busy = _busy_slots(cluster, load.prefix)
            tags = key_slot(f"{load.prefix}:tags".encode())
            moving.extend(sorted({*busy[::2], tags}))
            cluster.begin_move(moving, fresh[0])

        cycle(load, scale_out, lambda: cluster.end_move(moving, fresh[0]))
        results = load.stop()
        load.drain()
        row = load.row("Cluster scale-out: a new primary receives half the busy slots (ASK "
                       "while their keys move)", "cluster", results, lost_promised_zero=True,
                       notes=f"{len(moving)} slots moved, the tags' slot among them; "
                       "write-behind with replicas=0 (nothing crashes)")
    fault_results.add(row)
    check(row, behind_may_fail=False)  # nothing is down: every call is answered
    assert row.stale == 0, (
        f"{row.fault}: {row.stale} stale reads (a move loses nothing): {row.samples}")
