"""``@cached`` and ``@write_through`` as an API, on ``memory://`` (no server): what is refused
at decoration, pure keys, the wrapper's metadata and attributes, and what only the memory
backend does (objects kept as they are, a bounded size, expiry in process)."""

from __future__ import annotations

import inspect
import time
import typing
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from cachedeco import ConfigurationError, Registry, Stats, cached, write_through
from tests.support.calls import Calls

pytestmark = pytest.mark.deployments("memory")


@dataclass
class User:
    id: int
    name: str


# --- refused at decoration ------------------------------------------------------------------------


def test_generators_are_refused_at_decoration(reg: Registry) -> None:
    def gen(x: int) -> Iterator[int]:
        yield x

    async def agen(x: int) -> AsyncIterator[int]:
        yield x

    with pytest.raises(ConfigurationError, match="gen"):
        cached(registry=reg)(gen)
    with pytest.raises(ConfigurationError, match="agen"):
        cached(registry=reg)(agen)
    with pytest.raises(ConfigurationError):
        cached(registry=reg)(staticmethod(gen))


@pytest.mark.parametrize("ttl", [0, -1, -0.001, float("nan"), float("inf"), "10", True])
def test_bad_ttl_is_refused_at_decoration(reg: Registry, ttl: Any) -> None:
    with pytest.raises(ConfigurationError):
        cached(ttl=ttl, registry=reg)


@pytest.mark.parametrize(("key", "tags"), [
    ("user:{uid}", ()),
    ("user:{uid.name}", ()),
    ("user:{0}", ()),
    ("user:{}", ()),
    (None, ["user:{uid}"]),
    (None, ["ok:{user_id}", "bad:{nope}"]),
])
def test_template_names_must_be_parameters(reg: Registry, key: str | None,
                                           tags: list[str]) -> None:
    def get(user_id: int) -> int:
        return user_id

    with pytest.raises(ConfigurationError):
        cached(registry=reg, key=key, tags=tags)(get)


def test_ignore_names_must_be_parameters(reg: Registry) -> None:
    def get(user_id: int) -> int:
        return user_id

    with pytest.raises(ConfigurationError):
        cached(registry=reg, ignore=["nope"])(get)


def test_condition_must_be_callable(reg: Registry) -> None:
    with pytest.raises(ConfigurationError):
        cached(registry=reg, condition=True)  # type: ignore[arg-type]


def test_writer_lacking_a_target_parameter_is_refused(reg: Registry) -> None:
    @cached(registry=reg)
    def get(tenant: str, item_id: int) -> int:
        return item_id

    def put(item_id: int, v: str) -> int:
        return item_id

    with pytest.raises(ConfigurationError, match="tenant"):
        write_through(get, registry=reg)(put)
    with pytest.raises(ConfigurationError):
        write_through(registry=reg)(put)  # neither target nor key
    with pytest.raises(ConfigurationError):
        write_through(get, key="x:{item_id}", registry=reg)(put)  # both
    with pytest.raises(ConfigurationError):
        write_through(key="x:{nope}", registry=reg)(put)
    with pytest.raises(ConfigurationError):
        write_through(get, registry=reg, invalidate=["t:{nope}"])(put)


def test_write_through_tags_with_a_target_is_refused_at_decoration(reg: Registry) -> None:
    """``tags=`` with a @cached target would store an entry its reader can never serve (the
    reader checks its own tags' tokens), so it is a ConfigurationError (see docs/design.md)."""

    @cached(registry=reg, tags=["item:{item_id}"])
    def get(item_id: int) -> dict[str, Any]:
        return {"id": item_id, "v": "db"}

    with pytest.raises(ConfigurationError, match="tags= applies only with key="):

        @write_through(get, tags=["custom:{item_id}"], registry=reg)
        def put(item_id: int, v: str) -> dict[str, Any]:
            return {"id": item_id, "v": v}


# --- the wrapper ----------------------------------------------------------------------------------


def test_bare_decorator() -> None:
    @cached
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    assert f.key(1).endswith(":1")


def test_key_is_pure_and_spelling_independent(reg: Registry, prefix: str) -> None:
    calls = Calls()

    @cached(registry=reg)
    def f(a: int, b: str = "x", *, c: float = 1.5) -> int:
        calls(a)
        return a

    key = f.key(1)
    assert key == f.key(1, "x") == f.key(a=1, b="x", c=1.5) == f.key(1, c=1.5)
    assert key.startswith(f"{prefix}:") and f.__module__ in key and "f" in key
    assert f.key(1, "y") != key
    assert len(key.encode()) <= 250
    assert len(f.key("a" * 10_000).encode()) <= 250
    assert len(calls) == 0 and f.stats() == Stats()
    assert f.key("a:b", "c") != f.key("a", "b:c")


def test_wrapped_and_metadata_survive(reg: Registry) -> None:
    def original(a: int, b: str = "x") -> list[int]:
        """Docs."""
        return [a]

    decorated = cached(registry=reg)(original)
    assert decorated.__wrapped__ is original
    assert decorated.__name__ == "original"
    assert decorated.__qualname__ == original.__qualname__
    assert decorated.__doc__ == "Docs."
    assert decorated.__module__ == original.__module__
    assert inspect.signature(decorated) == inspect.signature(original)
    assert typing.get_type_hints(decorated) == typing.get_type_hints(original)
    assert not inspect.iscoroutinefunction(decorated)
    assert decorated(1) == [1]


async def test_async_wrapped_is_awaitable_and_typed(reg: Registry) -> None:
    async def original(a: int) -> int:
        return a

    decorated = cached(registry=reg)(original)
    assert inspect.iscoroutinefunction(decorated)
    assert decorated.__wrapped__ is original
    assert inspect.signature(decorated) == inspect.signature(original)
    coro = decorated(1)
    assert inspect.iscoroutine(coro)
    assert await coro == 1


def test_decorator_does_not_mutate_the_function(reg: Registry) -> None:
    def original(a: int) -> int:
        return a

    before = dict(original.__dict__)
    cached(registry=reg)(original)
    assert original.__dict__ == before
    assert not hasattr(original, "invalidate")


def test_stats_are_snapshots(reg: Registry) -> None:
    @cached(registry=reg)
    def f(x: int) -> int:
        return x

    snapshot = f.stats()
    f(1)
    assert snapshot.misses == 0 and f.stats().misses == 1


def test_registry_has_a_cached_method(reg: Registry, prefix: str) -> None:
    calls = Calls()

    @reg.cached(ttl=60)  # type: ignore[attr-defined]
    def f(x: int) -> int:
        calls(x)
        return x

    assert (f(1), f(1)) == (1, 1)
    assert len(calls) == 1
    assert f.key(1).startswith(f"{prefix}:")


# --- what only memory:// does ---------------------------------------------------------------------


def test_memory_returns_the_stored_object_types(reg: Registry) -> None:
    @cached(registry=reg)
    def user(uid: int) -> User:
        return User(uid, "ann")

    first, second = user(1), user(1)
    assert first == second == User(1, "ann") and type(second) is User


def test_memory_backend_is_bounded(make_registry: typing.Callable[..., Registry]) -> None:
    reg = make_registry("memory://?maxsize=50")
    calls = Calls()

    @cached(registry=reg)
    def f(x: int) -> int:
        calls(x)
        return x

    for x in range(500):
        f(x)
    f(499)
    assert len(calls) == 500  # the most recent entry is still there
    f(0)
    assert len(calls) == 501  # the oldest was evicted


def test_ttl_expires_entries(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg, ttl=1, jitter=0)
    def f(x: int) -> int:
        calls(x)
        return x

    f(1)
    f(1)
    time.sleep(1.05)
    f(1)
    assert len(calls) == 2
