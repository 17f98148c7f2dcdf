"""``lock=True`` with a near cache: a caller waiting for another process's load waits on the
change stream, not on a blocking command. On one server (and Sentinel) its miss read takes
the lease key along, so a caller that finds the lease held sends nothing more until the
holder's store or release is reported; a lease it must ask for costs one plain ``SET``.

Two registries with near caches on one prefix stand for two processes: each has its own
connections, change stream and flights, and their functions share keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import cachedeco
from cachedeco import Registry
from cachedeco.backends.contracts.leases import Busy
from cachedeco.flows._async import read as read_async
from cachedeco.flows.bound import Call
from cachedeco.flows.spec import spec_of
from tests.support.commands import commandstats, ran
from tests.support.deployments import SERVERS, Deployment
from tests.support.holders import Holders
from tests.support.near import TRACKER, awarm, near_registry, warm
from tests.support.polling import apoll

pytestmark = pytest.mark.deployments(*SERVERS)

#: What a waiter must not send: blocking waits and lease scripts (PTTL runs inside those).
WAITING = ("blmove", "evalsha", "pttl")


class Holder:
    """The async function of one "process"; its load of ``x == 1`` waits for ``gate``."""

    def __init__(self, reg: Registry, gate: asyncio.Event, runs: list[str], who: str,
                 fail: bool = False) -> None:
        @cachedeco.cached(ttl=60, registry=reg, lock=True, lock_timeout=20)
        async def load(x: int) -> dict[str, Any]:
            runs.append(who)
            if x == 1:
                await gate.wait()
                if fail:
                    raise RuntimeError("the load failed")
            return {"x": x, "by": who}

        self.load = load


def _holders(amake_registry: Callable[..., Registry], deployment: Deployment, runs: list[str],
             gate: asyncio.Event, fail: bool = False) -> tuple[Any, Any]:
    """Two "processes" with near caches: A's load of 1 waits for ``gate`` (and raises at the
    end when ``fail``), B's does not."""
    a = Holder(near_registry(amake_registry, deployment), gate, runs, "A", fail).load
    open_gate = asyncio.Event()
    open_gate.set()
    return a, Holder(near_registry(amake_registry, deployment), open_gate, runs, "B").load


async def _started(runs: list[str], who: str) -> None:
    for _ in range(1000):
        if who in runs:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{who} never started its load")


async def test_a_waiter_sends_nothing_until_the_holder_stores(
        amake_registry: Callable[..., Registry], deployment: Deployment) -> None:
    runs: list[str] = []
    gate = asyncio.Event()
    a, b = _holders(amake_registry, deployment, runs, gate)
    await awarm(lambda: a(0), a.stats)
    await awarm(lambda: b(0), b.stats)  # both change streams are up
    runs.clear()
    holder = asyncio.create_task(a(1))
    await _started(runs, "A")  # A holds the lease and loads
    before = commandstats(deployment.raw)
    waiter = asyncio.create_task(b(1))
    await apoll(lambda: b.stats().lock_waits == 1, timeout=10)  # B found the lease held
    await asyncio.sleep(0.3)  # B waits a while: what it sends meanwhile is counted
    sent = ran(before, commandstats(deployment.raw), ignore=TRACKER)
    assert not waiter.done()
    assert not any(sent.get(name) for name in WAITING), sent
    if deployment.name != "cluster":  # its read took the lease along: no acquire either
        assert sent.get("set", 0) == 0, sent
    gate.set()
    assert await holder == {"x": 1, "by": "A"}
    assert await waiter == {"x": 1, "by": "A"}
    assert runs == ["A"]
    assert b.stats().lock_waits == 1
    hits = b.stats().near_hits
    assert await b(1) == {"x": 1, "by": "A"}  # the read after the wake was kept near
    assert b.stats().near_hits == hits + 1


async def test_a_waiter_loads_itself_when_the_holder_fails(
        amake_registry: Callable[..., Registry], deployment: Deployment) -> None:
    runs: list[str] = []
    gate = asyncio.Event()
    a, b = _holders(amake_registry, deployment, runs, gate, fail=True)
    await awarm(lambda: a(0), a.stats)
    await awarm(lambda: b(0), b.stats)
    runs.clear()
    holder = asyncio.create_task(a(1))
    await _started(runs, "A")
    waiter = asyncio.create_task(b(1))
    await apoll(lambda: b.stats().lock_waits == 1, timeout=10)  # B waits for A's lease
    gate.set()  # A raises and releases without storing: its release wakes B
    with pytest.raises(RuntimeError):
        await holder
    assert await asyncio.wait_for(waiter, 10) == {"x": 1, "by": "B"}
    assert runs == ["A", "B"]


async def test_a_waiter_takes_the_lease_of_a_dead_holder_once_it_expires(
        amake_registry: Callable[..., Registry], deployment: Deployment) -> None:
    runs: list[str] = []
    _, b = _holders(amake_registry, deployment, runs, asyncio.Event())
    await awarm(lambda: b(0), b.stats)
    runs.clear()
    bound = spec_of(b).bound()
    name = bound.keyspace.lease(bound.key((1,), {}))
    deployment.raw.set(name.key, "a-dead-holder", px=700)  # nobody will release it
    assert await asyncio.wait_for(b(1), 10) == {"x": 1, "by": "B"}
    assert runs == ["B"]
    assert b.stats().lock_waits == 1


def test_threads_wait_on_the_stream_too(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    two = Holders(near_registry(make_registry, deployment),
                  near_registry(make_registry, deployment))
    warm(lambda: two.a(0), two.a.stats)
    warm(lambda: two.b(0), two.b.stats)
    two.runs.clear()
    before = commandstats(deployment.raw)

    def nothing_sent() -> None:
        sent = ran(before, commandstats(deployment.raw), ignore=TRACKER)
        assert not any(sent.get(name) for name in WAITING), sent

    assert two.race(nothing_sent) == {"a": {"x": 1, "by": "A"}, "b": {"x": 1, "by": "A"}}
    assert two.runs == ["A"]


def test_a_watched_acquire_is_one_plain_command_when_held(
        reg: Registry, deployment: Deployment) -> None:
    @cachedeco.cached(ttl=60, registry=reg, lock=True)
    def load(x: int) -> int:
        return x

    bound = spec_of(load).bound()
    key = bound.key((1,), {})
    name = bound.keyspace.lease(key)
    leases = bound.slot.backend().leases()
    before = commandstats(deployment.raw)
    lease = leases.acquire(name, 5.0, "", watched=True)  # free: SET, then GETRANGE
    assert not isinstance(lease, Busy)
    assert ran(before, commandstats(deployment.raw), ignore=TRACKER) == {"set": 1, "getrange": 1}
    before = commandstats(deployment.raw)
    held = leases.acquire(name, 5.0, "", watched=True)
    assert isinstance(held, Busy) and not held.landed and held.ms is None
    assert ran(before, commandstats(deployment.raw), ignore=TRACKER) == {"set": 1}
    assert lease.release()
    load(1)  # a value lands
    landed = leases.acquire(name, 5.0, "", watched=True)  # taken, then given straight back
    assert isinstance(landed, Busy) and landed.landed
    assert deployment.raw.exists(name.key) == 0


async def test_a_caller_whose_lease_was_taken_since_its_read_waits_without_asking(
        amake_registry: Callable[..., Registry], deployment: Deployment) -> None:
    runs: list[str] = []
    gate = asyncio.Event()
    a, b = _holders(amake_registry, deployment, runs, gate)
    await awarm(lambda: b(0), b.stats)
    runs.clear()
    bound = spec_of(b).bound()
    assert bound.near is not None
    args: tuple[Any, ...] = (1,)
    key, tag_keys = bound.key(args, {}), bound.tags(args, {})
    read_at = bound.near.ticket()  # B's miss read is sent now: nothing there yet
    assert read_at is not None
    _, tokens = await bound.slot.abackend().read(key, tag_keys)
    lease = bound.keyspace.lease(key)
    deployment.raw.set(lease.key, "another-process", px=10_000)  # taken after B's read

    async def reported() -> bool:
        return not bound.near.unchanged(read_at, lease.key, ())  # type: ignore[union-attr]

    for _ in range(500):
        if await reported():
            break
        await asyncio.sleep(0.01)
    assert await reported()
    before = commandstats(deployment.raw)
    call = Call(spec_of(b).func, args, {}, key, tag_keys, read_at)
    waiter = asyncio.create_task(
        read_async.load(bound, call, ("", tokens), bound.flights.landings))
    await asyncio.sleep(0.2)
    sent = ran(before, commandstats(deployment.raw), ignore=TRACKER)
    assert not waiter.done()
    assert not any(sent.get(name) for name in (*WAITING, "set")), sent
    await a.set({"x": 1, "by": "A"}, 1)  # the other process's value lands
    assert await asyncio.wait_for(waiter, 10) == {"x": 1, "by": "A"}
    assert runs == []
