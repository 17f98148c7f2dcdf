"""Near hits during a freeze under an ASGI service's load: reads of a few hot items arrive at
random, every half millisecond on average, in one registry (a task each, answered or not),
near-cached, while another registry (another process, as far as the near cache can tell)
writes them through, and the server is frozen (SIGSTOP) for longer than the socket timeout.
A write that cannot reach it returns after that timeout; by then no reader may serve near
what it replaced: no near hit before the server resumes returns a version older than a write
that had returned, frozen, before the hit began. (Other reads may join a read or a load
begun before such a write; and a near hit just after a write that returned before the
freeze may return the old version for the change message's delivery time, the reach window
the near cache does not close.) (A miss's look for
change messages once let the hits arriving within 0.2 ms after it skip the check of the
stream's silence.)"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from cachedeco import Registry
from tests.support.near import FirstStep, awarm
from tests.support.polling import poll
from tools.servers import Server

KEYS = 5
ARRIVAL = 0.0005  # mean seconds between two reads' arrivals
TIMEOUT = 1.0  # the library's default socket timeout: the readers stop vouching after 0.8 s
SETTINGS = {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT, "stats_interval": 0}


def _older(reads: list[tuple[float, float, int, int]], returned: list[tuple[float, int, int]],
           resumed: float) -> list[tuple[float, int, int]]:
    """The near hits that ended before ``resumed`` with a version older than a write of their
    item that had returned before they began: (when it began, the item, the version read)."""
    return [(began, k, value) for began, ended, k, value in reads if ended < resumed
            for at, wk, v in returned if wk == k and at < began and value < v]


def _frozen(acked: dict[int, list[tuple[float, int]]], frozen: float, resumed: float,
            ) -> list[tuple[float, int, int]]:
    """The writes that returned while the server was frozen: (when, the item, the version).
    (One that returned before may still be read old for the change message's delivery time:
    the reach window.)"""
    return [(at, k, v) for k, acks in acked.items() for at, v in acks if frozen < at < resumed]


async def test_no_task_is_served_near_what_a_write_that_returned_during_a_freeze_replaced(
        make_registry: Callable[..., Registry], fresh_redis: Server) -> None:
    reader = make_registry(fresh_redis.url, near_cache=100, **SETTINGS)
    writer = make_registry(fresh_redis.url, **SETTINGS)
    db = dict.fromkeys(range(KEYS), 0)
    acked: dict[int, list[tuple[float, int]]] = {k: [] for k in range(KEYS)}

    @reader.cached(ttl=60, key="item:{x}", tags=["item:{x}"])
    async def get(x: int) -> int:
        return db[x]

    @writer.cached(ttl=60, key="item:{x}", tags=["item:{x}"])
    async def wget(x: int) -> int:
        return db[x]

    @writer.write_through(wget)
    async def put(x: int) -> int:
        db[x] += 1
        return db[x]

    for k in range(KEYS):  # every item served near
        await awarm(lambda k=k: get(k), get.stats)
    reads: list[tuple[float, float, int, int]] = []
    running = True

    async def read(k: int) -> None:
        began = time.monotonic()
        step = FirstStep(get(k), lambda: get.stats().near_hits)
        value = await step
        if step.grew:  # a near hit (others may join a read or load begun before a write)
            reads.append((began, time.monotonic(), k, value))

    async def arrivals(rng: random.Random) -> None:  # requests keep coming, answered or not
        pending: set[asyncio.Task[None]] = set()
        while running:
            task = asyncio.create_task(read(rng.randrange(KEYS)))
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(rng.expovariate(1 / ARRIVAL))  # at random: some together
        await asyncio.gather(*pending)

    async def write_loop(rng: random.Random) -> None:
        while running:
            k = rng.randrange(KEYS)
            value = await put(k)
            acked[k].append((time.monotonic(), value))
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(arrivals(random.Random(0)))]
    tasks += [asyncio.create_task(write_loop(random.Random(-i))) for i in (1, 2)]
    await asyncio.sleep(0.3)
    frozen = time.monotonic()
    fresh_redis.pause()
    try:
        await asyncio.sleep(2.0 * TIMEOUT)  # writes fail over and return; streams go quiet
    finally:
        resumed = time.monotonic()
        fresh_redis.resume()
    running = False
    await asyncio.gather(*tasks)

    returned = _frozen(acked, frozen, resumed)
    assert any(at > resumed - TIMEOUT for at, _, _ in returned)  # writes returned frozen
    assert any(began > frozen for began, _, _, _ in reads)  # near hits went on, frozen
    stale = _older(reads, returned, resumed)
    assert not stale, f"{len(stale)} near hits older than a returned write, e.g. {stale[:3]}"
    poll(lambda: writer.stats().recoveries_pending == 0, timeout=10.0)
