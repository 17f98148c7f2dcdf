"""Shared fixtures: Redis deployments, a key prefix per test, clients that clean up.

Deployments come from the variables ``scripts/test`` exports (``CACHEDECO_TEST_REDIS_URL``,
``CACHEDECO_TEST_CLUSTER_URL``, ``CACHEDECO_TEST_SENTINEL_URL``,
``CACHEDECO_TEST_SENTINEL_PRIMARY_PORT``, ``CACHEDECO_TEST_SENTINEL_REPLICA_PORT``). When one is
missing, the session starts that deployment itself with ``tools.redis_servers`` (so
``.venv/bin/pytest tests/...`` works on a machine with redis-server), and fails when it
cannot: an integration test is never skipped.

Session fixtures: ``redis_url`` (str), ``cluster_url`` (str), ``sentinel_url`` (str),
``sentinel_ports`` (``SentinelPorts(primary, replica)``, a tuple).
Per test: ``prefix`` (``"t" + 10 hex digits``; after the test, the keys ``prefix*`` and
``{prefix}*`` are swept with SCAN + UNLINK from every deployment the test used),
``redis_client`` (``redis.Redis``), ``aredis_client`` (``redis.asyncio.Redis``),
``cluster_client`` (``redis.cluster.RedisCluster``), and private deployments a test may
break: ``fresh_redis`` (``tools.redis_servers.Server``: ``kill()``, ``restart()``) and
``fresh_sentinel`` (``SentinelSetup``: ``kill_primary()``, ``wait_for_failover()``).

Helpers, defined in ``tools.redis_servers`` (import them from there: a test module should not
import conftest): ``commandstats(client) -> dict[str, int]`` and ``acommandstats`` (calls per
command from ``INFO commandstats``, e.g. ``{"get": 10, "mget": 3}``; server-wide, so compare
two snapshots), ``cluster_hosts(url)``, ``sentinel_hosts(url) -> (hosts, service, db)``,
``sweep_prefix(client, prefix)``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from cachedeco import Registry
from tests.write_behind_support import Events
from tools import redis_servers as servers
from tools.redis_servers import (
    acommandstats,
    cluster_hosts,
    commandstats,
    parse_hostports,
    sentinel_hosts,
    sweep_prefix,
)

__all__ = [
    "SentinelPorts",
    "acommandstats",
    "cluster_nodes",
    "commandstats",
    "sentinel_hosts",
    "sweep_prefix",
]

_T = TypeVar("_T")
_TIMEOUT = 5.0  # socket timeout of the fixtures' clients


class SentinelPorts(NamedTuple):
    primary: int
    replica: int


# --- helpers -----------------------------------------------------------------------------------


def cluster_nodes(url: str) -> list[ClusterNode]:
    """The startup nodes of ``redis+cluster://h1:p1,h2:p2,...``."""
    hosts = cluster_hosts(url)
    return [ClusterNode(h, p) for h, p in hosts]  # type: ignore[no-untyped-call]


def _fail_without(*binaries: str, variable: str) -> None:
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.fail(
            f"{variable} is not set and {', '.join(missing)} is not on PATH: run scripts/test "
            "(it installs Redis and starts the servers), or install redis-server redis-tools",
            pytrace=False,
        )


def _check_answers(hosts: list[tuple[str, int]], variable: str) -> None:
    for host, port in hosts:
        try:
            probe = redis.Redis(
                host=host, port=port, socket_timeout=_TIMEOUT, retry=Retry(NoBackoff(), 1)
            )
            with probe:
                probe.ping()
        except redis.RedisError as exc:
            pytest.fail(f"{variable}: {host}:{port} does not answer: {exc}", pytrace=False)


def _start(start: Callable[[], _T], what: str) -> _T:
    try:
        return start()
    except servers.RedisStartError as exc:
        pytest.fail(f"could not start {what}: {exc}", pytrace=False)


def _cluster_client(url: str) -> RedisCluster:
    return RedisCluster(startup_nodes=cluster_nodes(url), socket_timeout=_TIMEOUT)


@contextlib.contextmanager
def _sentinel_primary(url: str) -> Iterator[redis.Redis]:
    """A client of the primary the sentinels of ``url`` name; every connection closed after."""
    hosts, service, db = sentinel_hosts(url)
    sentinel = Sentinel(hosts, socket_timeout=_TIMEOUT)  # type: ignore[no-untyped-call]
    primary: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        service, db=db, socket_timeout=_TIMEOUT
    )
    try:
        yield primary
    finally:
        primary.close()
        for client in sentinel.sentinels:
            client.close()


# --- deployments (session) ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` of a single server."""
    url = os.environ.get(servers.ENV_REDIS_URL)
    if url:
        _check_answers(parse_hostports(urlsplit(url).netloc), servers.ENV_REDIS_URL)
        yield url
        return
    _fail_without("redis-server", variable=servers.ENV_REDIS_URL)
    server = _start(servers.start_single, "a redis-server")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`` (3 primaries, no replicas)."""
    url = os.environ.get(servers.ENV_CLUSTER_URL)
    if url:
        _check_answers(cluster_hosts(url), servers.ENV_CLUSTER_URL)
        yield url
        return
    _fail_without("redis-server", "redis-cli", variable=servers.ENV_CLUSTER_URL)
    cluster = _start(servers.start_cluster, "a Redis Cluster")
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def _sentinel_deployment() -> Iterator[tuple[str, SentinelPorts]]:
    env = os.environ
    names = (
        servers.ENV_SENTINEL_URL,
        servers.ENV_SENTINEL_PRIMARY_PORT,
        servers.ENV_SENTINEL_REPLICA_PORT,
    )
    if all(env.get(name) for name in names):
        url = env[servers.ENV_SENTINEL_URL]
        _check_answers(sentinel_hosts(url)[0], servers.ENV_SENTINEL_URL)
        ports = SentinelPorts(int(env[names[1]]), int(env[names[2]]))
        yield url, ports
        return
    _fail_without("redis-server", variable=servers.ENV_SENTINEL_URL)
    setup = _start(servers.start_sentinel, "a Sentinel setup")
    try:
        yield setup.url, SentinelPorts(setup.primary_port, setup.replica_port)
    finally:
        setup.stop()


@pytest.fixture(scope="session")
def sentinel_url(_sentinel_deployment: tuple[str, SentinelPorts]) -> str:
    """``redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster/0``."""
    return _sentinel_deployment[0]


@pytest.fixture(scope="session")
def sentinel_ports(_sentinel_deployment: tuple[str, SentinelPorts]) -> SentinelPorts:
    """``(primary, replica)`` ports of the shared Sentinel setup, as started."""
    return _sentinel_deployment[1]


# --- per test ----------------------------------------------------------------------------------


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A key prefix unique to the test; its keys are swept afterwards from each deployment
    the test used (``redis_url``, ``cluster_url``, ``sentinel_url``), so no FLUSHDB."""
    value = f"t{uuid.uuid4().hex[:10]}"
    yield value
    used = set(request.fixturenames)
    if "redis_url" in used:
        with redis.Redis.from_url(request.getfixturevalue("redis_url")) as client:
            sweep_prefix(client, value)
    if "cluster_url" in used:
        with _cluster_client(request.getfixturevalue("cluster_url")) as cluster:
            sweep_prefix(cluster, value)
    if "sentinel_url" in used:
        with _sentinel_primary(request.getfixturevalue("sentinel_url")) as primary:
            sweep_prefix(primary, value)


@pytest.fixture
def redis_client(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    """``redis.Redis.from_url(redis_url)`` (bytes replies); closed after the test, and the
    keys under ``prefix`` deleted."""
    client = redis.Redis.from_url(redis_url, socket_timeout=_TIMEOUT)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def aredis_client(redis_url: str, prefix: str) -> AsyncIterator[redis.asyncio.Redis]:
    """``redis.asyncio.Redis.from_url(redis_url)``; closed after the test, keys swept."""
    client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=_TIMEOUT)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def cluster_client(cluster_url: str, prefix: str) -> Iterator[RedisCluster]:
    """A ``RedisCluster`` on ``cluster_url``; closed after the test, keys swept."""
    client = _cluster_client(cluster_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def fresh_redis() -> Iterator[servers.Server]:
    """A private redis-server for this test only (to kill, restart or misconfigure)."""
    _fail_without("redis-server", variable="fresh_redis")
    server = _start(servers.start_single, "a redis-server")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_sentinel() -> Iterator[servers.SentinelSetup]:
    """A private Sentinel setup for this test only (~2 s to start), for failover tests."""
    _fail_without("redis-server", variable="fresh_sentinel")
    setup = _start(servers.start_sentinel, "a Sentinel setup")
    try:
        yield setup
    finally:
        setup.stop()


# --- registries made by a test, closed after it -------------------------------------------------


@pytest.fixture
def make_registry() -> Iterator[Callable[..., Registry]]:
    """Registries made by the test, closed after it."""
    made: list[Registry] = []

    def make(*args: Any, **kwargs: Any) -> Registry:
        made.append(Registry(*args, **kwargs))
        return made[-1]

    yield make
    for registry in made:
        registry.close()


@pytest.fixture
async def amake_registry() -> AsyncIterator[Callable[..., Registry]]:
    """Registries made by an asyncio test, closed (``aclose``) after it on its loop."""
    made: list[Registry] = []

    def make(*args: Any, **kwargs: Any) -> Registry:
        made.append(Registry(*args, **kwargs))
        return made[-1]

    yield make
    for registry in made:
        await registry.aclose()


@pytest.fixture
def reg(make_registry: Callable[..., Registry], redis_url: str, prefix: str) -> Registry:
    """A registry on the test server under the test's prefix."""
    return make_registry(redis_url, prefix=prefix)


@pytest.fixture
def events(tmp_path: Path) -> Events:
    """A fresh SQLite events table (the database behind write-behind flushes)."""
    return Events(tmp_path / "events.db")
