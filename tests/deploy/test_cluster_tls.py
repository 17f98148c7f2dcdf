"""Redis Cluster over TLS, against real nodes (:func:`tools.servers.start_cluster` with
``tls=True``: every node has a TLS port, and a TLS client is told the others' TLS ports; the
bus and replication run over TLS too). Reads, stores and invalidations in both flavours, a
hit's commands counted, the near cache (near hits send nothing, changes by another client
reach it one by one and in a burst larger than a TLS record, and its change stream, a TLS
connection to every primary, is never lost meanwhile), and the operator CLI given the TLS
options with ``--option``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from redis.cluster import RedisCluster

from cachedeco import Registry
from tests.support.commands import commandstats
from tests.support.operator_cli import cli
from tests.support.polling import poll
from tests.support.round_trip import reads_stores_and_invalidations
from tests.support.versioned import follow_changes, keep_near
from tools.servers import Cluster
from tools.servers.cluster import start_cluster

WINDOW = 1.0  # seconds a change may take to reach the near cache (loopback, loaded CI)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with start_cluster(tls=True) as made:  # stopped on the way out
        yield made


@pytest.fixture
def admin(cluster: Cluster) -> Iterator[RedisCluster]:
    """The tests' own client, on the nodes' plain ports."""
    host, port = cluster.startup_nodes[0]
    with RedisCluster(host=host, port=port) as client:
        yield client


@pytest.fixture
def registry(make_registry: Callable[..., Registry], cluster: Cluster
             ) -> Callable[..., Registry]:
    """Registries on the cluster's TLS ports, trusting its certificate."""
    def make(**options: object) -> Registry:
        return make_registry(cluster.tls_url, ssl=True, ssl_ca_certs=cluster.tls_ca,
                             stats_interval=0, **options)
    return make


def test_reads_stores_and_invalidations(registry: Callable[..., Registry],
                                        admin: RedisCluster) -> None:
    keys = reads_stores_and_invalidations(registry(), lambda: commandstats(admin),
                                          hit={"get": 1, "mget": 1})  # the entry, its tags
    assert admin.exists(*keys) == 2  # it is this cluster that holds them


def test_the_near_cache_works(registry: Callable[..., Registry], cluster: Cluster,
                              admin: RedisCluster) -> None:
    reg = registry(near_cache=1000)
    other = registry()  # another client
    f, version = follow_changes(reg, other, window=WINDOW, counts=lambda: commandstats(admin))
    tracker = reg.slot("default")._tracker
    assert tracker is not None
    connects = tracker.connects
    # 400 entries over every primary dropped at once (the stream's TLS records fill up)
    keys = range(400)
    keep_near(f, keys, version, WINDOW)
    version["v"] += 1
    with admin.pipeline(transaction=False) as pipe:
        for x in keys:
            pipe.unlink(f.key(x))
        pipe.execute()
    poll(lambda: all(f(x) == version["v"] for x in keys), timeout=WINDOW)
    assert tracker.connects == connects  # the stream was never lost


def test_the_cli_takes_the_tls_options(registry: Callable[..., Registry], cluster: Cluster,
                                       prefix: str) -> None:
    reg = registry()
    loads: list[int] = []

    @reg.cached(ttl=60, tags=["t:{x}"])
    def f(x: int) -> int:
        loads.append(x)
        return x

    assert [f(1), f(1)] == [1, 1]
    base = ["--backend", cluster.tls_url, "--prefix", prefix]
    plain = cli("invalidate-tags", "t:1", *base)  # a plain client on TLS ports
    assert plain.returncode == 1 and "cannot reach" in plain.stderr
    tls = ["--option", "ssl=true", "--option", f"ssl_ca_certs={cluster.tls_ca}"]
    done = cli("invalidate-tags", "t:1", *base, *tls)
    assert done.returncode == 0, done.stderr
    assert f(1) == 1 and loads == [1, 1]  # the entry was invalidated
    stats = cli("stats", *base, *tls)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["entries"] == 1
