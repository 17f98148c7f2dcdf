"""Backend URLs without a server: cluster and sentinel URLs parse (hosts, credentials,
service, db), malformed ones are configuration errors, and ``rediss://`` reaches redis-py's
SSL connections with its options."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
import redis.asyncio.connection
import redis.connection

from cachedeco import Registry
from cachedeco.backends.redis import urls
from cachedeco.errors import ConfigurationError


def test_cluster_and_sentinel_urls_parse() -> None:
    target = urls.parse_url("cluster", "redis+cluster://u:p%40ss@h1:7000,[::1]:7001,h3")
    assert target.hosts == (("h1", 7000), ("::1", 7001), ("h3", 6379))
    assert (target.username, target.password) == ("u", "p@ss")
    target = urls.parse_url("sentinel", "redis+sentinel://s1:26380,s2/mymaster/2")
    assert target.hosts == (("s1", 26380), ("s2", 26379))
    assert (target.service, target.db, target.password) == ("mymaster", 2, None)


@pytest.mark.parametrize("kind, url", [
    ("cluster", "redis+cluster://h1:7000,h2:x"),
    ("cluster", "redis+cluster://h1:7000,"),
    ("cluster", "redis+cluster://h1:7000/3"),
    ("cluster", "redis+cluster://h1:7000?ssl=true"),
    ("sentinel", "redis+sentinel://s1:26379"),
    ("sentinel", "redis+sentinel://s1:26379/mymaster/x"),
    ("sentinel", "redis+sentinel://s1:99999/mymaster"),
])
def test_malformed_urls_are_configuration_errors(kind: str, url: str) -> None:
    with pytest.raises(ConfigurationError):
        urls.parse_url(kind, url)
    with pytest.raises(ConfigurationError):  # when the registry is built, or first used
        Registry(url, on_error="raise").slot("default").backend()


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


@pytest.mark.parametrize("url, options, says", [
    ("redis://127.0.0.1:6390/0", {"ssl_ca_certs": "ca.pem"}, "TLS options need rediss://"),
    ("redis://127.0.0.1:6390/0", {"ssl": True}, "leave ssl out"),
    ("rediss://127.0.0.1:6390/0", {"ssl": True}, "leave ssl out"),
    ("redis://127.0.0.1:6390/0", {"single_connection_client": True}, "single_connection_client"),
    ("unix:///tmp/redis.sock", {"ssl_certfile": "c.pem"}, "TLS options need rediss://"),
    ("redis+cluster://127.0.0.1:7000", {"ssl_ca_certs": "ca.pem"}, "need ssl=True"),
    ("redis+cluster://127.0.0.1:7000", {"unix_socket_path": "/tmp/s"}, "unix_socket_path"),
    ("redis+sentinel://127.0.0.1:26379/mymaster", {"ssl_keyfile": "k.pem"}, "need ssl=True"),
    ("redis://127.0.0.1:6390/0", {"sentinel_kwargs": {"password": "p"}}, "sentinel:// URL"),
    ("redis+sentinel://127.0.0.1:26379/mymaster", {"sentinel_kwargs": "p"}, "a dict"),
])
def test_options_the_backends_connections_cannot_take_are_refused_at_once(
        url: str, options: dict[str, object], says: str) -> None:
    # each would have made every call fail on its first connection (a TypeError)
    with pytest.raises(ConfigurationError, match=says):
        Registry(url, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("url, options", [
    ("rediss://127.0.0.1:6390/0", {"ssl_ca_certs": "ca.pem", "ssl_check_hostname": False}),
    ("redis://127.0.0.1:6390/0", {"client_name": "app", "socket_keepalive": True}),
    ("redis+cluster://127.0.0.1:7000", {"ssl": True, "ssl_ca_certs": "ca.pem"}),
    ("redis+sentinel://127.0.0.1:26379/mymaster", {"ssl": True, "ssl_cert_reqs": "none"}),
    ("redis+sentinel://127.0.0.1:26379/mymaster", {"sentinel_kwargs": {"password": "p"}}),
])
def test_options_the_backends_connections_take_are_accepted(
        url: str, options: dict[str, object]) -> None:
    Registry(url, **options).close()  # type: ignore[arg-type]  # never connected
