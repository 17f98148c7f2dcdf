"""Failovers under load: the Sentinel primary killed (``kill -9``) and its replica promoted,
and a Cluster primary killed and its replica promoted. Each on a private deployment.

With ``@write_behind(replicas=1)`` (when the library has it) a call returns only once a replica
holds its record, so the failover loses none; without it, a record the dead primary had not
replicated yet is lost, and the row says so.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

import cachedeco
from tests.faults.conftest import Results
from tests.faults.harness import Load, Spares, check, cycle
from tools.servers import Cluster, SentinelSetup, start_cluster, start_sentinel

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


def _notes(promoted: str) -> str:
    return (f"{promoted}; write-behind with replicas={REPLICAS}"
            + ("" if REPLICAS else " (records not yet replicated may be lost)"))


def test_sentinel_primary_killed(sentinel: SentinelSetup, tmp_path: Path,
                                 fault_results: Results,
                                 spares: Spares) -> None:
    with Load(tmp_path, sentinel.url, replicas=REPLICAS, hold=0.0, spares=spares) as load:
        cycle(load, sentinel.kill_primary, sentinel.wait_for_failover)
        results = load.stop()
        load.drain()
        row = load.row("Sentinel primary killed (kill -9), replica promoted", "sentinel",
                       results, lost_promised_zero=bool(REPLICAS),
                       notes=_notes(f"failover took {load.held():.1f} s"))
    fault_results.add(row)
    check(row)


def test_cluster_primary_killed(cluster: Cluster, tmp_path: Path,
                                fault_results: Results,
                                spares: Spares) -> None:
    with Load(tmp_path, cluster.url, replicas=REPLICAS, hold=0.0, spares=spares) as load:
        cycle(load, cluster.kill_primary, cluster.wait_for_failover)
        results = load.stop()
        load.drain()
        row = load.row("Cluster primary killed (kill -9), replica promoted", "cluster",
                       results, lost_promised_zero=bool(REPLICAS),
                       notes=_notes(f"failover took {load.held():.1f} s "
                                    "(cluster-node-timeout 1 s)"))
    fault_results.add(row)
    check(row)
