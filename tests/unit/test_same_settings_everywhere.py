"""A setting that would only fail on another backend fails on every backend: checked on
``memory://`` (and without connecting for URLs), when the registry is built, when a
decorator is applied to a known registry, or when the function binds to the default one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import cachedeco
from cachedeco import ConfigurationError, Registry

KEY = "k" * 32


@pytest.fixture
def default_memory() -> Iterator[Registry]:
    """The default registry on memory:// without secret or key; reset afterwards."""
    yield cachedeco.configure("memory://")
    cachedeco.configure("memory://")


# --- decorators --------------------------------------------------------------------------------


def same(x: object) -> object:
    """A function to decorate (a lambda has no name of its own: refused without key=)."""
    return x


def test_pickle_without_a_secret_fails_at_decoration_on_a_known_registry() -> None:
    reg = Registry("memory://")
    with pytest.raises(ConfigurationError, match="secret"):
        @reg.cached(serializer="pickle")
        def f(x: int) -> int:
            return x
    signed = Registry("memory://", secret="s" * 32)

    @signed.cached(serializer="pickle")
    def g(x: int) -> int:
        return x

    assert g(1) == 1


def test_pickle_without_a_secret_fails_at_binding_to_the_default_registry(
        default_memory: Registry) -> None:
    @cachedeco.cached(serializer="pickle")
    def f(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="secret"):
        f(1)
    cachedeco.configure("memory://", secret="s" * 32)
    assert f(1) == 1


def test_sensitive_without_a_key_fails_at_decoration_on_a_known_registry() -> None:
    reg = Registry("memory://")
    with pytest.raises(ConfigurationError, match="encryption_key"):
        @reg.cached(sensitive=True)
        def f(x: int) -> int:
            return x
    with pytest.raises(ConfigurationError, match="encryption_key"):
        @reg.write_through(key="k:{x}", sensitive=True)
        def w(x: int) -> int:
            return x
    with pytest.raises(ConfigurationError, match="encryption_key"):
        @reg.write_behind(key="k:{x}", flush=print, sensitive=True)
        def b(x: int) -> int:
            return x


def test_sensitive_without_a_key_fails_at_binding_to_the_default_registry(
        default_memory: Registry) -> None:
    @cachedeco.cached(sensitive=True)
    def f(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="encryption_key"):
        f(1)
    with pytest.raises(ConfigurationError, match="encryption_key"):
        f.key(1)
    cachedeco.configure("memory://", encryption_key=KEY)
    assert f(1) == 1 and "!" in f.key(1)


def test_a_sensitive_writer_needs_a_sensitive_target() -> None:
    reg = Registry("memory://", encryption_key=KEY)

    @reg.cached
    def plain(x: int) -> int:
        return x

    @reg.cached(sensitive=True)
    def secret(x: int) -> int:
        return x

    for decorator in (reg.write_through, lambda t, **kw: reg.write_behind(t, flush=print, **kw)):
        with pytest.raises(ConfigurationError, match="not sensitive"):
            decorator(plain, sensitive=True)(lambda x: x)
        decorator(secret)(lambda x: x)  # the target decides: its entries are encrypted


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_sensitive_is_a_bool(value: Any) -> None:
    reg = Registry("memory://", encryption_key=KEY)
    for decorator in (reg.cached, lambda **kw: reg.write_through(key="k", **kw),
                      lambda **kw: reg.write_behind(key="k", flush=print, **kw)):
        with pytest.raises(ConfigurationError, match="sensitive must be True or False"):
            decorator(sensitive=value)


@pytest.mark.parametrize("value", ["yes", 10, None])
def test_lock_and_cache_none_are_bools(value: Any) -> None:
    # lock=10 (a timeout meant for lock_timeout) must not turn the lock on silently
    reg = Registry("memory://")
    for option, decorator in (("lock", reg.cached), ("cache_none", reg.cached),
                              ("lock", lambda **kw: reg.cached_many(key="k:{id}", **kw))):
        with pytest.raises(ConfigurationError, match=f"{option} must be True or False"):
            decorator(**{option: value})


def test_the_default_backend_is_given_once() -> None:
    with pytest.raises(ConfigurationError, match="given twice"):
        Registry("redis://127.0.0.1:6379/0", backends={"default": "memory://"})
    with pytest.raises(ConfigurationError, match="given twice"):
        Registry("memory://").configure("redis://127.0.0.1:6379/0",
                                        backends={"default": "memory://?maxsize=5"})
    one = Registry(backends={"default": "memory://?maxsize=5", "local": "memory://"})
    same = Registry("memory://?maxsize=5", backends={"default": "memory://?maxsize=5"})
    assert (sorted(one.backend_names()), same.backend_names()) == (["default", "local"],
                                                                    ["default"])
    one.close()
    same.close()


def test_a_pickle_secret_has_32_bytes_at_least() -> None:
    for short in ("s3cret", b"k" * 31, "é" * 15):  # 31 and 30 bytes
        with pytest.raises(ConfigurationError, match="at least 32 bytes"):
            Registry("memory://", serializer="pickle", secret=short)
        with pytest.raises(ConfigurationError, match="at least 32 bytes"):
            Registry("memory://", secret=short).cached(serializer="pickle")(same)
    Registry("memory://", serializer="pickle", secret="é" * 16).close()  # 32 bytes in UTF-8


# --- backend URLs, checked without connecting --------------------------------------------------


@pytest.mark.parametrize(("url", "option"), [
    ("redis://127.0.0.1:6379/0?socket_timeout=abc", "socket_timeout"),
    ("redis://127.0.0.1:6379/0?socket_timeout=0", "socket_timeout"),
    ("redis://127.0.0.1:6379/0?socket_connect_timeout=-1", "socket_connect_timeout"),
    ("redis://127.0.0.1:6379/0?max_connections=0", "max_connections"),
    ("redis://127.0.0.1:6379/0?health_check_interval=soon", "health_check_interval"),
    ("redis://127.0.0.1:6379/0?no_such_option=1", "no_such_option"),
    ("redis://127.0.0.1:6379/0?decode_responses=false", "decode_responses"),
    ("redis://127.0.0.1:6379/0?ssl_cert_reqs=none", "ssl_cert_reqs"),  # not a TLS URL
    ("rediss://127.0.0.1:6379/0?ssl_cert_reqs=sometimes", "ssl_cert_reqs"),
    ("rediss://127.0.0.1:6379/0?ssl_check_hostname=1&protocol=two", "protocol"),
    ("redis://127.0.0.1:6379/0?protocol=4", "protocol"),
    ("unix:///tmp/redis.sock?db=x", "db"),
    ("redis+cluster://127.0.0.1:7000?socket_timeout=1", "socket_timeout"),
    ("redis+sentinel://127.0.0.1:26379/mymaster?password=x", "password"),
    ("memory://?maxsize=0", "maxsize"),
    ("memory://?maxsize=many", "maxsize"),
    ("memory://?max_size=10", "max_size"),
])
def test_a_bad_url_option_is_a_configuration_error_naming_it(url: str, option: str) -> None:
    with pytest.raises(ConfigurationError, match=option):
        Registry(url)
    with pytest.raises(ConfigurationError, match=option):
        Registry("memory://", backends={"other": url})


@pytest.mark.parametrize("url", ["memory://redis-host:6379/0", "memory://x", "memory:///path",
                                 "memory://user:pw@h"])
def test_a_memory_url_that_names_a_place_is_refused(url: str) -> None:
    """Meant for a server: never a silent in-process cache (the password stays out)."""
    with pytest.raises(ConfigurationError, match="names a place") as info:
        Registry(url)
    assert "pw" not in str(info.value)
    Registry("memory:///").close()  # an empty path is no place


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0?socket_timeout=2.5&socket_connect_timeout=1&health_check_interval=5",
    "redis://:pw@127.0.0.1:6379/1?client_name=app&retry_on_timeout=yes&max_connections=8",
    "rediss://127.0.0.1:6380/0?ssl_cert_reqs=none&ssl_check_hostname=false",
    "unix:///tmp/redis.sock?db=2&socket_timeout=1",
    "memory://?maxsize=5",
])
def test_good_url_options_are_accepted_without_connecting(url: str) -> None:
    Registry(url)


@pytest.mark.parametrize("url", ["redis+cluster://127.0.0.1:abc", "redis+cluster://,",
                                 "redis+sentinel://127.0.0.1:26379", "redis+sentinel://h:1/s/x"])
def test_cluster_and_sentinel_urls_are_checked_when_the_registry_is_built(url: str) -> None:
    with pytest.raises(ConfigurationError):
        Registry(url)


# --- backend options, checked on every backend -------------------------------------------------


@pytest.mark.parametrize(("option", "value"), [
    ("max_connections", "64"), ("max_connections", 0), ("maxsize", -1), ("maxsize", True),
    ("breaker_threshold", "five"), ("breaker_threshold", 0), ("breaker_cooldown", "soon"),
    ("breaker_cooldown", float("nan")), ("decode_responses", True), ("pool_timeout", -1),
])
def test_a_bad_backend_option_fails_on_memory_too(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=option):
        Registry("memory://", **{option: value})


# --- decorator options, checked when the decorator is applied (whatever the backend) ------------


class _DumpsOnly:
    def dumps(self, value: object) -> bytes:
        return b""


@pytest.mark.parametrize(("options", "match"), [
    ({"lock": True, "lock_timeout": -1}, "lock_timeout"),
    ({"lock": True, "lock_timeout": float("inf")}, "lock_timeout"),
    ({"jitter": 1.5}, "jitter"),
    ({"jitter": "0.1"}, "jitter"),
    ({"condition": 42}, "condition"),
    ({"tags": 5}, "tags"),
    ({"tags": "users"}, "tags"),
    ({"ignore": 5}, "ignore"),
    ({"serializer": _DumpsOnly()}, "loads"),
    ({"serializer": "yaml"}, "serializer"),
])
def test_a_bad_decorator_option_fails_at_decoration_on_memory(
        options: dict[str, Any], match: str) -> None:
    reg = Registry("memory://")
    with pytest.raises(ConfigurationError, match=match):
        reg.cached(**options)(same)


def test_a_bad_writer_option_fails_at_decoration_on_memory() -> None:
    reg = Registry("memory://")
    with pytest.raises(ConfigurationError, match="invalidate"):
        reg.write_through(key="k:{x}", invalidate=5)(lambda x: x)
    with pytest.raises(ConfigurationError, match="lock_timeout"):
        Registry("memory://", lock_timeout="10")


def test_a_tags_callable_returning_a_non_string_fails_on_memory_as_on_redis() -> None:
    reg = Registry("memory://")

    @reg.cached(tags=lambda x: [x])
    def f(x: object) -> object:
        return x

    assert f("users") == "users"
    with pytest.raises(ConfigurationError, match="tags callable"):
        f(7)


@pytest.mark.parametrize("returned", ["user:1", b"user:1", None, 7, ["user:1", ""]])
def test_a_tags_callable_must_return_a_list_of_strings(returned: object) -> None:
    # a bare str is iterable: its characters became the tags, and invalidate_tags("user:1")
    # then reached nothing (the old value kept being served)
    reg = Registry("memory://")
    loads: list[int] = []

    @reg.cached(tags=lambda x: returned)
    def f(x: int) -> int:
        loads.append(x)
        return x

    with pytest.raises(ConfigurationError, match=r"tags callable of .*\.f returned") as info:
        f(1)
    assert info.value.function is not None and info.value.function.endswith(".f")
    assert "user:1" not in str(info.value)  # (tags come from arguments: not quoted)
    assert loads == []  # refused before the function runs
