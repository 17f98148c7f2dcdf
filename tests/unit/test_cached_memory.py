"""The ``@cached`` contract on ``memory://``: every kind of callable, the options, the
attributes, and single-flight with threads and tasks."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
import typing
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from cachedeco import ConfigurationError, Registry, Stats, cached, write_through


@pytest.fixture
def reg() -> Iterator[Registry]:
    registry = Registry("memory://", prefix="mem")
    yield registry
    registry.close()


class Calls:
    """Counts calls by argument tuple."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, *item: Any) -> None:
        with self.lock:
            self.log.append(item if len(item) != 1 else item[0])

    def __len__(self) -> int:
        return len(self.log)


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


def test_bare_decorator(reg: Registry) -> None:
    @cached
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    assert f.key(1).endswith(":1")


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


def test_memory_returns_the_stored_object_types(reg: Registry) -> None:
    @cached(registry=reg)
    def user(uid: int) -> User:
        return User(uid, "ann")

    first, second = user(1), user(1)
    assert first == second == User(1, "ann") and type(second) is User


# --- methods -----------------------------------------------------------------------------------


def make_repo_class(reg: Registry, calls: Calls) -> type:
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
    service_cls = make_repo_class(reg, calls)
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
    obj = make_repo_class(reg, calls)()
    assert await obj.amethod(3) == 6
    assert await obj.amethod(3) == 6
    assert calls.log == [("amethod", 3)]
    assert await obj.amethod.invalidate(3) is True
    assert await obj.amethod(3) == 6
    assert len(calls) == 2


@pytest.mark.parametrize("name", ["class_above", "class_below"])
def test_classmethod_either_order(reg: Registry, name: str) -> None:
    calls = Calls()
    service_cls = make_repo_class(reg, calls)
    method = getattr(service_cls, name)
    assert method(2) == 20
    assert getattr(service_cls(), name)(2) == 20
    assert method(x=2) == 20
    assert calls.log == [(name, 2)]
    assert method.key(2) == getattr(service_cls(), name).key(2)
    assert method.key(2).endswith(f"{name}:2")
    assert method.invalidate(2) is True
    assert method(2) == 20
    assert len(calls) == 2


@pytest.mark.parametrize("name", ["static_above", "static_below"])
def test_staticmethod_either_order(reg: Registry, name: str) -> None:
    calls = Calls()
    service_cls = make_repo_class(reg, calls)
    method = getattr(service_cls, name)
    expected = 3 if name == "static_above" else 4
    assert method(2) == expected
    assert getattr(service_cls(), name)(2) == expected
    assert calls.log == [(name, 2)]
    assert method.key(2).endswith(f"{name}:2")
    assert getattr(service_cls(), name).key(2) == method.key(2)
    assert method.invalidate(2) is True
    assert method(2) == expected
    assert len(calls) == 2


# --- errors at decoration ----------------------------------------------------------------------


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


def test_template_key_with_attribute_access(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg, key="user:{user.id}", tags=["org:{user.name}"])
    def profile(user: User) -> str:
        calls(user.id)
        return user.name

    assert profile.key(User(7, "ann")) == profile.key(User(7, "bob")) == "mem:user:7"
    assert profile(User(7, "ann")) == "ann"
    assert profile(User(7, "ann")) == "ann"
    assert len(calls) == 1
    reg.invalidate_tags("org:bob")
    assert profile(User(7, "ann")) == "ann"
    assert len(calls) == 1
    reg.invalidate_tags("org:ann")
    assert profile(User(7, "ann")) == "ann"
    assert len(calls) == 2


def test_callable_key_and_ignore(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg, key=lambda a, b, log=None: f"pair:{a}-{b}")
    def pair(a: int, b: int, log: object = None) -> int:
        calls(a, b)
        return a + b

    @cached(registry=reg, ignore=["log"])
    def summed(a: int, log: object = None) -> int:
        calls(a)
        return a

    assert pair.key(1, 2) == "mem:pair:1-2"
    assert (pair(1, 2, object()), pair(1, 2, object())) == (3, 3)
    assert (summed(1, object()), summed(1, object())) == (1, 1)
    assert calls.log == [(1, 2), 1]


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


@pytest.mark.parametrize("value", [0, 0.0, "", [], {}, False, (), b""], ids=repr)
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


def test_condition_must_be_callable(reg: Registry) -> None:
    with pytest.raises(ConfigurationError):
        cached(registry=reg, condition=True)  # type: ignore[arg-type]


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


def test_memory_backend_is_bounded() -> None:
    reg = Registry("memory://?maxsize=50", prefix="small")
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


def test_key_templates_do_not_collide_with_tag_keys(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg, key="tag:{name}")
    def tag_page(name: str) -> str:
        calls(("page", name))
        return name

    @cached(registry=reg, tags=["python"])
    def post(pid: int) -> int:
        calls(("post", pid))
        return pid

    for _ in range(3):
        assert (tag_page("python"), post(1)) == ("python", 1)
    assert calls.log == [("page", "python"), ("post", 1)]


# --- attributes ----------------------------------------------------------------------------------


def test_key_is_pure_and_spelling_independent(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg)
    def f(a: int, b: str = "x", *, c: float = 1.5) -> int:
        calls(a)
        return a

    key = f.key(1)
    assert key == f.key(1, "x") == f.key(a=1, b="x", c=1.5) == f.key(1, c=1.5)
    assert key.startswith("mem:") and f.__module__ in key and "f" in key
    assert f.key(1, "y") != key
    assert len(key.encode()) <= 250
    assert len(f.key("a" * 10_000).encode()) <= 250
    assert len(calls) == 0 and f.stats() == Stats()
    assert f.key("a:b", "c") != f.key("a", "b:c")


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
    assert isinstance(tick.stats(), Stats)


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


def test_registry_has_a_cached_method(reg: Registry) -> None:
    calls = Calls()

    @reg.cached(ttl=60)  # type: ignore[attr-defined]
    def f(x: int) -> int:
        calls(x)
        return x

    assert (f(1), f(1)) == (1, 1)
    assert len(calls) == 1
    assert f.key(1).startswith("mem:")


# --- single-flight -------------------------------------------------------------------------------


def test_single_flight_with_threads(reg: Registry) -> None:
    calls = Calls()
    release = threading.Event()

    @cached(registry=reg)
    def slow(x: int) -> dict[str, int]:
        calls(x)
        release.wait(5)
        return {"x": x}

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(slow, 1) for _ in range(16)]
        time.sleep(0.1)
        release.set()
        results = [f.result(5) for f in futures]
    assert results == [{"x": 1}] * 16
    assert calls.log == [1]
    assert slow.stats().singleflight_joins == 15


async def test_single_flight_with_tasks(reg: Registry) -> None:
    calls = Calls()
    release = asyncio.Event()

    @cached(registry=reg)
    async def slow(x: int) -> int:
        calls(x)
        await release.wait()
        return x * 10

    tasks = [asyncio.create_task(slow(2)) for _ in range(20)]
    await asyncio.sleep(0.05)
    release.set()
    assert await asyncio.gather(*tasks) == [20] * 20
    assert calls.log == [2]
    assert slow.stats().singleflight_joins == 19


def test_single_flight_separates_keys(reg: Registry) -> None:
    calls = Calls()
    barrier = threading.Barrier(4, timeout=5)

    @cached(registry=reg)
    def slow(x: int) -> int:
        calls(x)
        barrier.wait()  # all four keys load at once: none waits for another
        return x

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(slow, range(4))) == [0, 1, 2, 3]
    assert sorted(calls.log) == [0, 1, 2, 3]


@pytest.mark.parametrize("error", [ValueError, KeyError, TimeoutError, RuntimeError])
def test_exception_reaches_every_waiting_thread_and_is_not_cached(
        reg: Registry, error: type[Exception]) -> None:
    calls = Calls()
    release = threading.Event()

    @cached(registry=reg)
    def boom(x: int) -> int:
        calls(x)
        release.wait(5)
        if len(calls) == 1:
            raise error("boom")
        return x

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(boom, 1) for _ in range(8)]
        time.sleep(0.1)
        release.set()
        outcomes = [type(f.exception(5)) for f in futures]
    assert outcomes == [error] * 8
    assert len(calls) == 1  # the function ran once for all eight callers
    assert boom(1) == 1  # and the error was not cached
    assert len(calls) == 2


@pytest.mark.parametrize("error", [ValueError, TimeoutError])
async def test_exception_reaches_every_waiting_task_and_is_not_cached(
        reg: Registry, error: type[Exception]) -> None:
    calls = Calls()
    release = asyncio.Event()

    @cached(registry=reg)
    async def boom(x: int) -> int:
        calls(x)
        await release.wait()
        if len(calls) == 1:
            raise error("boom")
        return x

    tasks = [asyncio.create_task(boom(1)) for _ in range(8)]
    await asyncio.sleep(0.05)
    release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(o) for o in outcomes] == [error] * 8
    assert len(calls) == 1
    assert await boom(1) == 1
    assert len(calls) == 2


def test_call_after_invalidate_never_joins_an_older_load(reg: Registry) -> None:
    started, release = threading.Event(), threading.Event()
    counter = iter(range(100))

    @cached(registry=reg)
    def load(x: int) -> int:
        value = next(counter)
        if value == 0:
            started.set()
            release.wait(5)
        return value

    with ThreadPoolExecutor(1) as pool:
        old = pool.submit(load, 1)
        assert started.wait(5)
        load.invalidate(1)
        assert load(1) == 1  # a new load, not the one that began before the invalidation
        release.set()
        assert old.result(5) == 0
    assert load(1) == 1  # the older load did not store over the newer value


async def test_task_after_refresh_never_joins_an_older_load(reg: Registry) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    counter = iter(range(100))

    @cached(registry=reg)
    async def load(x: int) -> int:
        value = next(counter)
        if value == 0:
            started.set()
            await release.wait()
        return value

    old = asyncio.create_task(load(1))
    await started.wait()
    assert await load.refresh(1) == 1
    assert await load(1) == 1
    release.set()
    assert await old == 0
    assert await load(1) == 1


def test_call_after_write_through_never_joins_an_older_load(reg: Registry) -> None:
    started, release = threading.Event(), threading.Event()
    calls = Calls()

    @cached(registry=reg)
    def get(item_id: int) -> dict[str, Any]:
        calls(item_id)
        started.set()
        release.wait(5)
        return {"id": item_id, "v": "old"}

    @write_through(get, registry=reg)
    def put(item_id: int, v: str) -> dict[str, Any]:
        return {"id": item_id, "v": v}

    with ThreadPoolExecutor(1) as pool:
        old = pool.submit(get, 1)
        assert started.wait(5)
        put(1, "new")
        assert get(1) == {"id": 1, "v": "new"}
        release.set()
        assert old.result(5) == {"id": 1, "v": "old"}
    assert get(1) == {"id": 1, "v": "new"}
    assert len(calls) == 1


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


def test_functools_partial_is_not_needed_for_methods(reg: Registry) -> None:
    calls = Calls()
    service_cls = make_repo_class(reg, calls)
    bound = service_cls("z").method
    assert callable(bound)
    assert functools.partial(bound, 1)() == "z:1"


def test_invalidate_tags_names_the_tag_a_template_rendered_with_special_characters() -> None:
    reg = Registry("memory://", prefix="esc")
    calls = Calls()

    @cached(registry=reg, tags=["item:{x}", "50%:{x}"])
    def get(x: str) -> str:
        calls(x)
        return x

    for value, tag in (("50%", "item:50%"), ("{a}", "item:{a}"), ("b", "50%:b")):
        get(value)
        reg.invalidate_tags(tag)
        get(value)
    assert calls.log == ["50%", "50%", "{a}", "{a}", "b", "b"]
