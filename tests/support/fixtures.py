"""The fixtures ``tests/conftest.py`` wires in: deployments, a prefix per test, clients,
registries made by a test, the ``deployment`` a test runs on, and the events table.

Session: ``redis_url``, ``cluster_url``, ``sentinel_url`` (str) and ``sentinel_ports``
(``(primary, replica)``) come from the variables ``python -m tools.servers up`` writes
(``scripts/test`` exports them); when one is missing the session starts that deployment itself
(so ``.venv/bin/pytest tests/...`` works on a machine with redis-server), and fails when it
cannot: an integration test is never skipped.

Per test: ``prefix`` (``"t" + 10 hex digits``; afterwards its keys are swept with SCAN + UNLINK
from every deployment the test used), ``redis_client`` / ``aredis_client`` /
``cluster_client`` / ``sentinel_primary`` (plain clients, bytes replies), ``make_registry`` /
``amake_registry`` (``Registry(...)`` under the test's prefix unless given one, closed — on the
test's loop for the asyncio one — after the test), ``deployment`` (a
:class:`~tests.support.deployments.Deployment`; see :func:`pytest_generate_tests`), ``reg``
(a registry on that deployment, with default settings),
``fresh_redis`` / ``fresh_sentinel`` (private deployments a test may break) and ``events``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from cachedeco import Registry
from tests.support.commands import commandstats, sweep_prefix
from tests.support.deployments import ALL, TIMEOUT, Deployment, hosts
from tests.support.deployments import cluster_client as open_cluster
from tests.support.deployments import sentinel_primary as open_primary
from tests.support.events import Events
from tools.servers import (
    Group,
    RedisStartError,
    SentinelSetup,
    Server,
    start_cluster,
    start_sentinel,
    start_single,
)
from tools.servers.cli import (
    ENV_CLUSTER_URL,
    ENV_REDIS_URL,
    ENV_SENTINEL_PRIMARY_PORT,
    ENV_SENTINEL_REPLICA_PORT,
    ENV_SENTINEL_URL,
)

_T = TypeVar("_T")


class SentinelPorts(NamedTuple):
    primary: int
    replica: int


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a test using ``deployment`` on every deployment, or on those its closest
    ``@pytest.mark.deployments(...)`` names (unless it parametrizes ``deployment`` itself)."""
    if "deployment" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        if "deployment" in (names.replace(" ", "").split(",") if isinstance(names, str)
                            else names):
            return
    marker = metafunc.definition.get_closest_marker("deployments")
    metafunc.parametrize("deployment", marker.args if marker else ALL, indirect=True)


# --- deployments (session) ---------------------------------------------------------------------


def _fail_without(*binaries: str, variable: str) -> None:
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.fail(
            f"{variable} is not set and {', '.join(missing)} is not on PATH: run scripts/test "
            "(it installs Redis and starts the servers), or install redis-server redis-tools",
            pytrace=False)


def _check_answers(addresses: list[tuple[str, int]], variable: str) -> None:
    for host, port in addresses:
        try:
            with redis.Redis(host=host, port=port, socket_timeout=TIMEOUT,
                             retry=Retry(NoBackoff(), 1)) as probe:
                probe.ping()
        except redis.RedisError as exc:
            pytest.fail(f"{variable}: {host}:{port} does not answer: {exc}", pytrace=False)


def _start(start: Callable[[], _T], what: str) -> _T:
    try:
        return start()
    except RedisStartError as exc:
        pytest.fail(f"could not start {what}: {exc}", pytrace=False)


_OPEN: dict[str, Callable[[str], contextlib.AbstractContextManager[Any]]] = {
    "redis_url": lambda url: redis.Redis.from_url(url, socket_timeout=TIMEOUT),
    "cluster_url": open_cluster,
    "sentinel_url": open_primary,
}


@contextlib.contextmanager
def _watched(name: str, url: str) -> Iterator[str]:
    """Yield ``url``; fail the session if anything ran KEYS, FLUSHDB or FLUSHALL there meanwhile
    (tests sweep their prefix with SCAN instead: see tests/deploy/test_servers.py)."""
    with _OPEN[name](url) as client:
        before = commandstats(client)
    yield url
    with _OPEN[name](url) as client:
        after = commandstats(client)
    for command in ("keys", "flushdb", "flushall"):
        assert after.get(command, 0) == before.get(command, 0), f"{command} ran on {url}"


@contextlib.contextmanager
def _shared(name: str, variable: str, start: Callable[[], Group],
            *binaries: str) -> Iterator[tuple[str, Any]]:
    """``(url, None)`` of the deployment ``$variable`` names (checked to answer), else
    ``(url, group)`` of one started for the session; watched (:func:`_watched`) either way."""
    url = os.environ.get(variable)
    with contextlib.ExitStack() as stack:
        started = None
        if url:
            _check_answers(hosts(url), variable)
        else:
            _fail_without(*binaries, variable=variable)
            started = stack.enter_context(_start(start, f"the {name.removesuffix('_url')}"))
            url = started.url
        stack.enter_context(_watched(name, url))
        yield url, started


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` of a single server."""
    with _shared("redis_url", ENV_REDIS_URL, start_single, "redis-server") as (url, _):
        yield url


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`` (3 primaries, no replicas)."""
    with _shared("cluster_url", ENV_CLUSTER_URL, start_cluster, "redis-server",
                 "redis-cli") as (url, _):
        yield url


@pytest.fixture(scope="session")
def _sentinel_deployment() -> Iterator[tuple[str, SentinelPorts]]:
    with _shared("sentinel_url", ENV_SENTINEL_URL, start_sentinel, "redis-server") as (
            url, setup):
        if setup is not None:
            yield url, SentinelPorts(setup.primary_port, setup.replica_port)
            return
        ports = [os.environ.get(name) for name in (ENV_SENTINEL_PRIMARY_PORT,
                                                   ENV_SENTINEL_REPLICA_PORT)]
        if not all(ports):
            pytest.fail(f"{ENV_SENTINEL_URL} is set but not {ENV_SENTINEL_PRIMARY_PORT} and "
                        f"{ENV_SENTINEL_REPLICA_PORT}", pytrace=False)
        yield url, SentinelPorts(*(int(p or 0) for p in ports))


@pytest.fixture(scope="session")
def sentinel_url(_sentinel_deployment: tuple[str, SentinelPorts]) -> str:
    """``redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster/0``."""
    return _sentinel_deployment[0]


@pytest.fixture(scope="session")
def sentinel_ports(_sentinel_deployment: tuple[str, SentinelPorts]) -> SentinelPorts:
    """``(primary, replica)`` ports of the shared Sentinel setup, as started."""
    return _sentinel_deployment[1]


# --- per test ----------------------------------------------------------------------------------

class _Sweepers:
    """One client per shared deployment, opened when a test first uses it, for sweeping."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._clients: dict[str, Any] = {}

    def sweep(self, name: str, url: str, prefix: str) -> None:
        if name not in self._clients:
            self._clients[name] = self._stack.enter_context(_OPEN[name](url))
        sweep_prefix(self._clients[name], prefix)

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="session")
def _sweepers() -> Iterator[_Sweepers]:
    sweepers = _Sweepers()
    yield sweepers
    sweepers.close()


@pytest.fixture
def prefix(request: pytest.FixtureRequest, _sweepers: _Sweepers) -> Iterator[str]:
    """A key prefix unique to the test; its keys are swept afterwards from each deployment
    the test used (``redis_url``, ``cluster_url``, ``sentinel_url``), so no FLUSHDB."""
    value = f"t{uuid.uuid4().hex[:10]}"
    yield value
    for name in _OPEN:
        if name in request.fixturenames:
            _sweepers.sweep(name, request.getfixturevalue(name), value)


@pytest.fixture
def redis_client(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    """A ``redis.Redis`` of the single server (bytes replies), closed after the test."""
    with redis.Redis.from_url(redis_url, socket_timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
async def aredis_client(redis_url: str, prefix: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A ``redis.asyncio.Redis`` of the single server, closed after the test."""
    client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=TIMEOUT)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def cluster_client(cluster_url: str, prefix: str) -> Iterator[RedisCluster]:
    """A ``RedisCluster`` of the shared cluster, closed after the test."""
    with open_cluster(cluster_url) as client:
        yield client


@pytest.fixture
def sentinel_primary(sentinel_url: str, prefix: str) -> Iterator[redis.Redis]:
    """A plain client of the primary the shared setup's sentinels name now."""
    with open_primary(sentinel_url) as client:
        yield client


@pytest.fixture
def deployment(request: pytest.FixtureRequest, prefix: str) -> Iterator[Deployment]:
    """The deployment this run of the test is on (a parameter: see pytest_generate_tests)."""
    name: str = request.param
    url = "memory://" if name == "memory" else request.getfixturevalue(f"{name}_url")
    chosen = Deployment(name, url)
    try:
        yield chosen
    finally:
        chosen.close()


@pytest.fixture
def fresh_redis() -> Iterator[Server]:
    """A private redis-server for this test only (to kill, pause, restart or misconfigure)."""
    _fail_without("redis-server", variable="fresh_redis")
    with _start(start_single, "a redis-server") as server:
        yield server


@pytest.fixture
def fresh_sentinel() -> Iterator[SentinelSetup]:
    """A private Sentinel setup for this test only (~2 s to start), for failover tests."""
    _fail_without("redis-server", variable="fresh_sentinel")
    with _start(start_sentinel, "a Sentinel setup") as setup:
        yield setup


# --- registries made by a test, closed after it -------------------------------------------------


def _factory(prefix: str, made: list[Registry]) -> Callable[..., Registry]:
    def make(*args: Any, **settings: Any) -> Registry:
        """``Registry(*args, **settings)``, under the test's prefix unless one is given."""
        settings.setdefault("prefix", prefix)
        made.append(Registry(*args, **settings))
        return made[-1]

    return make


@pytest.fixture
def make_registry(prefix: str) -> Iterator[Callable[..., Registry]]:
    """Registries made by the test (under its prefix by default), closed after it."""
    made: list[Registry] = []
    yield _factory(prefix, made)
    for registry in made:
        registry.close()


@pytest.fixture
async def amake_registry(prefix: str) -> AsyncIterator[Callable[..., Registry]]:
    """Registries made by an asyncio test, closed (``aclose``) after it on its loop."""
    made: list[Registry] = []
    yield _factory(prefix, made)
    for registry in made:
        await registry.aclose()


@pytest.fixture
def reg(deployment: Deployment, amake_registry: Callable[..., Registry]) -> Registry:
    """A registry on the test's deployment, under its prefix, with default settings; closed
    after the test (``aclose``, on the test's loop when it is an asyncio test)."""
    return amake_registry(deployment.url)


@pytest.fixture
def events(tmp_path: Path) -> Events:
    """A fresh SQLite events table (the database behind write-behind flushes)."""
    return Events(tmp_path / "events.db")
