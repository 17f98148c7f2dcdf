"""A burst of callers on every server deployment: 300 tasks or threads share a registry whose
``max_connections`` is small. They wait for a connection (up to ``pool_timeout``) rather than
fail, none falls back to the function, and no server ever holds more of the registry's
connections than ``max_connections`` (each cluster node as many); closing releases them all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from cachedeco import Registry, cached
from tests.support.calls import Calls
from tests.support.connections import named, settled
from tests.support.deployments import SERVERS, Deployment

pytestmark = pytest.mark.deployments(*SERVERS)

CALLERS = 300
LIMIT = 4  # max_connections
WAIT = 60.0  # pool_timeout: generous, the machine is slow; a burst must never reach it


def _settings(prefix: str) -> dict[str, object]:
    """A registry that raises any backend fault (so none can hide behind a fallback), with
    few connections, all named after the test."""
    return {"max_connections": LIMIT, "pool_timeout": WAIT, "client_name": prefix,
            "on_error": "raise"}


async def test_a_burst_of_tasks_waits_for_a_few_connections(
        amake_registry: Callable[..., Registry], deployment: Deployment, prefix: str) -> None:
    reg = amake_registry(deployment.url, **_settings(prefix))
    calls = Calls()

    @cached(registry=reg, tags=["item:{x}"])
    async def f(x: int) -> dict[str, int]:
        calls(x)
        await asyncio.sleep(0.001)
        return {"x": x}

    # An asyncio cluster client also keeps the connection it asked for the topology on, in an
    # object of its own (redis-py's startup node): one more on that node. And a registry made
    # from a URL has a sync client beside the asyncio one, whose pool the lineage's beat
    # thread uses (once a second, on every primary: one more connection there once it beat;
    # a slow run's burst outlasts the first beat).
    topology = 1 if deployment.name == "cluster" else 0
    beat = 1
    for _ in range(2):  # misses (read, load, store), then hits
        assert await asyncio.gather(*(f(x) for x in range(CALLERS))) == [
            {"x": x} for x in range(CALLERS)]
        assert max(named(deployment, prefix).values()) <= LIMIT + topology + beat
    assert len(calls) == CALLERS
    assert reg.stats().backend_errors == 0
    await reg.aclose()
    assert not any(settled(deployment, prefix).values())


def test_a_burst_of_threads_waits_for_a_few_connections(
        make_registry: Callable[..., Registry], deployment: Deployment, prefix: str) -> None:
    reg = make_registry(deployment.url, **_settings(prefix))
    calls = Calls()

    @cached(registry=reg, tags=["item:{x}"])
    def f(x: int) -> dict[str, int]:
        calls(x)
        time.sleep(0.001)
        return {"x": x}

    with ThreadPoolExecutor(CALLERS) as pool:
        for _ in range(2):
            assert list(pool.map(f, range(CALLERS))) == [{"x": x} for x in range(CALLERS)]
            assert max(named(deployment, prefix).values()) <= LIMIT
    assert len(calls) == CALLERS
    assert reg.stats().backend_errors == 0
    reg.close()
    assert not any(settled(deployment, prefix).values())
