"""``@cached`` on every deployment: what is cached and under which key, the attributes
(``invalidate``, ``invalidate_all``, ``refresh``), methods of every kind, and many callers
sharing one registry."""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from cachedeco import Registry, cached
from tests.support.calls import Calls
from tests.support.deployments import ALL, BACKENDS, Deployment
from tests.support.peek import is_tombstone, stored

pytestmark = pytest.mark.deployments(*BACKENDS)


@dataclass
class User:
    id: int
    name: str


# --- functions and coroutines ----------------------------------------------------------------


def test_sync_function_is_cached_per_arguments(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg)
    def double(x: int, y: int = 0) -> int:
        calls(x, y)
        return 2 * x + y

    assert [double(1), double(1), double(x=1), double(1, 0), double(1, y=0)] == [2] * 5
    assert double(2) == 4
    assert double(1, 1) == 3
    assert calls.log == [(1, 0), (2, 0), (1, 1)]
    stats = double.stats()
    assert (stats.hits, stats.misses, stats.loads) == (4, 3, 3)


async def test_async_function_is_cached(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg)
    async def fetch(x: int) -> dict[str, int]:
        calls(x)
        await asyncio.sleep(0)
        return {"x": x}

    assert inspect.iscoroutinefunction(fetch)
    assert await fetch(1) == {"x": 1}
    assert await fetch(1) == {"x": 1}
    assert await fetch(x=1) == {"x": 1}
    assert calls.log == [1]


def test_distinct_argument_types_are_distinct_entries(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg)
    def ident(x: Any) -> Any:
        calls(x)
        return x

    for value in (1, 1.0, "1", True):
        assert ident(value) == value
        assert type(ident(value)) is type(value)
    assert len(calls) == 4


# --- what is cached ----------------------------------------------------------------------------


def test_none_is_cached(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg)
    def find(x: int) -> int | None:
        calls(x)
        return None

    assert find(1) is None
    assert find(1) is None
    assert len(calls) == 1
    assert find.stats().hits == 1


def test_cache_none_false_does_not_cache_none(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg, cache_none=False)
    def find(x: int) -> int | None:
        calls(x)
        return None if x < 0 else x

    assert (find(-1), find(-1), find(-1)) == (None, None, None)
    assert (find(0), find(0)) == (0, 0)
    assert calls.log == [-1, -1, -1, 0]


FALSY = [0, 0.0, "", [], {}, False]
FALSY_OBJECTS = [(), b""]  # JSON has neither: only memory:// (which keeps objects) has them


@pytest.mark.parametrize(
    ("deployment", "value"),
    [(d, v) for d in BACKENDS for v in FALSY] + [("memory", v) for v in FALSY_OBJECTS],
    indirect=["deployment"], ids=lambda v: v if isinstance(v, str) and v in BACKENDS else repr(v))
def test_falsy_values_are_cached(reg: Registry, value: Any) -> None:
    calls = Calls()

    @cached(registry=reg)
    def falsy(x: int) -> Any:
        calls(x)
        return value

    assert falsy(1) == value
    result = falsy(1)
    assert result == value and type(result) is type(value)
    assert len(calls) == 1


def test_condition_decides_what_is_cached(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg, condition=lambda result: result["ok"])
    def status(x: int) -> dict[str, bool]:
        calls(x)
        return {"ok": x > 0}

    assert status(0) == {"ok": False}
    assert status(0) == {"ok": False}
    assert status(1) == {"ok": True}
    assert status(1) == {"ok": True}
    assert calls.log == [0, 0, 1]


def test_version_changes_the_key(reg: Registry) -> None:
    calls = Calls()

    def load(x: int) -> str:
        calls(x)
        return f"shape{len(calls)}"

    v1 = cached(registry=reg, version=1)(load)
    v2 = cached(registry=reg, version=2)(load)
    plain = cached(registry=reg)(load)
    assert len({v1.key(1), v2.key(1), plain.key(1)}) == 3
    assert ":v1:" in v1.key(1) and ":v2:" in v2.key(1)
    assert v1(1) == "shape1"
    assert v2(1) == "shape2"  # the old shape is not served under the new version
    assert v1(1) == "shape1"
    assert len(calls) == 2


def test_exceptions_are_not_cached(reg: Registry) -> None:
    attempts = Calls()

    @cached(registry=reg)
    def flaky(x: int) -> int:
        attempts(x)
        if len(attempts) < 3:
            raise ValueError(f"try {len(attempts)}")
        return x

    for n in (1, 2):
        with pytest.raises(ValueError, match=f"try {n}"):
            flaky(5)
    assert flaky(5) == 5
    assert flaky(5) == 5
    assert len(attempts) == 3
    assert flaky.stats().load_errors == 2


# --- keys ----------------------------------------------------------------------------------------


def test_template_key_with_attribute_access(reg: Registry, prefix: str) -> None:
    calls = Calls()

    @cached(registry=reg, key="user:{user.id}", tags=["org:{user.name}"])
    def profile(user: User) -> str:
        calls(user.id)
        return user.name

    assert profile.key(User(7, "ann")) == profile.key(User(7, "bob")) == f"{prefix}:user:7"
    assert profile(User(7, "ann")) == "ann"
    assert profile(User(7, "ann")) == "ann"
    assert len(calls) == 1
    reg.invalidate_tags("org:bob")
    assert profile(User(7, "ann")) == "ann"
    assert len(calls) == 1
    reg.invalidate_tags("org:ann")
    assert profile(User(7, "ann")) == "ann"
    assert len(calls) == 2


def test_callable_key_and_ignore(reg: Registry, prefix: str) -> None:
    calls = Calls()

    @cached(registry=reg, key=lambda a, b, log=None: f"pair:{a}-{b}")
    def pair(a: int, b: int, log: object = None) -> int:
        calls(a, b)
        return a + b

    @cached(registry=reg, ignore=["log"])
    def summed(a: int, log: object = None) -> int:
        calls(a)
        return a

    assert pair.key(1, 2) == f"{prefix}:pair:1-2"
    assert (pair(1, 2, object()), pair(1, 2, object())) == (3, 3)
    assert (summed(1, object()), summed(1, object())) == (1, 1)
    assert calls.log == [(1, 2), 1]


# --- attributes ----------------------------------------------------------------------------------


def test_invalidate_returns_whether_an_entry_was_dropped(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg)
    def f(x: int) -> int:
        calls(x)
        return x

    assert f.invalidate(1) is False
    f(1)
    assert f.invalidate(x=1) is True
    assert f.invalidate(1) is False
    f(1)
    f(1)
    assert calls.log == [1, 1]


def test_invalidate_all_drops_only_this_function(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg)
    def f(x: int) -> int:
        calls("f", x)
        return x

    @cached(registry=reg)
    def g(x: int) -> int:
        calls("g", x)
        return x

    for x in range(3):
        f(x)
        g(x)
    f.invalidate_all()
    for x in range(3):
        f(x)
        g(x)
    assert [c for c in calls.log if c[0] == "f"] == [("f", x) for x in range(3)] * 2
    assert [c for c in calls.log if c[0] == "g"] == [("g", x) for x in range(3)]


def test_refresh_recomputes_and_stores(reg: Registry) -> None:
    counter = iter(range(100))

    @cached(registry=reg)
    def tick(x: int) -> int:
        return next(counter)

    assert tick(1) == 0
    assert tick(1) == 0
    assert tick.refresh(1) == 1
    assert tick(1) == 1
    assert tick(2) == 2


async def test_async_attributes_are_coroutines(reg: Registry) -> None:
    counter = iter(range(100))

    @cached(registry=reg)
    async def tick(x: int) -> int:
        return next(counter)

    assert inspect.iscoroutinefunction(tick.invalidate)
    assert inspect.iscoroutinefunction(tick.refresh)
    assert inspect.iscoroutinefunction(tick.invalidate_all)
    assert not inspect.iscoroutinefunction(tick.key)
    assert isinstance(tick.key(1), str)
    assert await tick(1) == 0
    assert await tick.refresh(1) == 1
    assert await tick(1) == 1
    assert await tick.invalidate(1) is True
    assert await tick(1) == 2
    await tick.invalidate_all()
    assert await tick(1) == 3


# --- methods -----------------------------------------------------------------------------------


def make_service_class(reg: Registry, calls: Calls) -> type:
    class Service:
        factor = 10

        def __init__(self, name: str = "s") -> None:
            self.name = name

        @cached(registry=reg)
        def method(self, x: int) -> str:
            calls("method", x)
            return f"{self.name}:{x}"

        @cached(registry=reg)
        async def amethod(self, x: int) -> int:
            calls("amethod", x)
            return x * 2

        @classmethod
        @cached(registry=reg)
        def class_above(cls, x: int) -> int:
            calls("class_above", x)
            return cls.factor * x

        @cached(registry=reg)
        @classmethod
        def class_below(cls, x: int) -> int:
            calls("class_below", x)
            return cls.factor * x

        @staticmethod
        @cached(registry=reg)
        def static_above(x: int) -> int:
            calls("static_above", x)
            return x + 1

        @cached(registry=reg)
        @staticmethod
        def static_below(x: int) -> int:
            calls("static_below", x)
            return x + 2

    return Service


def test_instance_method_and_its_attributes(reg: Registry) -> None:
    calls = Calls()
    service_cls = make_service_class(reg, calls)
    obj = service_cls("a")
    assert obj.method(1) == "a:1"
    assert obj.method(1) == "a:1"
    assert obj.method(x=1) == "a:1"
    assert calls.log == [("method", 1)]
    key = obj.method.key(1)
    assert key == obj.method.key(x=1)
    assert "self" not in key and "'a'" not in key  # self is left out of the key
    assert key == service_cls.method.key(obj, 1)
    assert obj.method.invalidate(1) is True
    assert obj.method.invalidate(1) is False
    assert obj.method(1) == "a:1"
    assert calls.log == [("method", 1), ("method", 1)]
    assert obj.method.refresh(1) == "a:1"
    assert len(calls) == 3
    assert obj.method.stats().loads == 3
    assert obj.method.__wrapped__.__name__ == "method"
    obj.method.invalidate_all()
    obj.method(1)
    assert len(calls) == 4


async def test_async_method(reg: Registry) -> None:
    calls = Calls()
    obj = make_service_class(reg, calls)()
    assert await obj.amethod(3) == 6
    assert await obj.amethod(3) == 6
    assert calls.log == [("amethod", 3)]
    assert await obj.amethod.invalidate(3) is True
    assert await obj.amethod(3) == 6
    assert len(calls) == 2


@pytest.mark.parametrize(("name", "expected"), [
    ("class_above", 20), ("class_below", 20), ("static_above", 3), ("static_below", 4)])
def test_classmethod_and_staticmethod_in_either_order(reg: Registry, name: str,
                                                      expected: int) -> None:
    calls = Calls()
    service_cls = make_service_class(reg, calls)
    method = getattr(service_cls, name)
    assert method(2) == expected
    assert getattr(service_cls(), name)(2) == expected
    assert method(x=2) == expected
    assert calls.log == [(name, 2)]
    # Python 3.13 stopped chaining classmethod through the function's descriptor: with
    # @classmethod outermost, the attributes are the function's own and take the class
    # first (the docs say to put @cached outermost)
    lead = (service_cls,) if name == "class_above" and sys.version_info >= (3, 13) else ()
    assert method.key(*lead, 2) == getattr(service_cls(), name).key(*lead, 2)
    assert method.key(*lead, 2).endswith(f"{name}:2")
    assert method.invalidate(*lead, 2) is True
    assert method(2) == expected
    assert len(calls) == 2


def test_functools_partial_is_not_needed_for_methods(reg: Registry) -> None:
    service_cls = make_service_class(reg, Calls())
    bound = service_cls("z").method
    assert callable(bound)
    assert functools.partial(bound, 1)() == "z:1"


def build_accounts(reg: Registry, calls: Calls) -> type:
    class Accounts:
        @cached(registry=reg, tags=["acct:{account_id}"])
        def balance(self, account_id: int) -> Decimal:
            calls(("balance", account_id))
            return Decimal("10.50")

        @cached(registry=reg)
        async def owner(self, account_id: int) -> str:
            calls(("owner", account_id))
            return "ann"

        @classmethod
        @cached(registry=reg)
        def currency(cls, account_id: int) -> str:
            calls(("currency", account_id))
            return "EUR"

        @staticmethod
        @cached(registry=reg)
        def rate(code: str) -> float:
            calls(("rate", code))
            return 1.5

    return Accounts


async def test_methods_of_every_kind_share_entries(reg: Registry) -> None:
    calls = Calls()
    accounts = build_accounts(reg, calls)
    a, b = accounts(), accounts()
    assert a.balance(7) == Decimal("10.50")
    assert b.balance(7) == Decimal("10.50")  # self is not part of the key
    result = a.balance(7)
    assert type(result) is Decimal and str(result) == "10.50"
    assert await a.owner(7) == "ann"
    assert await b.owner(7) == "ann"
    assert accounts.currency(7) == a.currency(7) == "EUR"
    assert accounts.rate("x") == a.rate("x") == 1.5
    assert calls.log == [("balance", 7), ("owner", 7), ("currency", 7), ("rate", "x")]
    key = a.balance.key(7)
    assert stored(reg, key) is not None
    assert a.balance.invalidate(7) is True
    assert is_tombstone(stored(reg, key))
    reg.invalidate_tags("acct:7")
    assert a.balance(7) == Decimal("10.50")
    assert await b.owner.invalidate(7) is True
    assert await a.owner(7) == "ann"
    assert len(calls) == 6


# --- many callers, one registry ----------------------------------------------------------------

@pytest.mark.deployments(*ALL)
async def test_200_concurrent_async_callers_share_one_registry(
        deployment: Deployment, amake_registry: Callable[..., Registry]) -> None:
    # Generous timeouts: 200 connections opened at once on a loaded machine can take longer
    # than the default second, and a store that times out (fail open) would load again.
    reg = amake_registry(deployment.url, socket_timeout=10.0, socket_connect_timeout=10.0)
    calls = Calls()

    @cached(registry=reg, tags=["item:{x}"])
    async def f(x: int) -> dict[str, int]:
        calls(x)
        await asyncio.sleep(0.01)
        return {"x": x}

    async def everyone() -> list[Any]:
        return await asyncio.gather(*(f(x) for x in range(200)), return_exceptions=True)

    for _ in range(3):  # misses, then hits, then misses after invalidation
        results = await everyone()
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == []
        assert results == [{"x": x} for x in range(200)]
        await asyncio.gather(*(reg.ainvalidate_tags(f"item:{x}") for x in range(0, 200, 2)))
    assert len(calls) == 200 + 100 + 100
    assert reg.stats().backend_errors == 0


@pytest.mark.deployments(*ALL)
def test_200_threads_share_one_registry(reg: Registry) -> None:
    @cached(registry=reg)
    def f(x: int) -> int:
        time.sleep(0.005)
        return x

    with ThreadPoolExecutor(200) as pool:
        assert list(pool.map(f, range(400))) == list(range(400))
    assert reg.stats().backend_errors == 0


def test_many_threads_many_keys_consistent(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg)
    def sq(x: int) -> int:
        calls(x)
        time.sleep(0.001)
        return x * x

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(sq, [i % 20 for i in range(400)]))
    assert results == [(i % 20) ** 2 for i in range(400)]
    assert sorted(set(calls.log)) == list(range(20))
    assert sq.stats().hits + sq.stats().singleflight_joins >= 400 - 2 * 20
