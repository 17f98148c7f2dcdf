# GENERATED from _async/test_acl.py by tools/unasync.py: do not edit.
"""Every cache feature as a Redis ACL user confined to the prefix: the flows (as the user
the documentation promises to support and as its minimal one), and write-behind's queue, flush,
dead letters and replay (on every node of a cluster too). ``on_error="raise"``: a refused
command fails the test rather than falling back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cachedeco import Registry
from tests.support._sync.flows import check_flows
from tests.support._sync.writers import event_functions
from tests.support.deployments import Deployment
from tests.support.events import Events


@pytest.mark.deployments("redis")
@pytest.mark.parametrize("confined_url", ["api", "minimal"], indirect=True)
def test_flows_as_a_confined_user(
        make_registry: Callable[..., Registry], confined_url: str, deployment: Deployment,
        prefix: str) -> None:
    reg = make_registry(confined_url, on_error="raise")
    check_flows(reg, deployment.raw, prefix)


@pytest.mark.deployments("redis", "cluster")
def test_write_behind_as_a_confined_user(
        make_registry: Callable[..., Registry], confined_url: str, events: Events) -> None:
    reg = make_registry(confined_url, on_error="raise")
    broken = [True]

    def flush(records: list[dict[str, Any]]) -> None:
        if broken[0]:
            raise RuntimeError("down")
        events.flush(records)

    get_event, record_event = event_functions(reg, flush, max_retries=0, batch_size=10)
    for i in range(25):
        record_event(f"e{i}", i)
    reg.flush()
    assert len(reg.dead_letters()) == 25
    broken[0] = False
    assert reg.replay_dead_letters() == 25
    reg.flush()
    assert events.rows() == sorted((f"e{i}", i) for i in range(25))
    assert get_event("e3") == {"id": "e3", "v": 3}
    stats = reg.stats()
    assert (stats.write_behind_flushed, stats.backend_errors) == (25, 0)
