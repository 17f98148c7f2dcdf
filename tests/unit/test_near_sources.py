"""The primaries a Cluster change stream listens to are named as redis-py's cluster client
names the nodes its reads go to: the backend compares the two sets, and a name written
differently would have the near cache keep nothing, ever. Over TLS (``ssl=True``) its
connections are TLS connections."""

from __future__ import annotations

from types import SimpleNamespace

import redis.asyncio
from redis.cluster import ClusterNode
from redis.connection import SSLConnection

from cachedeco.backends.base import ConnectionOptions
from cachedeco.backends.near.sources import (
    ClusterSource,
    SentinelSource,
    _primaries,
    source_for,
)


def _slots(*nodes: tuple[bytes | str, int]) -> list[list[object]]:
    """A ``CLUSTER SLOTS`` reply: one slot range per node given."""
    return [[i * 100, i * 100 + 99, [host, port, b"id"]] for i, (host, port) in enumerate(nodes)]


def _name(host: str, port: int) -> str:
    return str(ClusterNode(host, port).name)  # type: ignore[no-untyped-call]


def test_names_are_redis_pys_names() -> None:
    reply = _slots((b"10.0.0.2", 7001), ("10.0.0.3", 7002), (b"10.0.0.2", 7001))
    assert [f"{h}:{p}" for h, p in _primaries(reply, "10.0.0.1")] == [
        _name("10.0.0.2", 7001), _name("10.0.0.3", 7002)]


def test_an_empty_host_is_the_node_asked_and_localhost_is_resolved() -> None:
    reply = _slots((b"", 7000), (b"localhost", 7001))
    assert [f"{h}:{p}" for h, p in _primaries(reply, "localhost")] == [
        _name("localhost", 7000), _name("localhost", 7001)]


def test_tls_cluster_and_sentinel_streams_open_tls_connections() -> None:
    # a cluster or Sentinel URL gets TLS from the client option ssl=True, which a connection
    # does not take: the change stream's connections must be TLS ones all the same
    options = ConnectionOptions(extra={"ssl": True, "ssl_ca_certs": "ca.pem"})
    cluster = source_for("cluster", "redis+cluster://127.0.0.1:7000", options)
    assert isinstance(cluster, ClusterSource)
    conn = cluster._factory("127.0.0.1", 7001)()
    assert isinstance(conn, SSLConnection) and conn.ca_certs == "ca.pem"
    watch = SimpleNamespace(address=("127.0.0.1", 6390))
    sentinel = SentinelSource("redis+sentinel://127.0.0.1:26379/mymaster", options,
                              watch)  # type: ignore[arg-type]
    (factory,) = sentinel.primaries().values()
    assert isinstance(factory(), SSLConnection)
    plain = source_for("cluster", "redis+cluster://127.0.0.1:7000", ConnectionOptions())
    assert isinstance(plain, ClusterSource)
    assert not isinstance(plain._factory("127.0.0.1", 7001)(), SSLConnection)


def test_a_ready_asyncio_cluster_clients_tls_settings_carry_over_to_its_stream() -> None:
    client = redis.asyncio.RedisCluster(host="127.0.0.1", port=7000, password="p", ssl=True,
                                        ssl_ca_certs="ca.pem", socket_timeout=0.5)
    source = source_for("cluster", client, ConnectionOptions())
    assert isinstance(source, ClusterSource)
    conn = source._factory("127.0.0.1", 7001)()
    assert isinstance(conn, SSLConnection)
    assert (conn.host, conn.port, conn.password, conn.ca_certs, conn.socket_timeout) == (
        "127.0.0.1", 7001, "p", "ca.pem", 0.5)
    assert source._seeds == [("127.0.0.1", 7000)]
