"""In-process single-flight (no server): flights keyed by read state, waiting from threads and
from tasks on several event loops, errors and leaders gone; and the in-process leases that
``lock()`` uses on ``memory://``. (Through ``@cached`` on every deployment:
tests/features/test_single_flight.py and test_stampede.py.)"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import pytest

from cachedeco.backends.contracts.leases import Busy, deadline, lease_ttl
from cachedeco.backends.memory.leases import MemoryLeases
from cachedeco.core.keyspace import KeySpace
from cachedeco.runtime import singleflight
from cachedeco.runtime.primitives import ajoin_flight, join_flight, keep_alive
from cachedeco.runtime.singleflight import Flights, LeaderGone, WaitTimeout

STATE = ("", ())
OTHER = ("cdT:0123456789abcdef", ())

# --- Flights -----------------------------------------------------------------------------------


def test_the_first_caller_leads_and_the_next_join() -> None:
    flights = Flights()
    flight, leader = flights.join("k", STATE, flights.landings)
    joined, second = flights.join("k", STATE, flights.landings)
    assert leader and not second and joined is flight
    assert flights.running("k", STATE)


def test_a_caller_that_read_another_state_never_joins() -> None:
    flights = Flights()
    flight, _ = flights.join("k", STATE, flights.landings)
    newer, leader = flights.join("k", OTHER, flights.landings)
    assert leader and newer is not flight
    assert not flights.running("k", STATE) and flights.running("k", OTHER)


def test_landing_hands_the_value_to_waiters_and_ends_the_flight() -> None:
    flights = Flights()
    flight, _ = flights.join("k", STATE, flights.landings)
    since = flights.landings
    flights.land("k", flight, 42)
    assert join_flight(flight, 0) == 42
    assert not flights.running("k", STATE)
    # a caller whose read was under way when it landed joins it; a later one starts afresh
    assert flights.join("k", STATE, since) == (flight, False)
    assert flights.join("k", STATE, flights.landings)[1]


def test_a_caller_that_read_the_entry_the_load_stores_joins_it() -> None:
    """On a cluster a read's tag reply may predate the store and its entry reply follow it:
    such a caller saw the load's own entry, and shares the load rather than running another
    (running or landed), but not with tokens an invalidation left."""
    started = ("", (None,))
    flights = Flights()
    flight, _ = flights.join("k", started, flights.landings)
    since = flights.landings
    flight.stored = "cd1:0123456789abcdef"  # the store is under way
    skewed = (flight.stored, (None,))
    assert flights.join("k", skewed, since) == (flight, False)
    flights.land("k", flight, 42)
    assert flights.join("k", skewed, since) == (flight, False)
    invalidated = (flight.stored, ("i0123456789abcdef",))  # a token invalidate_tags left
    assert flights.join("k", invalidated, since)[1]


def test_forget_makes_later_callers_start_afresh() -> None:
    flights = Flights()
    flight, _ = flights.join("k", STATE, flights.landings)
    flights.forget("k")
    assert flights.join("k", STATE, flights.landings)[0] is not flight


def test_an_error_reaches_every_waiter() -> None:
    flights = Flights()
    flight, _ = flights.join("k", STATE, flights.landings)
    flights.land("k", flight, exc=ValueError("boom"))
    for _ in range(3):
        with pytest.raises(ValueError, match="boom"):
            join_flight(flight, 0)


def test_join_flight_times_out_without_ending_the_flight() -> None:
    flights = Flights()
    flight, _ = flights.join("k", STATE, flights.landings)
    with pytest.raises(WaitTimeout):
        join_flight(flight, 0.01)
    flights.land("k", flight, 1)
    assert join_flight(flight, 0) == 1


async def test_ajoin_flight_times_out_without_ending_the_wait_of_others() -> None:
    flights = Flights()
    flight, _ = flights.join("k", STATE, flights.landings)
    patient = asyncio.ensure_future(ajoin_flight(flight, 5))
    with pytest.raises(WaitTimeout):
        await ajoin_flight(flight, 0.01)
    cancelled = asyncio.ensure_future(ajoin_flight(flight, None))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    assert not patient.done()
    flights.land("k", flight, "v")
    assert await patient == "v"
    assert await ajoin_flight(flight, 1) == "v"
    assert cancelled.cancelled()


async def test_a_landing_on_the_loop_wakes_its_tasks_without_a_cross_thread_call() -> None:
    loop = asyncio.get_running_loop()
    flights = Flights()
    flight, _ = flights.join("k", STATE, flights.landings)
    waiting = [asyncio.ensure_future(ajoin_flight(flight, 5)) for _ in range(50)]
    await asyncio.sleep(0)
    crossed: list[Any] = []
    threadsafe = loop.call_soon_threadsafe
    loop.call_soon_threadsafe = lambda *a, **k: crossed.append(a) or threadsafe(*a, **k)  # type: ignore[method-assign]
    try:
        flights.land("k", flight, "v")
        assert await asyncio.gather(*waiting) == ["v"] * 50
    finally:
        del loop.call_soon_threadsafe
    assert crossed == []


def test_tasks_on_several_event_loops_share_one_flight() -> None:
    flights = Flights()
    flight, _ = flights.join("k", STATE, flights.landings)
    results: list[Any] = []

    def loop_thread() -> None:
        async def main() -> list[Any]:
            return await asyncio.gather(*(ajoin_flight(flight, 5) for _ in range(10)))

        results.extend(asyncio.run(main()))

    threads = [threading.Thread(target=loop_thread) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    flights.land("k", flight, "shared")
    for thread in threads:
        thread.join()
    assert results == ["shared"] * 40


def test_leader_gone_is_what_waiters_see() -> None:
    flights = Flights()
    flight, _ = flights.join("k", STATE, flights.landings)
    flights.land("k", flight, exc=LeaderGone())
    with pytest.raises(LeaderGone):
        join_flight(flight, 0)


# --- in-process leases -------------------------------------------------------------------------

NAME = KeySpace("p").lock("job")


def test_a_memory_lease_excludes_until_released_and_wakes_its_waiters() -> None:
    leases = MemoryLeases()
    held = leases.acquire(NAME, 5)
    assert not isinstance(held, Busy)
    busy = leases.acquire(NAME, 5)
    assert isinstance(busy, Busy) and busy.ms is not None and 4000 < busy.ms <= 5000
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(leases.wait(NAME, busy, 5)))
    waiter.start()
    assert held.release()
    waiter.join(1)
    assert woke == [True]
    assert not isinstance(leases.acquire(NAME, 5), Busy)


def test_a_memory_lease_expires_and_its_old_owner_cannot_release_the_next() -> None:
    leases = MemoryLeases()
    first = leases.acquire(NAME, 0.05)
    assert not isinstance(first, Busy)
    time.sleep(0.06)
    assert not first.extend(5)
    second = leases.acquire(NAME, 5)
    assert not isinstance(second, Busy)
    assert not first.release()
    assert isinstance(leases.acquire(NAME, 5), Busy)
    assert second.release()


def test_a_memory_lease_extends_while_owned() -> None:
    leases = MemoryLeases()
    held = leases.acquire(NAME, 0.1)
    assert not isinstance(held, Busy)
    with keep_alive(lambda: held.extend(0.1), 0.1 / 3, lambda exc: None):
        time.sleep(0.25)
        assert isinstance(leases.acquire(NAME, 5), Busy)  # kept alive past its first TTL
    assert held.release()


def test_a_wait_times_out() -> None:
    leases = MemoryLeases()
    assert not isinstance(leases.acquire(NAME, 5), Busy)
    busy = leases.acquire(NAME, 5)
    assert isinstance(busy, Busy)
    started = time.perf_counter()
    assert not leases.wait(NAME, busy, 0.05)
    assert 0.04 < time.perf_counter() - started < 0.5


def test_timing_helpers() -> None:
    assert lease_ttl(None) == 10.0
    assert lease_ttl(10.0) == 5.0
    assert lease_ttl(0.1) == 0.5
    assert lease_ttl(600) == 30.0
    assert deadline(None) == math.inf
    assert Busy(100).cap(5.0) == pytest.approx(0.102)
    assert Busy(None).cap(5.0) == 5.0
    assert Busy(10_000).cap(0.5) == 0.5


def test_a_spawned_refresh_holds_others_back_until_it_ends_or_for_starting_seconds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    flights = Flights()
    assert flights.start_refresh("k", STATE)
    assert not flights.start_refresh("k", STATE)  # spawned, its load not joined yet
    assert flights.start_refresh("other", STATE)
    flights.refreshed("k")
    assert flights.start_refresh("k", STATE)  # it ended: the next may start
    # one that never runs (cancelled before its first step, its loop closed) holds the key
    # back for STARTING seconds only, else the key would never be refreshed again
    monkeypatch.setattr(singleflight, "STARTING", 0.05)
    assert not flights.start_refresh("k", STATE)
    time.sleep(0.06)
    assert flights.start_refresh("k", STATE)
    flight, _ = flights.join("k", STATE, flights.landings)
    flights.refreshed("k")
    assert not flights.start_refresh("k", STATE)  # its load runs: that holds others back
    flights.land("k", flight, 1)
    assert flights.start_refresh("k", STATE)


async def test_a_task_that_comes_after_the_landing_gets_its_value_or_its_error() -> None:
    flights = Flights()
    flight, _ = flights.join("k", STATE, flights.landings)
    flights.land("k", flight, "v")  # no task waited: its future is made by the first one
    assert await ajoin_flight(flight, 0) == "v"
    failed, _ = flights.join("e", STATE, flights.landings)
    flights.land("e", failed, exc=ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        await ajoin_flight(failed, 0)
    again, leads = flights.join("e", STATE, 0)  # a failed load is not joined late
    assert leads and again is not failed
