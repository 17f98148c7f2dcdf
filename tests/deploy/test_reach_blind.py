"""A server that a bare connect does not reach though its client does (behind a proxy or a
firewall that treats the two apart): auto-recovery's probes never get through there, so
each try would wait out their whole budget. Once a try lands after probes that ran out and
one more probe does not get through either, that server's tries go unprobed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cachedeco import Registry
from cachedeco.runtime import reach, retrying
from tests.support.polling import apoll, poll
from tools.servers import Server, start_single

#: The probes' budget here (30 s in the library), and the options of the test's registry.
BUDGET = 3.0
OPTIONS = {"socket_timeout": 0.3, "stats_interval": 0}


@pytest.fixture
def server() -> Iterator[Server]:
    """A private server, resumed and stopped on the way out."""
    with start_single() as started:
        try:
            yield started
        finally:
            started.resume()


@pytest.fixture
def blind(monkeypatch: pytest.MonkeyPatch) -> None:
    """No probe's connect gets through (the client's do), and probes give up after
    :data:`BUDGET`."""
    async def never(probes: object, where: object) -> None:
        return None

    monkeypatch.setattr(reach._Probes, "_connect", never)
    monkeypatch.setattr(retrying, "REACH", BUDGET)


def _kept_drop_lands(server: Server, reg: Registry, get: Callable[[int], int]) -> float:
    """Seconds from the heal until a drop kept while ``server`` was frozen lands."""
    assert get(1) == 1
    server.pause()
    get.invalidate(1)  # type: ignore[attr-defined]  # times out: kept
    assert reg.stats().recoveries_pending == 1
    server.resume()
    healed = time.monotonic()
    poll(lambda: reg.stats().recoveries_pending == 0, timeout=2 * BUDGET)
    return time.monotonic() - healed


@pytest.mark.usefixtures("blind")
def test_a_server_its_probes_never_reach_is_tried_unprobed_after_one_outage(
        server: Server, make_registry: Callable[..., Registry],
        caplog: pytest.LogCaptureFixture) -> None:
    reg = make_registry(server.url, **OPTIONS)

    @reg.cached(ttl=300, key="item:{x}")
    def get(x: int) -> int:
        return x

    assert _kept_drop_lands(server, reg, get) > BUDGET / 2  # the probes' budget ran out
    poll(lambda: "does not get through" in caplog.text, timeout=5.0)
    assert _kept_drop_lands(server, reg, get) < 1.0  # 2.7 s or so before this guard


async def _akept_drop_lands(server: Server, reg: Registry, get: Any) -> float:
    """:func:`_kept_drop_lands` for an asyncio client's registry."""
    assert await get(1) == 1
    server.pause()
    await get.invalidate(1)
    assert reg.stats().recoveries_pending == 1
    server.resume()
    healed = time.monotonic()
    await apoll(lambda: reg.stats().recoveries_pending == 0, timeout=2 * BUDGET)
    return time.monotonic() - healed


@pytest.mark.usefixtures("blind")
async def test_the_asyncio_worker_alike(
        server: Server, amake_registry: Callable[..., Registry],
        caplog: pytest.LogCaptureFixture) -> None:
    client = redis.asyncio.Redis.from_url(server.url, socket_timeout=0.3,
                                          retry=Retry(NoBackoff(), 0))
    reg = amake_registry(client, stats_interval=0)  # an asyncio client only: a task tries

    @reg.cached(ttl=300, key="item:{x}")
    async def get(x: int) -> int:
        return x

    try:
        assert await _akept_drop_lands(server, reg, get) > BUDGET / 2
        await apoll(lambda: "does not get through" in caplog.text, timeout=5.0)
        assert await _akept_drop_lands(server, reg, get) < 1.0
    finally:
        await client.aclose()
