"""A registry warmed before a fork, as gunicorn's master does under ``--preload``, then closed:
the master keeps no change stream (thread or tracking connection), and each forked worker
opens its own at its first call, with its own near cache."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable

from cachedeco import Registry
from tests.support.near import near_threads, tracking_clients
from tests.support.polling import poll
from tools.servers import Server


def test_a_registry_warmed_and_closed_before_a_fork_serves_each_worker_near(
        make_registry: Callable[..., Registry], fresh_redis: Server, prefix: str) -> None:
    admin = fresh_redis.processes[0].client()
    reg = make_registry(fresh_redis.url, near_cache=100, stats_interval=0)
    loads: list[int] = []

    @reg.cached(ttl=60, key="item:{x}", tags=["item:{x}"])
    def get(x: int) -> str:
        loads.append(x)
        return f"v{x}"

    assert get(1) == "v1"  # the warm-up: connections, the change stream
    poll(lambda: len(tracking_clients(admin)) == 1, timeout=5.0)
    assert near_threads(prefix) == 1
    reg.close()
    assert near_threads(prefix) == 0 and tracking_clients(admin) == []  # the master keeps none

    context = multiprocessing.get_context("fork")
    results = context.Queue()

    def worker() -> None:  # in the child: the registry as the fork left it
        values = [get(1) for _ in range(3)]
        until = time.monotonic() + 5.0
        while get.stats().near_hits == 0 and time.monotonic() < until:
            values.append(get(1))
        results.put((set(values), get.stats().near_hits, len(loads)))

    children = [context.Process(target=worker) for _ in range(2)]
    for child in children:
        child.start()
    found = [results.get(timeout=30) for _ in children]
    for child in children:
        child.join(10)
        assert child.exitcode == 0
    for values, near_hits, loaded in found:
        assert values == {"v1"}  # from Redis (the warm-up stored it), then near
        assert near_hits >= 1
        assert loaded == 1  # the master's warm-up only: no child ran the function
    poll(lambda: tracking_clients(admin) == [], timeout=5.0)  # their streams ended with them
