"""Write-behind across processes on every server: the records of a process that exits before
any flush are delivered by the next one, and a process killed in the middle of a flush loses
nothing (its last batch, written but never acknowledged, is delivered again, once)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.support.deployments import SERVERS, Deployment
from tests.support.events import Events
from tests.support.write_behind import run_worker

pytestmark = pytest.mark.deployments(*SERVERS)


def test_records_of_a_process_that_exits_before_any_flush_are_delivered(
        tmp_path: Path, deployment: Deployment, prefix: str, events: Events) -> None:
    where = (tmp_path, deployment.url, prefix, events.path)
    first = run_worker(*where, mode="queue-and-exit", n=500, batch=1000)
    assert first.returncode == 0, first.stderr
    assert events.rows() == []  # nothing was flushed before the hard exit
    second = run_worker(*where, mode="deliver", n=500, batch=1000)
    assert second.returncode == 0, second.stderr
    assert events.rows() == sorted((f"e{i}", i) for i in range(500))
    assert json.loads(second.stdout) == {"flushed": 500, "duplicates": 0}


@pytest.mark.deployments("redis", "cluster")
def test_a_process_killed_during_flush_loses_nothing(
        tmp_path: Path, deployment: Deployment, prefix: str, events: Events) -> None:
    where = (tmp_path, deployment.url, prefix, events.path)
    first = run_worker(*where, mode="kill-in-flush", n=300, batch=100)
    assert first.returncode == -9, first.stderr
    written = len(events.rows())  # the last batch was written, never acknowledged
    second = run_worker(*where, mode="deliver", n=300, batch=100)
    assert second.returncode == 0, second.stderr
    counts = Counter(events.rows())
    assert set(counts) == {(f"e{i}", i) for i in range(300)}  # none lost
    report = json.loads(second.stdout)
    again = report["duplicates"]  # claimed from the killed process, so delivered twice
    assert 0 < again <= 100 and report["flushed"] == 300 - written + again
    assert Counter(counts.values()) == {1: 300 - again, 2: again}
