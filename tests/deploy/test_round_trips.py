"""What the single server runs for the rest of the API: invalidating tags is one round trip
whatever the number of entries, a lease waiter costs four commands and wakes when the value
lands, a hit never touches the lease, a write-behind call is one script call. (Hits and
misses: ``_async/test_round_trips.py``.)"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import pytest
import redis

import cachedeco
from cachedeco import Registry, cached
from cachedeco.backends.redis.commands import MAX_BLOCK
from tests.support._sync.writers import event_functions
from tests.support.calls import Calls
from tests.support.commands import commandstats, ran
from tests.support.counting import AsyncCountingClient, CountingClient, names
from tests.support.events import Events
from tests.support.polling import apoll
from tests.support.write_behind import HELD, stream_of


@pytest.fixture
def counted(redis_url: str) -> Iterator[CountingClient]:
    counting = CountingClient(redis_url)
    yield counting
    counting.close()


@pytest.fixture
async def acounted(redis_url: str) -> AsyncIterator[AsyncCountingClient]:
    counting = AsyncCountingClient(redis_url)
    yield counting
    await counting.aclose()


def test_invalidating_three_tags_over_20000_entries_is_one_round_trip(
        make_registry: Callable[..., Registry], counted: CountingClient,
        redis_client: redis.Redis) -> None:
    sends = counted.sends
    reg = make_registry(counted.client)
    calls = Calls()

    @cached(registry=reg, tags=["a", "b", "c"], ttl=600)
    def f(i: int) -> dict[str, str]:
        calls(i)
        return {"shape": "same for every i"}

    @cached(registry=reg, tags=["d"], ttl=600)
    def untouched(i: int) -> int:
        return i

    for i in range(500):  # real fills through the library...
        f(i)
    raw = redis_client.get(f.key(0))
    assert raw is not None
    with redis_client.pipeline(transaction=False) as pipe:  # ...and 19,500 copies of one
        for i in range(500, 20_000):
            pipe.set(f.key(i), raw, px=600_000)
        pipe.execute()
    untouched(1)
    sample = random.Random(4).sample(range(20_000), 200)
    before_calls = len(calls)
    for i in sample:
        f(i)
    assert len(calls) == before_calls  # all 20,000 are live, tagged entries

    sends.clear()
    before = commandstats(redis_client)
    reg.invalidate_tags("a", "b", "c")
    executed = ran(before, commandstats(redis_client))
    assert len(sends) == 1, sends
    assert sum(executed.values()) <= 3, executed  # nothing per entry on the server either

    for i in sample:
        f(i)
    assert len(calls) == before_calls + len(sample)  # every sampled entry is now a miss
    untouched(1)
    assert untouched.stats().hits == 1


def _twins(reg: Registry, runs: list[int], delay: float,
           gate: asyncio.Event | None = None) -> Callable[[], Any]:
    """Async cached functions sharing one key with ``lock=True``: one per simulated process.
    A load takes ``delay`` seconds, then waits for ``gate`` (when given) to be set."""

    def make() -> Any:
        @cachedeco.cached(ttl=60, registry=reg, lock=True)
        async def load(x: int) -> dict[str, int]:
            runs.append(x)
            await asyncio.sleep(delay)
            if gate is not None:
                await gate.wait()
            return {"x": x, "run": len(runs)}

        return load

    return make


async def test_a_waiter_costs_four_commands_and_wakes_when_the_value_lands(
        amake_registry: Callable[..., Registry], redis_url: str,
        acounted: AsyncCountingClient) -> None:
    runs: list[int] = []
    gate = asyncio.Event()
    gate.set()
    holder = _twins(amake_registry(redis_url, jitter=0), runs, 0.0, gate)()
    waiter = _twins(amake_registry(acounted.client, jitter=0), runs, 0.0, gate)()
    await holder(0), await waiter(0)  # warm: connections open, scripts loaded
    gate.clear()
    runs.clear()
    acounted.sends.clear()
    task = asyncio.create_task(holder(1))
    await apoll(lambda: runs == [1], timeout=10)  # the holder loads, under its lease
    waiting = asyncio.create_task(waiter(1))
    await apoll(lambda: waiter.stats().lock_waits == 1, timeout=10)  # it found the lease held
    started = time.perf_counter()
    gate.set()  # the holder's value lands
    value = await asyncio.wait_for(waiting, 10)
    waited = time.perf_counter() - started
    landed = await task
    assert value == landed == {"x": 1, "run": 1}
    assert runs == [1]
    # Woken when the value landed: a waiter left to its block would wait MAX_BLOCK (its
    # client has no socket timeout) before it looked again.
    assert waited < MAX_BLOCK / 5
    # a miss, a lease attempt (held), one block until the release, one read of the value
    assert names(acounted.sends) == ["mget", "evalsha", "blmove", "mget"]


async def test_a_hit_never_touches_the_lease(amake_registry: Callable[..., Registry],
                                             redis_url: str, redis_client: redis.Redis) -> None:
    load = _twins(amake_registry(redis_url), [], 0.0)()
    await load(1)
    before = commandstats(redis_client)
    for _ in range(10):
        assert await load(1) == {"x": 1, "run": 1}
    assert ran(before, commandstats(redis_client)) == {"mget": 10}  # entry and function tag


def test_a_write_behind_call_is_one_round_trip_and_leaves_a_held_entry(
        make_registry: Callable[..., Registry], redis_url: str, events: Events,
        redis_client: redis.Redis, prefix: str, *, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = make_registry(redis_url)
    get_event, record_event = event_functions(reg, events.flush)
    record_event("warm", 0)
    client = cast(Any, reg.slot("default").backend()).client
    sent: list[str] = []
    execute = client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]))
        return execute(*args, **kwargs)

    monkeypatch.setattr(client, "execute_command", counting)
    record_event("a", 1)
    assert sent == ["EVALSHA"]  # entry, tag keys and XADD: one script, one round trip
    key = get_event.key("a")
    assert redis_client.pttl(key) > HELD
    stream = stream_of(prefix, record_event)
    assert redis_client.xlen(stream) == 2
    assert reg.clear() >= 1  # entries go; the queue is one of cachedeco's own keys, spared
    assert redis_client.xlen(stream) == 2
    reg.flush()
    assert redis_client.xlen(stream) == 0
    assert events.rows() == [("a", 1), ("warm", 0)]
