"""``@write_behind(replicas=N)``: a call returns only once N replicas hold the queued record
(``WAIT`` on the connection, and the node, that queued it); with fewer replicas than asked it
raises ``BackendError`` after ``replicas_timeout``, the record queued on the primary all the
same. Checked when the decorator is applied."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from cachedeco import BackendError, ConfigurationError, Registry, write_behind
from tests.support.deployments import cluster_client
from tests.support.events import Events
from tests.support.fixtures import SentinelPorts

SETTINGS = {"stats_interval": 0}


def _saver(reg: Registry, events: Events, **options: Any) -> Callable[..., dict[str, Any]]:
    @reg.write_behind(key="event:{id}", flush=events.flush, flush_interval=60, **options)
    def save(id: str, v: int) -> dict[str, Any]:
        return {"id": id, "v": v}

    return save


def _replica(ports: SentinelPorts) -> redis.Redis:
    """A client of whichever of the setup's two servers is the replica now."""
    for port in ports:
        client = redis.Redis(port=port, socket_timeout=5)
        if client.info("replication")["role"] == "slave":
            return client
        client.close()
    raise AssertionError("the Sentinel setup has no replica")


def test_replicas_1_returns_once_the_replica_holds_the_record(
        make_registry: Callable[..., Registry], sentinel_url: str,
        sentinel_ports: SentinelPorts, events: Events) -> None:
    reg = make_registry(sentinel_url, **SETTINGS)
    save = _saver(reg, events, replicas=1, replicas_timeout=5.0)
    stream = reg.keyspace.queue(f"{__name__}._saver.<locals>.save").stream
    with _replica(sentinel_ports) as replica:
        for v in range(20):
            assert save(f"e{v}", v) == {"id": f"e{v}", "v": v}
            assert replica.xlen(stream) == v + 1  # there when the call returned: no poll
    reg.flush()
    assert len(events.rows()) == 20


@pytest.mark.parametrize("where", ["sentinel", "redis", "cluster"])
def test_more_replicas_than_there_are_raises_after_replicas_timeout(
        make_registry: Callable[..., Registry], request: pytest.FixtureRequest,
        events: Events, where: str) -> None:
    url: str = request.getfixturevalue(f"{where}_url")
    reg = make_registry(url, **SETTINGS)
    save = _saver(reg, events, replicas=2, replicas_timeout=0.2)  # sentinel has 1, others 0
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"[01] of the 2 replica"):
        save("a", 1)
    assert time.monotonic() - start >= 0.15  # it waited for the replicas
    stream = reg.keyspace.queue(f"{__name__}._saver.<locals>.save").stream
    if where == "cluster":
        with cluster_client(url) as client:
            assert client.xlen(stream) == 1  # queued on the primary: at least once
    reg.flush()
    assert events.rows() == [("a", 1)]


@pytest.mark.parametrize("where", ["redis", "cluster"])
def test_a_replicas_timeout_as_long_as_the_socket_timeout_still_raises(
        make_registry: Callable[..., Registry], request: pytest.FixtureRequest,
        events: Events, tmp_path: Any, where: str) -> None:
    """One WAIT as long as the socket timeout was read as a dead connection: the record
    went to the spool, queued a second time, and the call returned without its replicas
    (with a longer replicas_timeout it never raised). WAIT now goes in steps under the
    socket timeout."""
    url: str = request.getfixturevalue(f"{where}_url")
    reg = make_registry(url, spool=tmp_path / "spool.db", socket_timeout=0.3, **SETTINGS)
    save = _saver(reg, events, replicas=1, replicas_timeout=0.6)  # no replica there
    for v in range(2):
        start = time.monotonic()
        with pytest.raises(BackendError, match=r"0 of the 1 replica"):
            save(f"e{v}", v)
        assert time.monotonic() - start >= 0.55  # it waited for the replica, all of it
    stats = reg.stats()
    assert (stats.recoveries_pending, stats.recoveries_done) == (0, 0)  # nothing kept
    reg.flush()
    assert events.rows() == [("e0", 0), ("e1", 1)]  # each once


@pytest.mark.parametrize("options", [{"replicas": -1}, {"replicas": True},
                                     {"replicas": 1.5}, {"replicas": 101},
                                     {"replicas_timeout": 0}, {"replicas_timeout": "1"},
                                     {"replicas_timeout": float("inf")}])
def test_bad_replicas_settings_are_refused_at_decoration(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="replicas"):
        write_behind(key="k:{x}", flush=print, **options)


def test_replicas_on_memory_is_refused(make_registry: Callable[..., Registry],
                                       events: Events) -> None:
    save = _saver(make_registry("memory://"), events, replicas=1)
    with pytest.raises(ConfigurationError, match="memory"):
        save("a", 1)
