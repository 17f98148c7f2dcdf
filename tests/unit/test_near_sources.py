"""The primaries a Cluster change stream listens to are named as redis-py's cluster client
names the nodes its reads go to: the backend compares the two sets, and a name written
differently would have the near cache keep nothing, ever."""

from __future__ import annotations

from redis.cluster import ClusterNode

from cachedeco.backends.near.sources import _primaries


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
