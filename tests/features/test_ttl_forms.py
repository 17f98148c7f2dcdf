"""``ttl`` as seconds, a ``timedelta`` or (by keyword) a callable of the result, clamped like
any TTL, on memory://, Redis and Cluster, sync and async; bad forms are ConfigurationErrors."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest

from cachedeco import ConfigurationError, Registry, SerializationError, cached, write_through
from cachedeco.core.entry import Entry, decode_entry
from tests.support import by_url as support

Make = Callable[..., Registry]
url = support.url  # the deployment fixture: memory://, Redis, Cluster


def soft_left(reg: Registry, key: str) -> float:
    """Seconds until the entry at ``key`` goes stale, from its stored envelope."""
    raw = reg.slot("default").backend().raw(key)
    assert raw is not None
    entry = raw if isinstance(raw, Entry) else decode_entry(raw)
    return entry.soft - time.time()


def test_timedelta_and_positional_seconds(url: str, make_registry: Make, prefix: str) -> None:
    reg = make_registry(url, prefix=prefix, jitter=0, ttl=dt.timedelta(minutes=2))

    @reg.cached(ttl=dt.timedelta(minutes=5))
    def five(x: int) -> int:
        return x

    @reg.cached(90)
    def ninety(x: int) -> int:
        return x

    @reg.cached
    def default(x: int) -> int:
        return x

    five(1), ninety(1), default(1)
    assert 299 <= soft_left(reg, five.key(1)) <= 300
    assert 89 <= soft_left(reg, ninety.key(1)) <= 90
    assert 119 <= soft_left(reg, default.key(1)) <= 120  # the registry's timedelta


def test_callable_ttl_picks_from_the_result(url: str, make_registry: Make,
                                            prefix: str) -> None:
    reg = make_registry(url, prefix=prefix, jitter=0)
    seen: list[Any] = []

    def ttl_of(result: dict[str, int]) -> float | dt.timedelta:
        seen.append(result)
        return dt.timedelta(seconds=result["max_age"]) if result["max_age"] > 100 else (
            result["max_age"])

    @reg.cached(ttl=ttl_of)
    def page(max_age: int) -> dict[str, int]:
        return {"max_age": max_age}

    page(600), page(50), page(0), page(-5)
    assert seen == [{"max_age": 600}, {"max_age": 50}, {"max_age": 0}, {"max_age": -5}]
    assert 599 <= soft_left(reg, page.key(600)) <= 600
    assert 49 <= soft_left(reg, page.key(50)) <= 50
    assert 0 < soft_left(reg, page.key(0)) <= 1  # clamped like any TTL: never below 1 s
    assert 0 < soft_left(reg, page.key(-5)) <= 1
    assert page(600) == {"max_age": 600} and len(seen) == 4  # a hit asks nothing


async def test_async_callable_ttl_and_jitter(url: str, amake_registry: Make,
                                             prefix: str) -> None:
    reg = amake_registry(url, prefix=prefix)

    @reg.cached(ttl=lambda result: 100 * result, jitter=0.5)
    async def scaled(n: int) -> int:
        return n

    await scaled(3)
    assert 150 - 1 <= soft_left(reg, scaled.key(3)) <= 450  # ttl 300 within the jitter


def test_a_bad_ttl_result_is_a_configuration_error(url: str, make_registry: Make,
                                                   prefix: str) -> None:
    reg = make_registry(url, prefix=prefix)

    @reg.cached(ttl=lambda result: "soon")
    def f(x: int) -> int:
        return x

    @reg.cached(ttl=lambda result: float("inf"))
    def forever(x: int) -> int:
        return x

    for call in (f, forever):
        with pytest.raises(ConfigurationError, match="callable ttl must return"):
            call(1)


def test_a_writer_stores_with_the_targets_callable_ttl(url: str, make_registry: Make,
                                                       prefix: str) -> None:
    reg = make_registry(url, prefix=prefix, jitter=0)

    @reg.cached(ttl=lambda user: user["ttl"])
    def user(user_id: int) -> dict[str, int]:
        return {"id": user_id, "ttl": 30}

    @reg.write_through(user)
    def save(user_id: int, ttl: int) -> dict[str, int]:
        return {"id": user_id, "ttl": ttl}

    @reg.write_through(key="u:{user_id}", ttl=lambda record: 200)
    def save_by_key(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    save(1, 400)
    assert 399 <= soft_left(reg, user.key(1)) <= 400
    save_by_key(2)
    assert 199 <= soft_left(reg, f"{prefix}:u:2") <= 200


def test_ttl_forms_refused_at_decoration() -> None:
    with pytest.raises(ConfigurationError, match="takes the result"):
        cached(ttl=lambda: 30)
    with pytest.raises(ConfigurationError, match="two TTLs"):
        cached(60, ttl=30)
    for bad in (0, -1, float("nan"), dt.timedelta(0), dt.timedelta(seconds=-3), "60", True):
        with pytest.raises(ConfigurationError):
            cached(ttl=bad)
        with pytest.raises(ConfigurationError):
            cached(bad)
    with pytest.raises(ConfigurationError):
        Registry(ttl=dt.timedelta(0))
    with pytest.raises(ConfigurationError, match="takes the result"):
        write_through(key="k:{x}", ttl=lambda a, b: 1)(lambda x: x)


def test_a_callable_ttl_given_positionally_is_named_at_decoration() -> None:
    """@cached(pick_ttl) caches pick_ttl itself (the bare decorator's form), which then gets
    the decorated function as its argument: the error says what probably happened."""
    reg = Registry("memory://")

    def pick_ttl(result: Any) -> float:
        return 60

    with pytest.raises(SerializationError, match=r"meant as ttl=fn.*by keyword"):
        @reg.cached(pick_ttl)
        def f(x: int) -> int:
            return x
    reg.close()
