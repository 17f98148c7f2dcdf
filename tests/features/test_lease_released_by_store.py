"""``lock=True`` on one server (and Sentinel): the load's store releases its lease in the same
script (STORE_RELEASE), stored or not, and wakes the waiters as a release does (it pushes to
the wake list only when a caller marked that it blocks there); a lease lost meanwhile is
reported, not released. On Cluster the holder releases it after the store."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from cachedeco import Registry
from cachedeco.flows.spec import spec_of
from tests.support.commands import commandstats, ran
from tests.support.deployments import SERVERS, Deployment
from tests.support.holders import Holders

pytestmark = pytest.mark.deployments(*SERVERS)


def _lease(fn: Any, x: int) -> tuple[str, str]:
    """The lease key and wake list of ``fn(x)``."""
    b = spec_of(fn).bound()
    name = b.keyspace.lease(b.key((x,), {}))
    return name.key, name.wake


def test_the_store_releases_the_lease_and_wakes(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = make_registry(deployment.url)

    @reg.cached(ttl=60, lock=True)
    def f(x: int) -> int:
        return x * 2

    f(0)  # scripts loaded, tag keys made
    lease, wake = _lease(f, 1)
    before = commandstats(deployment.raw)
    assert f(1) == 2
    sent = ran(before, commandstats(deployment.raw))
    if deployment.name != "cluster":  # the acquire, then store and release in one script
        assert sent["evalsha"] == 2, sent
    assert deployment.raw.exists(lease) == 0
    assert deployment.raw.exists(wake) == 0  # nobody blocked on the wake list: no push


def test_a_refused_store_still_releases(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = make_registry(deployment.url)

    @reg.cached(ttl=60, lock=True)
    def f(x: int) -> int:
        f.set(100, x)  # a write lands while the load runs: the load's store is refused
        return x

    assert f(1) == 1
    assert f(1) == 100
    lease, _ = _lease(f, 1)
    assert deployment.raw.exists(lease) == 0


def test_a_lease_lost_during_the_load_is_reported_not_released(
        make_registry: Callable[..., Registry], deployment: Deployment,
        caplog: pytest.LogCaptureFixture) -> None:
    reg = make_registry(deployment.url)
    taken = "someone-else"

    @reg.cached(ttl=60, lock=True)
    def f(x: int) -> int:
        lease, _ = _lease(f, x)
        deployment.raw.set(lease, taken, px=5000)  # ours expired; another process took it
        return x

    with caplog.at_level(logging.WARNING, logger="cachedeco"):
        assert f(1) == 1
    assert "expired before the load finished" in caplog.text
    lease, _ = _lease(f, 1)
    assert deployment.raw.get(lease) == taken.encode()  # the other holder's lease stands


def test_a_waiter_in_another_process_wakes_on_the_store(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    two = Holders(make_registry(deployment.url), make_registry(deployment.url))
    results = two.race(lambda: None)  # B blocks on the wake list (no near cache here)
    assert results == {"a": {"x": 1, "by": "A"}, "b": {"x": 1, "by": "A"}}
    assert two.runs == ["A"]
    assert two.b.stats().lock_waits == 1
    lease, wake = _lease(two.a, 1)
    assert deployment.raw.lrange(wake, 0, -1) == [b"1"]  # B blocked: the release pushed
    assert deployment.raw.pttl(wake) > 0
    assert deployment.raw.exists(lease, wake + ":waiting") == 0
