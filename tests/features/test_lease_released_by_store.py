"""``lock=True`` on one server (and Sentinel): the load's store releases its lease in the same
script (STORE_RELEASE), stored or not, and wakes the waiters as a release does (it pushes to
the wake list only when a caller marked that it blocks there); a lease lost meanwhile is
reported, not released. On Cluster the holder releases it after the store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

import cachedeco
from cachedeco import Registry
from cachedeco.flows.spec import spec_of
from tests.support.commands import commandstats, ran
from tests.support.deployments import SERVERS, Deployment

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
    runs: list[str] = []
    gate, started = threading.Event(), threading.Event()

    def make(reg: Registry, who: str) -> Any:
        @cachedeco.cached(ttl=60, registry=reg, lock=True, lock_timeout=20)
        def load(x: int) -> dict[str, Any]:
            runs.append(who)
            if who == "A":
                started.set()
                gate.wait(20)
            return {"x": x, "by": who}

        return load

    a, b = make(make_registry(deployment.url), "A"), make(make_registry(deployment.url), "B")
    results: dict[str, Any] = {}
    holder = threading.Thread(target=lambda: results.update(a=a(1)))
    holder.start()
    assert started.wait(10)
    waiter = threading.Thread(target=lambda: results.update(b=b(1)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # blocked on the wake list (no near cache here)
    gate.set()
    holder.join(10)
    waiter.join(10)
    assert results == {"a": {"x": 1, "by": "A"}, "b": {"x": 1, "by": "A"}}
    assert runs == ["A"]
    assert b.stats().lock_waits == 1
    lease, wake = _lease(a, 1)
    assert deployment.raw.lrange(wake, 0, -1) == [b"1"]  # B blocked: the release pushed
    assert deployment.raw.pttl(wake) > 0
    assert deployment.raw.exists(lease, wake + ":waiting") == 0
