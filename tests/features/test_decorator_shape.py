"""How decorated functions look and bind: a bare ``@reg.cached`` (and
every registry convenience) binds to ``reg``; bound methods keep the method's ``__doc__``,
names, signature and ``__wrapped__``; ``inspect.getfullargspec`` sees the real parameters;
a return annotation is resolved at first call or refused where values are serialized."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

import cachedeco
from cachedeco import ConfigurationError, Registry
from tests.support import by_url as support

if TYPE_CHECKING:
    from decimal import Decimal as OnlyTyped

Make = Callable[..., Registry]
url = support.url  # the deployment fixture: memory://, Redis, Cluster


def test_bare_registry_decorators_bind_to_the_registry(url: str, make_registry: Make,
                                                       prefix: str) -> None:
    reg = make_registry(url, prefix=prefix)
    flushed: list[Any] = []

    @reg.cached
    def square(x: int) -> int:
        return x * x

    @reg.cached_many(key="sq:{id}")
    def squares(ids: list[int]) -> dict[int, int]:
        return {i: i * i for i in ids}

    @reg.write_through(square)
    def set_square(x: int) -> int:
        return x * x

    @reg.write_behind(key="rec:{x}", flush=flushed.extend)
    def record(x: int) -> dict[str, int]:
        return {"x": x}

    for key in (square.key(2), squares.key(2)):
        assert key.startswith(f"{prefix}:")
    assert square(3) == 9 and set_square(4) == 16 and squares([5]) == {5: 25}
    record(6)
    reg.flush()
    assert flushed == [{"x": 6}]
    default = cachedeco.registry.slot("default").backend()
    mine = reg.slot("default").backend()
    for key in (square.key(3), square.key(4), squares.key(5), f"{prefix}:rec:6"):
        assert mine.raw(key) is not None, key  # in reg's backend ...
        assert default.raw(key) is None, key  # ... never in the default registry's
    with pytest.raises(ConfigurationError, match="registry="):
        reg.cached(registry=cachedeco.registry)


async def test_bare_async_registry_decorator(url: str, amake_registry: Make,
                                             prefix: str) -> None:
    reg = amake_registry(url, prefix=prefix)

    @reg.cached
    async def half(x: int) -> float:
        return x / 2

    assert await half(3) == 1.5
    assert half.key(3).startswith(f"{prefix}:")
    assert await half.get(3) == 1.5  # found in reg's backend


class Repo:
    """A repository."""

    loads = 0

    @cachedeco.cached(ttl=60)
    def find(self, item_id: int, *, deep: bool = False) -> list[int]:
        """Find an item by id."""
        Repo.loads += 1
        return [item_id]

    @cachedeco.cached(ttl=60)
    @classmethod
    def count(cls, kind: str) -> int:
        """Count the items of a kind."""
        return len(kind)


@cachedeco.cached(ttl=60)
def outside(self: object, x: int) -> int:
    """A function whose first parameter is named self, defined outside a class."""
    return x


def test_bound_methods_look_like_the_method() -> None:
    repo = Repo()
    for bound, name in ((repo.find, "find"), (Repo.count, "count"), (repo.count, "count")):
        assert bound.__name__ == name
        assert bound.__qualname__ == f"Repo.{name}"
        assert bound.__doc__ == Repo.__dict__[name].__wrapped__.__doc__
    assert repo.find.__doc__ == "Find an item by id."
    assert str(inspect.signature(repo.find)) == (
        "(item_id: 'int', *, deep: 'bool' = False) -> 'list[int]'")
    assert str(inspect.signature(Repo.count)) == "(kind: 'str') -> 'int'"
    assert list(inspect.signature(Repo.find).parameters) == ["self", "item_id", "deep"]
    assert repo.find.key(1) == Repo.find.key(repo, 1)


def test_wrapped_is_the_undecorated_function_everywhere() -> None:
    repo, before = Repo(), Repo.loads
    descriptor = Repo.__dict__["find"]
    for wrapped in (descriptor.__wrapped__, Repo.find.__wrapped__, repo.find.__wrapped__):
        assert wrapped(repo, 9) == [9]
        assert inspect.getfullargspec(wrapped).args == ["self", "item_id"]
    assert Repo.loads == before + 3  # every call ran the function: none went through the cache
    assert outside.__wrapped__(None, 2) == 2
    assert inspect.getfullargspec(outside.__wrapped__).args == ["self", "x"]


def test_getfullargspec_of_decorated_functions() -> None:
    @cachedeco.cached(ttl=60)
    def f(a: int, b: str = "x", *rest: int, flag: bool = False) -> int:
        return a

    @cachedeco.cached_many(key="m:{id}")
    async def many(ids: list[int]) -> dict[int, int]:
        return {}

    spec = inspect.getfullargspec(f)
    assert (spec.args, spec.varargs, spec.kwonlyargs) == (["a", "b"], "rest", ["flag"])
    assert inspect.getfullargspec(many).args == ["ids"]
    assert inspect.getfullargspec(outside).args == ["self", "x"]
    assert inspect.getfullargspec(Repo.__dict__["find"]).args == ["self", "item_id"]


def test_a_local_class_annotation_resolves_at_first_call(url: str, make_registry: Make,
                                                         prefix: str) -> None:
    reg = make_registry(url, prefix=prefix)

    @reg.cached(ttl=60)
    def local(item_id: int) -> LocalItem:  # defined below: resolved at the first call
        return LocalItem(item_id)

    @dataclass
    class LocalItem:
        id: int

    miss, hit = local(1), local(1)
    assert miss == hit == LocalItem(1)
    assert type(hit) is LocalItem


def test_an_unresolvable_annotation_is_refused_where_values_are_serialized(
        url: str, make_registry: Make, prefix: str) -> None:
    reg = make_registry(url, prefix=prefix)
    calls: list[int] = []

    @reg.cached(ttl=60)
    def typed_only(x: int) -> OnlyTyped:
        calls.append(x)
        return x  # type: ignore[return-value]

    if url.startswith("memory"):  # values are kept as objects: nothing to decode
        assert typed_only(1) == typed_only(1) == 1
        return
    with pytest.raises(ConfigurationError, match="'OnlyTyped'"):
        typed_only(1)
    assert calls == []  # refused before running, never a miss and a hit of two types
