"""A Redis ACL user confined to the prefix runs every cache feature; TLS URLs pass through.

Two users are tried on the single server: the one API.md promises to support
(``~prefix:* &prefix:* +@all -@dangerous``) and the minimal command list the README gives
(:data:`MINIMAL_COMMANDS`). Both are created with ``ACL SETUSER`` and deleted after the test.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio
import redis.asyncio.connection
import redis.connection
from redis.exceptions import NoPermissionError

import cachedeco
from cachedeco import Registry
from tests.integration.test_cluster import acheck_flows, check_flows

#: What cachedeco's cache, tags, invalidation and clear() run (scripts' commands included).
MINIMAL_COMMANDS = ("+get", "+mget", "+set", "+getrange", "+pexpire", "+evalsha",
                    "+script|load", "+scan", "+unlink", "+hincrby")
API_RULES = ("+@all", "-@dangerous")


def _user_url(redis_url: str, name: str, password: str) -> str:
    parts = urlsplit(redis_url)
    return parts._replace(netloc=f"{name}:{password}@{parts.hostname}:{parts.port}").geturl()


@pytest.fixture(params=["api", "minimal"])
def user_url(request: pytest.FixtureRequest, redis_url: str, prefix: str,
             redis_client: redis.Redis) -> Iterator[str]:
    """A URL logging in as a fresh user confined to ``prefix``; the user is deleted after."""
    name, password = f"cd-{prefix}", secrets.token_hex(12)
    rules = API_RULES if request.param == "api" else ("-@all", *MINIMAL_COMMANDS)
    admin: Any = redis_client
    admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}",
                                 f"~{prefix}:*", f"&{prefix}:*", *rules)
    try:
        yield _user_url(redis_url, name, password)
    finally:
        admin.execute_command("ACL", "DELUSER", name)


def test_user_is_confined(user_url: str, prefix: str) -> None:
    with redis.Redis.from_url(user_url) as client:
        client.set(f"{prefix}:mine", b"1")
        with pytest.raises(NoPermissionError):
            client.get(f"{prefix}-outside")
        with pytest.raises(NoPermissionError):
            client.execute_command("FLUSHDB")
        client.unlink(f"{prefix}:mine")


def test_flows_sync(user_url: str, prefix: str, redis_client: redis.Redis) -> None:
    # on_error="raise": a refused command must fail the test, not fall back silently
    reg = Registry(user_url, prefix=prefix, on_error="raise")
    try:
        check_flows(reg, redis_client, prefix)
    finally:
        reg.close()


async def test_flows_async(user_url: str, prefix: str, redis_client: redis.Redis) -> None:
    reg = Registry(user_url, prefix=prefix, on_error="raise")
    try:
        await acheck_flows(reg, redis_client, prefix)
    finally:
        await reg.aclose()


def test_scripts_load_under_the_user(user_url: str, prefix: str,
                                     redis_client: redis.Redis) -> None:
    """A server that lost its script cache (restart, failover): the user reloads them."""
    reg = Registry(user_url, prefix=prefix, on_error="raise")

    @cachedeco.cached(registry=reg, tags=["t"])
    def f(x: int) -> int:
        return x

    try:
        with redis.Redis.from_url(user_url) as client:
            assert client.script_load("return 1")  # what redis-py does on NOSCRIPT
        assert f(1) == 1 and f(1) == 1
        assert f.stats().hits == 1
    finally:
        reg.close()


def test_rediss_url_passes_through_to_ssl_connections() -> None:
    reg = Registry("rediss://127.0.0.1:6390/0", ssl_cert_reqs="none")
    client = reg.slot("default").backend().client  # type: ignore[attr-defined]
    pool = client.connection_pool
    assert issubclass(pool.connection_class, redis.connection.SSLConnection)
    assert pool.connection_kwargs["ssl_cert_reqs"] == "none"
    reg.close()  # never connected


async def test_async_rediss_url_passes_through_to_ssl_connections() -> None:
    reg = Registry("rediss://127.0.0.1:6390/0")
    client = reg.slot("default").abackend().client  # type: ignore[attr-defined]
    assert issubclass(client.connection_pool.connection_class,
                      redis.asyncio.connection.SSLConnection)
    await reg.aclose()
