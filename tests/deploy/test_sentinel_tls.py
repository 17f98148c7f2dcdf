"""Sentinel with TLS data connections, against real servers (:func:`tools.servers.start_sentinel`
with ``tls=True``: the primary and the replica listen and replicate over TLS, the sentinels
watch them there and name their TLS ports; clients ask the sentinels on their plain ports
or, with ``sentinel_kwargs``, on their TLS ports). Reads, stores and invalidations in both
flavours, a hit's commands counted on the primary, the near cache (near hits send nothing,
changes by another client reach it, the stream is never lost), and a failover: the registry
follows the promoted replica over TLS, stores there, and its near cache comes back and keeps
up with changes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from cachedeco import Registry
from tests.support.commands import commandstats
from tests.support.polling import poll
from tests.support.round_trip import reads_stores_and_invalidations
from tests.support.versioned import follow_changes
from tools.servers import SentinelSetup, start_sentinel

WINDOW = 1.0  # seconds a change may take to reach the near cache (loopback, loaded CI)


@pytest.fixture
def setup() -> Iterator[SentinelSetup]:
    """A TLS setup of the test's own (the failover test kills its primary)."""
    with start_sentinel(tls=True) as made:  # stopped on the way out
        yield made


@pytest.fixture(params=["plain sentinels", "TLS sentinels"])
def registry(make_registry: Callable[..., Registry], setup: SentinelSetup,
             request: pytest.FixtureRequest) -> Callable[..., Registry]:
    """Registries on the setup, trusting its certificate; asking the sentinels on their
    plain ports, or on their TLS ports (``sentinel_kwargs``: the sentinels' own settings)."""
    tls = {"ssl": True, "ssl_ca_certs": setup.tls_ca}
    url, sentinels = ((setup.url, {}) if request.param == "plain sentinels"
                      else (setup.tls_url, {"sentinel_kwargs": dict(tls)}))

    def make(**options: object) -> Registry:
        return make_registry(url, **tls, **sentinels, stats_interval=0, **options)
    return make


def _plain(setup: SentinelSetup) -> redis.Redis:
    """The tests' own client of the primary the sentinels name, on its plain port."""
    return redis.Redis(port=setup.server(setup.discover_primary()[1]).port)


def test_reads_stores_and_invalidations(registry: Callable[..., Registry],
                                        setup: SentinelSetup) -> None:
    with _plain(setup) as admin:
        keys = reads_stores_and_invalidations(registry(), lambda: commandstats(admin),
                                              hit={"mget": 1})  # the entry and its tags
        assert admin.exists(*keys) == 2  # the primary holds them


def test_the_near_cache_works(registry: Callable[..., Registry], setup: SentinelSetup) -> None:
    reg = registry(near_cache=1000)
    other = registry()  # another client
    with _plain(setup) as admin:
        follow_changes(reg, other, window=WINDOW, counts=lambda: commandstats(admin))
    tracker = reg.slot("default")._tracker
    assert tracker is not None and tracker.connects == 1  # the stream was never lost


def test_a_failover_is_followed(registry: Callable[..., Registry],
                                setup: SentinelSetup) -> None:
    reg = registry(near_cache=1000, socket_timeout=0.5, socket_connect_timeout=0.5,
                   breaker_cooldown=0.3)
    other = registry(socket_timeout=0.5, socket_connect_timeout=0.5, breaker_cooldown=0.3)
    follow_changes(reg, other, x=1, rounds=2, window=WINDOW)
    old = setup.kill_primary()
    new = setup.wait_for_failover(old, timeout=20)
    assert new != old and new == setup.replica.announced_port  # named by its TLS port

    @reg.cached(ttl=60, key="after:{x}")
    def after(x: int) -> int:
        return x

    with redis.Redis(port=setup.server(new).port) as admin:
        # stored on the promoted replica, through the registry's TLS connections
        poll(lambda: after(1) == 1 and admin.exists(after.key(1)) == 1, timeout=15)
    # the near cache is back, and keeps up
    follow_changes(reg, other, x=2, rounds=6, window=WINDOW)
