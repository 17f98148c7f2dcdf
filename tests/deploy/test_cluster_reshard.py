"""Scaling a real Redis Cluster out: a new, empty primary joins and a slot moves to it in two
steps, as ``redis-cli --cluster reshard`` does (its keys migrated while the old primary still
serves the slot and answers ``ASK`` for them, then the slot handed over). Reads, stores and
invalidations of that slot's keys keep working in both flavours throughout,
``invalidate_pattern``/``clear`` reach the keys already moved, and a near cache never keeps
a value read from the new primary before its change stream listens there: a change made by
another client is seen within the delivery window at every step, and near hits come back
once the move is over."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from typing import Any

from redis.crc import key_slot

from cachedeco import Registry
from cachedeco.backends.contracts.leases import AsyncLease, Busy, LeaseName
from cachedeco.core.entry import new_tombstone
from tests.support.polling import poll
from tests.support.versioned import item_readers
from tools.servers import RedisProcess, start_cluster

#: How late the near-cached reader may still return a value after the change that replaced
#: it returned (the message's delivery on loopback, generous for a loaded CI machine).
WINDOW = 1.0
OPTIONS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5, "stats_interval": 0}


def _seen_within(read: Callable[[], int], wanted: int, window: float = WINDOW) -> float:
    """Seconds until ``read()`` returns ``wanted``; fails after ``window`` seconds."""
    start = time.monotonic()
    while (got := read()) != wanted:
        assert time.monotonic() - start < window, f"still {got}, not {wanted}, after {window} s"
        time.sleep(0.002)
    return time.monotonic() - start


def _held(node: RedisProcess, slot: int) -> int:
    """How many keys of ``slot`` ``node`` holds (it may not serve the slot yet)."""
    with node.client() as probe:
        return int(probe.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))


def test_a_slot_moving_to_a_new_primary_keeps_every_command_working(
        make_registry: Callable[..., Registry], prefix: str) -> None:
    with start_cluster(primaries=3) as cluster:
        reg = make_registry(cluster.url, on_error="raise", **OPTIONS)
        version = {"v": 0}

        @reg.cached(ttl=60, key="item:{x}", tags=["item:{x}"])
        def f(x: int) -> int:
            return version["v"]

        @reg.cached(ttl=60, key="item:{x}", tags=["item:{x}"])
        async def af(x: int) -> int:
            return version["v"]

        loop = asyncio.new_event_loop()  # one loop: its client is closed at the end

        def both(x: int) -> tuple[int, int]:
            return f(x), loop.run_until_complete(af(x))

        slot = key_slot(f"{prefix}:item:1".encode())
        assert both(1) == (0, 0)
        fresh = cluster.add_primary()
        cluster.begin_move(slot, fresh)  # the key now on the new primary, the slot not yet
        assert both(1) == (0, 0)  # read there after ASK (redis-py alone fails)
        assert f.stats().loads == 1  # both hits of the one entry
        version["v"] = 1
        reg.invalidate_tags("item:1")  # a store and a tag token on the new primary after ASK
        assert both(1) == (1, 1)
        cluster.end_move(slot, fresh)
        assert cluster.owner(slot) is fresh
        version["v"] = 2
        f.invalidate(1)
        assert both(1) == (2, 2)
        assert reg.stats().backend_errors == 0
        assert f.stats().loads == 3  # a load per version, the other call a hit
        with fresh.client() as node:
            assert node.exists(f"{prefix}:item:1") == 1
        loop.run_until_complete(reg.aclose())  # before the cluster goes
        loop.close()


def test_clear_reaches_the_keys_already_moved_to_a_new_primary(
        make_registry: Callable[..., Registry], prefix: str) -> None:
    with start_cluster(primaries=3) as cluster:
        reg = make_registry(cluster.url, on_error="raise", **OPTIONS)
        loads = {"n": 0}

        @reg.cached(ttl=60, key="item:{x}")
        def f(x: int) -> int:
            loads["n"] += 1
            return x

        keys = [f"{prefix}:item:{x}" for x in range(40)]
        moving = key_slot(keys[0].encode())
        on_slot = [k for k in keys if key_slot(k.encode()) == moving]
        assert [f(x) for x in range(40)] == list(range(40))
        fresh = cluster.add_primary()
        cluster.begin_move(moving, fresh)  # before this process is sent there by any ASK
        assert _held(fresh, moving) == len(on_slot) > 0
        assert reg.invalidate_pattern("item:*") == 40
        assert _held(fresh, moving) == 0
        assert [f(x) for x in range(40)] == list(range(40))
        assert loads["n"] == 80
        cluster.end_move(moving, fresh)
        reg.clear()
        assert _held(fresh, moving) == 0
        reg.close()  # before the cluster goes


def test_a_near_cache_keeps_nothing_from_a_primary_it_does_not_hear(
        make_registry: Callable[..., Registry], prefix: str) -> None:
    with start_cluster(primaries=3) as cluster:
        reg = make_registry(cluster.url, near_cache=100, **OPTIONS)
        other = make_registry(cluster.url, **OPTIONS)  # another client, no near cache
        version = {"v": 0}
        f, g = item_readers(reg, other, version)

        @reg.cached(ttl=60, key="item:{x}", tags=["item:{x}"])
        async def af(x: int) -> int:
            return version["v"]

        loop = asyncio.new_event_loop()  # one loop: its client is closed at the end

        def a(x: int) -> int:
            return loop.run_until_complete(af(x))

        def near_hit() -> bool:
            before = f.stats().near_hits
            return f(1) == version["v"] and f.stats().near_hits == before + 1

        def change(tag: bool = False) -> None:  # by another client: only Redis can tell
            version["v"] += 1
            if tag:
                other.invalidate_tags("item:1")
            else:
                g.invalidate(1)

        def reads_and_changes() -> None:
            for tag in (False, True, False):
                for _ in range(20):  # read again and again, from wherever the slot is
                    assert f(1) == version["v"]
                    assert a(1) == version["v"]
                change(tag)
                _seen_within(lambda: f(1), version["v"])
                _seen_within(lambda: a(1), version["v"])

        poll(near_hit, timeout=10.0)
        # the tracker asks for the primaries every second; a new one serves no slot, so it
        # is not listened to: whatever it answers (after ASK, or once it owns the slot and
        # before the tracker knows) must not be kept. First the entry's slot, then the slot
        # of every tag key of the prefix, each to a primary of its own.
        for slot in (key_slot(f"{prefix}:item:1".encode()), key_slot(f"{prefix}:tags".encode())):
            fresh = cluster.add_primary()
            cluster.begin_move(slot, fresh)
            reads_and_changes()
            cluster.end_move(slot, fresh)
            reads_and_changes()  # at once: the slot map and the stream catch up meanwhile
            poll(near_hit, timeout=10.0)  # the new primary listened to: kept near again
            change(tag=True)
            _seen_within(lambda: f(1), version["v"])
        assert reg.stats().backend_errors == 0
        loop.run_until_complete(reg.aclose())  # before the cluster goes
        loop.close()
        other.close()


def test_invalidations_sent_first_after_ask_reach_the_new_primary(
        make_registry: Callable[..., Registry], prefix: str) -> None:
    """The invalidations that fall back to a pipeline when the direct path meets ``ASK``
    (several tag keys, several entries) follow it to a new primary this client has never been
    sent to (redis-py's pipeline looked it up among the nodes it knew and failed with
    ``AttributeError``, so the changes waited for auto-recovery while readers got the old
    values)."""
    with start_cluster(primaries=3) as cluster:
        reg = make_registry(cluster.url, on_error="raise", **OPTIONS)
        version = {"v": 0}

        @reg.cached(ttl=60, key="item:{x}", tags=["item:{x}", "items"])
        def f(x: int) -> int:
            return version["v"]

        @reg.cached(ttl=60, key="item:{x}", tags=["item:{x}", "items"])
        async def af(x: int) -> int:
            return version["v"]

        loop = asyncio.new_event_loop()  # one loop: its client is closed at the end
        run = loop.run_until_complete
        slot = reg.slot("default")
        moving = key_slot(f"{prefix}:item:0".encode())
        xs = [x for x in range(300_000) if key_slot(f"{prefix}:item:{x}".encode()) == moving][:3]
        on_slot = [f"{prefix}:item:{x}" for x in xs]
        assert len(on_slot) == 3
        async def forget() -> None:  # abackend(): this loop's
            await slot.abackend().client.nodes_manager.initialize()

        async def drop() -> int:
            return await slot.abackend().invalidate(on_slot, new_tombstone(), 60_000)

        assert [f(x) for x in xs] == [run(af(x)) for x in xs] == [0] * len(xs)
        tags = key_slot(f"{prefix}:tags".encode())
        for moved in (moving, tags):
            fresh = cluster.add_primary()
            cluster.begin_move(moved, fresh)
            for flavour in ("sync", "async"):  # each first sent there by the invalidation
                slot.backend().client.nodes_manager.initialize()  # forgets ASK targets
                run(forget())
                version["v"] += 1
                if moved == tags and flavour == "sync":
                    reg.invalidate_tags("item:1", "items")
                elif moved == tags:
                    run(reg.ainvalidate_tags("item:1", "items"))
                elif flavour == "sync":
                    assert slot.backend().invalidate(on_slot, new_tombstone(), 60_000) == 3
                else:
                    assert run(drop()) == 3
                assert [f(x) for x in xs] == [run(af(x)) for x in xs] == [version["v"]] * 3
            cluster.end_move(moved, fresh)
        assert reg.stats().backend_errors == 0
        run(reg.aclose())  # before the cluster goes
        loop.close()


def test_a_lease_is_released_while_its_slot_moves(
        make_registry: Callable[..., Registry], prefix: str) -> None:
    """A ``lock=True`` lease taken before its slot began to move is released while it moves
    (the release script spans the lease, its wake list and its waiting mark, which Redis
    refuses with TRYAGAIN while they are not all on one node: the lease lived until it
    expired, and its key's callers in every process waited as long)."""
    with start_cluster(primaries=3) as cluster:
        reg = make_registry(cluster.url, **OPTIONS)
        loop = asyncio.new_event_loop()  # one loop: its client is closed at the end
        slot = reg.slot("default")
        names = [reg.keyspace.lease(f"{prefix}:item:{x}") for x in (1, 2)]
        leases = slot.backend().leases()
        held = leases.acquire(names[0], 30.0)
        assert not isinstance(held, Busy)
        assert isinstance(leases.acquire(names[0], 30.0), Busy)  # a waiter: its mark is set

        async def take() -> AsyncLease:
            got = await slot.abackend().leases().acquire(names[1], 30.0)
            assert not isinstance(got, Busy)
            return got

        async def release(lease: AsyncLease) -> bool:
            return await lease.release()

        aheld = loop.run_until_complete(take())
        fresh = cluster.add_primary()
        moving = sorted({key_slot(name.key.encode()) for name in names})
        cluster.begin_move(moving, fresh)  # the leases and marks moved; no wake list yet
        assert held.release()
        assert loop.run_until_complete(release(aheld))
        for name in names:  # gone from the node they moved to (asked with ASKING)
            with fresh.client() as node:
                node.execute_command("ASKING")
                assert node.exists(name.key) == 0
        cluster.end_move(moving, fresh)
        assert not isinstance(leases.acquire(names[0], 1.0), Busy)  # free again
        loop.run_until_complete(reg.aclose())
        loop.close()


def test_a_lease_is_taken_while_its_slot_moves(
        make_registry: Callable[..., Registry], prefix: str) -> None:
    """A lease is taken, found held and released while its slot moves, in both flavours:
    Redis refuses the acquire script over the lease, its wake list, its waiting mark and the
    entry with TRYAGAIN while they are not all on one node, so callers loaded without the
    lease (single-flight lost for the move's duration). Single keys are still served (ASK):
    the acquire falls back to them, and a waiter that cannot be woken through the wake list
    asks again soon (``Busy.ms``), not after its whole wait."""
    with start_cluster(primaries=3) as cluster:
        reg = make_registry(cluster.url, on_error="raise", **OPTIONS)
        loop = asyncio.new_event_loop()  # one loop: its client is closed at the end
        slot = reg.slot("default")
        names = [reg.keyspace.lease(f"{prefix}:item:{x}") for x in (1, 2)]
        leases = slot.backend().leases()
        assert not isinstance(leases.acquire(names[0], 30.0), Busy)  # moved with the slot
        fresh = cluster.add_primary()
        moving = sorted({key_slot(name.key.encode()) for name in names})
        cluster.begin_move(moving, fresh)

        async def acquire(name: LeaseName) -> AsyncLease | Busy:  # abackend(): this loop's
            return await slot.abackend().leases().acquire(name, 30.0, "")

        script = leases.acquire_script
        scripts: list[object] = []

        def counted(*args: Any, **kwargs: Any) -> Any:
            scripts.append(kwargs["keys"][0])
            return script(*args, **kwargs)

        leases.acquire_script = counted
        busy = leases.acquire(names[0], 30.0, "")  # held by the lease taken before the move
        assert isinstance(busy, Busy) and busy.ms is not None and busy.ms <= 1000
        assert isinstance(leases.acquire(names[0], 30.0, ""), Busy)  # its next try ...
        assert scripts == [names[0].key]  # ... goes straight to plain commands (no 0.4 s)
        held = leases.acquire(names[1], 30.0, "")
        assert not isinstance(held, Busy)
        abusy = loop.run_until_complete(acquire(names[1]))
        assert isinstance(abusy, Busy) and abusy.ms is not None and abusy.ms <= 1000
        assert held.release()
        aheld = loop.run_until_complete(acquire(names[1]))
        assert not isinstance(aheld, Busy)
        assert isinstance(leases.acquire(names[1], 30.0, ""), Busy)
        cluster.end_move(moving, fresh)
        assert isinstance(leases.acquire(names[1], 30.0), Busy)  # the script again: held

        async def release(lease: AsyncLease) -> bool:
            return await lease.release()

        assert loop.run_until_complete(release(aheld))
        assert not isinstance(leases.acquire(names[1], 1.0), Busy)
        loop.run_until_complete(reg.aclose())
        loop.close()


def test_loads_stay_single_across_processes_while_their_slot_moves(
        make_registry: Callable[..., Registry], prefix: str) -> None:
    """Two registries (two processes' worth of callers) ask for one cold ``lock=True`` entry
    whose slot is moving: one load, and the other caller gets its value soon after it lands
    (within MOVING_MS of polling, not its whole wait)."""
    with start_cluster(primaries=3) as cluster:
        loads: list[int] = []

        def load(x: int) -> int:
            loads.append(x)
            time.sleep(0.5)
            return x * 10

        regs = [make_registry(cluster.url, on_error="raise", **OPTIONS) for _ in range(2)]
        fs = [reg.cached(ttl=60, key="item:{x}", lock=True)(load) for reg in regs]
        moving = key_slot(f"{prefix}:item:7".encode())
        fresh = cluster.add_primary()
        cluster.begin_move(moving, fresh)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(fs[0], 7)
            time.sleep(0.1)  # the first caller holds the lease
            started = time.monotonic()
            second = pool.submit(fs[1], 7)
            assert first.result() == second.result() == 70
            waited = time.monotonic() - started
        assert loads == [7]
        assert waited < 1.5, waited  # the load's 0.4 s left, then one poll or two
        assert [reg.stats().backend_errors for reg in regs] == [0, 0]
        cluster.end_move(moving, fresh)
