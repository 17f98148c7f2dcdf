"""The Registry: settings validated into ConfigurationError, one-flavour clients, lazy binding,
configure() replacing settings, and the public surface of the package. No server needed."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio

import cachedeco
from cachedeco import (
    BackendError,
    CacheError,
    ConfigurationError,
    LockTimeout,
    Registry,
    SerializationError,
    cached,
)

API_NAMES = [
    "BackendError",
    "CacheError",
    "ConfigurationError",
    "LockTimeout",
    "MISS",
    "Registry",
    "SerializationError",
    "Stats",
    "ainvalidate_tags",
    "cached",
    "cached_many",
    "configure",
    "disabled",
    "invalidate_tags",
    "lock",
    "registry",
    "write_behind",
    "write_through",
]


@pytest.fixture
def default_registry() -> Iterator[Registry]:
    """The default registry, put back to its defaults (memory://) and closed after the
    test."""
    yield cachedeco.registry
    cachedeco.configure("memory://")
    cachedeco.registry.close()


# --- the public surface ----------------------------------------------------------------------


def test_all_is_sorted_and_exactly_the_api_names() -> None:
    assert cachedeco.__all__ == sorted(cachedeco.__all__)
    assert cachedeco.__all__ == API_NAMES
    for name in API_NAMES:
        assert hasattr(cachedeco, name), name


def test_error_hierarchy() -> None:
    for error in (BackendError, SerializationError, ConfigurationError, LockTimeout):
        assert issubclass(error, CacheError)
    assert issubclass(SerializationError, TypeError)
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(LockTimeout, TimeoutError)


def test_default_registry_is_a_registry() -> None:
    assert isinstance(cachedeco.registry, Registry)
    assert isinstance(cachedeco.registry.stats(), cachedeco.Stats)


# --- settings ----------------------------------------------------------------------------------

BAD_TTLS = [0, -1, -0.5, math.nan, math.inf, -math.inf, "x", "60", True, False, None]


@pytest.mark.parametrize("ttl", BAD_TTLS, ids=repr)
def test_bad_ttl_is_a_configuration_error(ttl: Any) -> None:
    with pytest.raises(ConfigurationError):
        Registry(ttl=ttl)
    with pytest.raises(ConfigurationError):
        Registry().configure(ttl=ttl)


@pytest.mark.parametrize("ttl", [0.5, 1, 60, 3600.0])
def test_good_ttl_is_kept(ttl: float) -> None:
    assert Registry(ttl=ttl).ttl == ttl


@pytest.mark.parametrize("jitter", [1, 1.0, 1.5, -0.1, -1, math.nan, math.inf, "0.1", True],
                         ids=repr)
def test_jitter_outside_zero_one_is_a_configuration_error(jitter: Any) -> None:
    with pytest.raises(ConfigurationError):
        Registry(jitter=jitter)


@pytest.mark.parametrize("jitter", [0, 0.0, 0.1, 0.999])
def test_jitter_inside_zero_one_is_accepted(jitter: float) -> None:
    assert Registry(jitter=jitter).jitter == jitter


@pytest.mark.parametrize("on_error", ["ignore", "Fallback", "", None, "raise "])
def test_unknown_on_error_is_a_configuration_error(on_error: Any) -> None:
    with pytest.raises(ConfigurationError):
        Registry(on_error=on_error)


@pytest.mark.parametrize("on_error", ["fallback", "raise"])
def test_known_on_error(on_error: str) -> None:
    assert Registry(on_error=on_error).on_error == on_error


@pytest.mark.parametrize("url", [
    "memcached://localhost:11211",
    "http://localhost:6379",
    "localhost:6379",
    "mongodb://h/0",
    "redis+foo://h:1",
])
def test_unknown_url_scheme_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        Registry(url)
    with pytest.raises(ConfigurationError):
        Registry(backends={"other": url})


@pytest.mark.parametrize("url", [
    "redis://",
    "redis://localhost:99999/0",
    "redis://localhost:notaport/0",
    "redis://[::1/0",
    "redis://localhost/db",
    "rediss://:6379/0",
])
def test_malformed_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        Registry(url)


def test_a_url_opens_no_connection_at_construction() -> None:
    reg = Registry("redis://127.0.0.1:1/0", backends={"b": "rediss://127.0.0.1:1/2"})
    assert reg.prefix == "cachedeco"
    reg.close()


def test_pickle_requires_a_secret() -> None:
    with pytest.raises(ConfigurationError, match="secret"):
        Registry(serializer="pickle")
    with pytest.raises(ConfigurationError, match="secret"):
        Registry(serializer="pickle", secret="")
    assert Registry(serializer="pickle", secret="s3cret" * 6).serializer == "pickle"
    assert Registry(serializer="pickle", secret=b"s3cret" * 6).serializer == "pickle"


def test_unknown_serializer_name_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        Registry(serializer="yaml")


def test_unknown_backend_name_is_a_configuration_error_at_decoration() -> None:
    reg = Registry(backends={"local": "memory://"})
    with pytest.raises(ConfigurationError, match="nope"):
        cached(registry=reg, backend="nope")
    with pytest.raises(ConfigurationError, match="nope"):
        reg.invalidate_tags("t", backend="nope")
    with pytest.raises(ConfigurationError, match="nope"):
        reg.invalidate_pattern("*", backend="nope")


def test_unknown_backend_name_on_the_default_registry_fails_at_the_call(
        default_registry: Registry) -> None:
    @cached(backend="nowhere")
    def f(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="nowhere"):
        f(1)
    default_registry.configure("memory://", backends={"nowhere": "memory://"})
    assert f(1) == 1  # lazily bound: naming the backend later makes it work


def test_named_backends_are_separate() -> None:
    reg = Registry(backends={"local": "memory://"})
    calls: list[str] = []

    @cached(registry=reg)
    def default(x: int) -> int:
        calls.append("default")
        return x

    @cached(registry=reg, backend="local")
    def local(x: int) -> int:
        calls.append("local")
        return x

    assert (default(1), default(1), local(1), local(1)) == (1, 1, 1, 1)
    assert calls == ["default", "local"]
    reg.clear(backend="local")
    assert (default(1), local(1)) == (1, 1)
    assert calls == ["default", "local", "local"]


def test_bad_tags_and_patterns_are_refused() -> None:
    reg = Registry()
    reg.invalidate_tags()  # nothing to do
    for bad in ("", None, 3):
        with pytest.raises(ConfigurationError):
            reg.invalidate_tags("ok", bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"separate arguments: invalidate_tags\(\*tags"):
        reg.invalidate_tags(["a", "b"])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        reg.invalidate_pattern("")


def test_decode_responses_client_is_refused() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, decode_responses=True)
    with pytest.raises(ConfigurationError):
        Registry(client)
    client.close()


def test_unsupported_backend_object_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Registry(object())
    with pytest.raises(ConfigurationError):
        Registry(42)


def test_failed_configure_leaves_every_setting_unchanged() -> None:
    reg = Registry(prefix="before", ttl=100, jitter=0.2)
    for bad in ({"ttl": 0}, {"jitter": 2}, {"on_error": "?"}, {"backend": "nope://x"}):
        with pytest.raises(ConfigurationError):
            reg.configure(prefix="after", ttl=bad.get("ttl", 50),
                          jitter=bad.get("jitter", 0.3), on_error=bad.get("on_error", "raise"),
                          backend=bad.get("backend", "memory://"))
        assert (reg.prefix, reg.ttl, reg.jitter, reg.on_error) == (
            "before", 100, 0.2, "fallback"), bad


# --- one-flavour clients -------------------------------------------------------------------------


async def test_sync_client_only_refuses_async_functions() -> None:
    client = fakeredis.FakeRedis()
    reg = Registry(client, prefix="one")

    @cached(registry=reg)
    def sync_f(x: int) -> int:
        return x * 2

    @cached(registry=reg)
    async def async_f(x: int) -> int:
        return x * 2

    assert sync_f(2) == 4
    with pytest.raises(ConfigurationError, match=r"(?i)sync") as info:
        await async_f(2)
    assert "async" in str(info.value).lower()
    with pytest.raises(ConfigurationError, match=r"(?i)sync"):
        await reg.ainvalidate_tags("t")
    reg.close()
    client.close()


async def test_async_client_only_refuses_sync_functions() -> None:
    client = fakeredis.FakeAsyncRedis()
    reg = Registry(client, prefix="one")

    @cached(registry=reg)
    def sync_f(x: int) -> int:
        return x * 2

    @cached(registry=reg)
    async def async_f(x: int) -> int:
        return x * 2

    assert await async_f(2) == 4
    with pytest.raises(ConfigurationError, match=r"(?i)asyncio|async") as info:
        sync_f(2)
    assert "sync" in str(info.value).lower()
    with pytest.raises(ConfigurationError, match=r"(?i)async"):
        reg.invalidate_tags("t")
    await client.aclose()


async def test_real_client_flavours_are_checked_before_any_io() -> None:
    sync_client = redis.Redis(host="127.0.0.1", port=1)
    async_client = redis.asyncio.Redis(host="127.0.0.1", port=1)
    on_sync, on_async = Registry(sync_client), Registry(async_client)

    @cached(registry=on_sync)
    async def a(x: int) -> int:
        return x

    @cached(registry=on_async)
    def s(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="sync client"):
        await a(1)
    with pytest.raises(ConfigurationError, match="asyncio client"):
        s(1)
    on_sync.close()
    await on_async.aclose()
    sync_client.close()
    await async_client.aclose()


# --- lazy binding and configure() --------------------------------------------------------------


def test_decorate_first_configure_later(default_registry: Registry) -> None:
    calls: list[int] = []

    @cached
    def f(x: int) -> int:
        calls.append(x)
        return x

    assert f.key(1).startswith("cachedeco:")
    client = fakeredis.FakeRedis()
    returned = cachedeco.configure(client, prefix="lazy", ttl=30)
    assert returned is cachedeco.registry is default_registry
    assert f.key(1).startswith("lazy:")
    assert (f(1), f(1)) == (1, 1)
    assert calls == [1]
    assert client.exists(f.key(1)) == 1  # the value went to the configured backend
    client.close()


async def test_lazy_binding_for_async_functions(default_registry: Registry) -> None:
    calls: list[int] = []

    @cached(ttl=5)
    async def f(x: int) -> int:
        calls.append(x)
        return x

    client = fakeredis.FakeAsyncRedis()
    cachedeco.configure(client, prefix="alazy")
    assert (await f(1), await f(1)) == (1, 1)
    assert calls == [1]
    assert await client.exists("alazy:" + f.key(1).split(":", 1)[1]) == 1
    await cachedeco.ainvalidate_tags("unused")
    await client.aclose()


def test_configure_replaces_settings(default_registry: Registry) -> None:
    cachedeco.configure("memory://", prefix="first", ttl=10, jitter=0.5, on_error="raise")
    reg = cachedeco.configure("memory://", prefix="second")
    assert (reg.prefix, reg.ttl, reg.jitter, reg.on_error) == ("second", 3600, 0.1, "fallback")


def test_configure_rebinds_functions_to_the_new_backend(default_registry: Registry) -> None:
    calls: list[int] = []

    @cached
    def f(x: int) -> int:
        calls.append(x)
        return x

    cachedeco.configure("memory://", prefix="one")
    f(1)
    f(1)
    cachedeco.configure("memory://", prefix="two")  # a fresh memory backend: empty
    assert f.key(1).startswith("two:")
    f(1)
    f(1)
    assert calls == [1, 1]


def test_registry_stats_sum_their_functions() -> None:
    reg = Registry()

    @cached(registry=reg)
    def f(x: int) -> int:
        return x

    @cached(registry=reg)
    def g(x: int) -> int:
        return x

    for x in (1, 1, 2):
        f(x)
    g(1)
    stats = reg.stats()
    assert (stats.hits, stats.misses, stats.loads) == (1, 3, 3)
    assert f.stats().hits == 1 and g.stats().misses == 1


def test_registry_context_manager_closes() -> None:
    with Registry("memory://", prefix="ctx") as reg:
        @cached(registry=reg)
        def f(x: int) -> int:
            return x

        assert f(3) == 3


async def test_registry_async_context_manager_closes() -> None:
    async with Registry("memory://", prefix="actx") as reg:
        @cached(registry=reg)
        async def f(x: int) -> int:
            await asyncio.sleep(0)
            return x

        assert await f(3) == 3


def test_unknown_registry_option_is_a_configuration_error_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="claim_afterr"):
        Registry("redis://127.0.0.1:6379/0", claim_afterr=1)


def test_redis_connection_keywords_pass_through() -> None:
    reg = Registry("redis://127.0.0.1:6379/0", password="s3cret", client_name="app",
                   health_check_interval=5)
    kwargs = reg.slot("default").backend().client.connection_pool.connection_kwargs  # type: ignore[attr-defined]
    assert (kwargs["password"], kwargs["client_name"], kwargs["health_check_interval"]) == (
        "s3cret", "app", 5)
    reg.close()
