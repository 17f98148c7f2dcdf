"""A ready client keeps its own timeouts and retries, and redis-py's defaults are not the
bounded ones of the clients a URL makes (7.x: no timeout, 3 retries; 8.x: 5 s, 10 retries):
the registry says so once, naming the backend, what the client does and what to give it. A
client with the advised settings, or a fake one, says nothing."""

from __future__ import annotations

import logging
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from cachedeco import Registry
from cachedeco.backends.redis.ready import ADVICE, slow_failures

BOUNDED: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "cachedeco"]


def test_a_client_without_timeouts_that_retries_is_named_once_with_the_advice(
        caplog: pytest.LogCaptureFixture) -> None:
    client = redis.Redis(port=1, socket_timeout=None, socket_connect_timeout=None,
                         retry=Retry(ExponentialBackoff(), 3))
    caplog.set_level(logging.WARNING, logger="cachedeco")
    reg = Registry(backends={"default": "memory://", "shared": client}, stats_interval=0,
                   prefix="shop")
    try:
        reg.slot("shared")
        reg.slot("shared")  # made once: said once
        assert _lines(caplog) == [
            "cachedeco[shop]: backend 'shared': the ready client has no socket_timeout and no "
            "socket_connect_timeout (a frozen or unreachable Redis holds a call until the "
            "operating system gives up) and retries a failed command up to 3 time(s) (a call "
            f"waits through them all while Redis is down); {ADVICE}"]
    finally:
        reg.close()


def test_redis_pys_default_client_is_named() -> None:
    """Whichever redis-py runs: its plain client either waits without a timeout or retries."""
    assert slow_failures(redis.Redis()).startswith("the ready client ")
    assert slow_failures(redis.asyncio.Redis()).startswith("the ready client ")


@pytest.mark.parametrize("client", [
    pytest.param(lambda: redis.Redis(**BOUNDED, retry=Retry(NoBackoff(), 0)), id="sync"),
    pytest.param(lambda: redis.asyncio.Redis(**BOUNDED, retry=AsyncRetry(NoBackoff(), 0)),
                 id="asyncio"),
    pytest.param(lambda: redis.Redis(connection_pool=redis.BlockingConnectionPool(**BOUNDED)),
                 id="pool without retry"),
    pytest.param(lambda: redis.Redis(unix_socket_path="/nonexistent", **BOUNDED,
                                     retry=Retry(NoBackoff(), 0)), id="unix socket"),
    pytest.param(lambda: redis.Redis(ssl=True, **BOUNDED, retry=Retry(NoBackoff(), 0)),
                 id="tls"),
    pytest.param(lambda: redis.Redis.from_url(
        "redis://127.0.0.1:1/0?socket_timeout=1&socket_connect_timeout=1"), id="from_url"),
    pytest.param(fakeredis.FakeRedis, id="fakeredis"),
    pytest.param(fakeredis.FakeAsyncRedis, id="fakeredis asyncio"),
])
def test_a_bounded_client_or_a_fake_one_says_nothing(
        client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cachedeco")
    reg = Registry(client(), stats_interval=0)
    try:
        assert slow_failures(reg.slot("default").spec) == ""
        assert _lines(caplog) == []
    finally:
        reg.close()


@pytest.mark.parametrize(("settings", "said"), [
    ({"socket_timeout": None, "socket_connect_timeout": 1.0}, "has no socket_timeout ("),
    ({"socket_timeout": 1.0, "socket_connect_timeout": None},
     "has no socket_connect_timeout ("),
])
def test_each_missing_timeout_is_named(settings: dict[str, Any], said: str) -> None:
    client = redis.Redis(**settings, retry=Retry(NoBackoff(), 0))
    assert said in slow_failures(client)
    assert "retries" not in slow_failures(client)


def test_an_asyncio_cluster_clients_own_retries_are_named() -> None:
    """A cluster client retries with its own policy (the nodes' connections do not)."""
    retrying = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=1, **BOUNDED,
                                                  retry=AsyncRetry(NoBackoff(), 4))
    plain = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=1, **BOUNDED,
                                               retry=AsyncRetry(NoBackoff(), 0))
    assert "retries a failed command up to 4 time(s)" in slow_failures(retrying)
    assert slow_failures(plain) == ""
