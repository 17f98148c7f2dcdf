"""``@write_through`` on every deployment: the written result becomes the reader's entry (its
key, TTL and tags), listed tags are invalidated after the write, and a write that fails, or
whose store fails, never leaves the old entry to be served."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cachedeco import BackendError, Registry, SerializationError, cached, write_through
from tests.support.acl import admins, confined_user, user_url
from tests.support.calls import Calls
from tests.support.deployments import BACKENDS, REDIS_BACKENDS, Deployment
from tests.support.peek import stored

pytestmark = pytest.mark.deployments(*BACKENDS)


def test_writer_that_raises_leaves_the_cache_untouched(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg, tags=["item:{item_id}"])
    def get(item_id: int) -> dict[str, Any]:
        calls(item_id)
        return {"id": item_id, "v": "db"}

    @write_through(get, registry=reg, invalidate=["item:{item_id}"])
    def put(item_id: int, v: str) -> dict[str, Any]:
        raise RuntimeError("database down")

    get(1)
    raw = stored(reg, get.key(1))
    with pytest.raises(RuntimeError, match="database down"):
        put(1, "new")
    assert stored(reg, get.key(1)) == raw
    assert get(1) == {"id": 1, "v": "db"}
    assert len(calls) == 1


def test_written_result_is_the_entry_without_calling_the_reader(
        reg: Registry, deployment: Deployment) -> None:
    calls = Calls()

    @cached(registry=reg, tags=["item:{item_id}"], ttl=100, jitter=0)
    def get(item_id: int, verbose: bool = False) -> dict[str, Any]:
        calls(item_id)
        return {"id": item_id, "v": "db"}

    @write_through(get, registry=reg)
    def put(data: dict[str, Any], item_id: int, verbose: bool = False) -> dict[str, Any]:
        return {"id": item_id, **data}

    assert put({"v": "w1"}, 1) == {"id": 1, "v": "w1"}  # no entry before: stored anyway
    assert get(1) == {"id": 1, "v": "w1"}
    assert put({"v": "w2"}, item_id=1) == {"id": 1, "v": "w2"}
    assert get(1) == {"id": 1, "v": "w2"}
    assert get(2) == {"id": 2, "v": "db"}
    assert calls.log == [2]
    if deployment.has_server:
        assert 90_000 <= deployment.raw.pttl(get.key(1)) <= 100_000  # the target's ttl
    reg.invalidate_tags("item:1")  # and the target's tags
    assert get(1) == {"id": 1, "v": "db"}


async def test_async_write_through(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg)
    async def get(item_id: int) -> dict[str, Any]:
        calls(item_id)
        return {"id": item_id, "v": "db"}

    @write_through(get, registry=reg)
    async def put(item_id: int, v: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"id": item_id, "v": v}

    assert await get(1) == {"id": 1, "v": "db"}
    assert await put(1, "new") == {"id": 1, "v": "new"}
    assert await get(1) == {"id": 1, "v": "new"}
    assert calls.log == [1]


def test_invalidate_tags_after_the_write(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg, tags=["item:{item_id}"])
    def get(item_id: int) -> dict[str, Any]:
        calls(("get", item_id))
        return {"id": item_id, "v": "db"}

    @cached(registry=reg, tags=["items", "owner:{owner}"])
    def listing(owner: str) -> list[int]:
        calls(("list", owner))
        return [1, 2]

    @write_through(get, registry=reg, invalidate=["items", "owner:{owner}"])
    def put(item_id: int, owner: str, v: str) -> dict[str, Any]:
        return {"id": item_id, "v": v}

    listing("ann")
    listing("bob")
    put(1, "ann", "new")
    listing("ann")
    listing("bob")
    assert get(1) == {"id": 1, "v": "new"}
    assert calls.log == [("list", "ann"), ("list", "bob"), ("list", "ann"), ("list", "bob")]


def test_write_through_the_api_example(reg: Registry) -> None:
    """The documented example: the reader is tagged "analyses" and the writer invalidates it."""
    calls = Calls()

    @cached(registry=reg, ttl=1800, tags=["analysis:{analysis_id}", "analyses"])
    def get_analysis(analysis_id: str) -> dict[str, Any]:
        calls(("get", analysis_id))
        return {"id": analysis_id, "v": "db"}

    @cached(registry=reg, tags=["analyses"])
    def list_analyses() -> list[str]:
        calls("list")
        return ["a"]

    @write_through(get_analysis, registry=reg, invalidate=["analyses"])
    def update_analysis(analysis_id: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"id": analysis_id, **data}

    get_analysis("a")
    list_analyses()
    assert update_analysis("a", {"v": "new"}) == {"id": "a", "v": "new"}
    assert list_analyses() == ["a"]
    assert calls.log == [("get", "a"), "list", "list"]  # the listing was invalidated
    assert get_analysis("a") == {"id": "a", "v": "new"}  # the written entry survives
    assert calls.log == [("get", "a"), "list", "list"]


@pytest.mark.parametrize("change", ["tag", "function", "key"])
def test_a_change_made_while_the_writer_ran_is_not_undone_by_its_store(
        reg: Registry, change: str) -> None:
    """Another writer changes the row and invalidates the entry (by one of its tags, its
    function or its key) between this writer's database write and its store: the result
    this writer read predates that change, so it must not become the entry (it did, tagged
    with the new tokens, until its TTL); the next read loads the row anew. The writer's own
    ``invalidate`` tags, which the entry carries too, do not stop its store."""
    row = {"name": "n1", "price": 1}

    @cached(registry=reg, tags=["product:{pk}", "products"])
    def get(pk: int) -> dict[str, Any]:
        return dict(row)

    def other_writer() -> None:  # lands between the write and its store
        row["name"] = "n2"
        if change == "tag":
            reg.invalidate_tags("product:1")
        elif change == "function":
            get.invalidate_all()
        else:
            get.invalidate(1)

    @write_through(get, registry=reg, invalidate=["products"])
    def set_price(pk: int, price: int) -> dict[str, Any]:
        row["price"] = price
        result = dict(row)
        other_writer()
        return result

    assert get(1) == {"name": "n1", "price": 1}
    assert set_price(1, 2) == {"name": "n1", "price": 2}
    assert get(1) == {"name": "n2", "price": 2}


def test_the_writers_own_invalidation_keeps_its_store(reg: Registry) -> None:
    """Invalidating a tag its entry carries, as the writer does, leaves its store standing."""
    loads = Calls()

    @cached(registry=reg, tags=["product:{pk}", "products"])
    def get(pk: int) -> dict[str, Any]:
        loads(pk)
        return {"price": 1}

    @write_through(get, registry=reg, invalidate=["products", "product:{pk}"])
    def set_price(pk: int, price: int) -> dict[str, Any]:
        return {"price": price}

    get(1)
    set_price(1, 2)
    assert get(1) == {"price": 2}
    assert loads.log == [1]


def test_write_through_key_template(reg: Registry, prefix: str) -> None:
    calls = Calls()

    @cached(registry=reg, key="user:{uid}")
    def user(uid: int) -> dict[str, Any]:
        calls(uid)
        return {"uid": uid, "name": "db"}

    @write_through(key="user:{uid}", registry=reg)
    def save_user(uid: int, name: str) -> dict[str, Any]:
        return {"uid": uid, "name": name}

    assert user(1) == {"uid": 1, "name": "db"}
    assert save_user(1, "written") == {"uid": 1, "name": "written"}
    assert user.key(1) == f"{prefix}:user:1"
    entry = stored(reg, f"{prefix}:user:1")  # bytes on a server, the object on memory://
    if isinstance(entry, bytes):
        assert b'"written"' in entry
    else:
        assert entry is not None and entry.value == {"uid": 1, "name": "written"}
    assert user(1) == {"uid": 1, "name": "written"}  # the reader sees what was written
    assert calls.log == [1]


def test_write_through_on_methods(reg: Registry) -> None:
    calls = Calls()

    class Repo:
        @cached(registry=reg, tags=["item:{item_id}"])
        def get(self, item_id: int) -> dict[str, Any]:
            calls(item_id)
            return {"id": item_id, "v": "db"}

        @write_through(get, registry=reg)
        def put(self, item_id: int, v: str) -> dict[str, Any]:
            return {"id": item_id, "v": v}

    one, two = Repo(), Repo()
    assert one.get(1) == {"id": 1, "v": "db"}
    assert two.put(1, "new") == {"id": 1, "v": "new"}
    assert one.get(1) == {"id": 1, "v": "new"}
    assert calls.log == [1]


@pytest.mark.deployments(*REDIS_BACKENDS)
def test_write_through_ttl_override(reg: Registry, deployment: Deployment) -> None:
    @cached(registry=reg, ttl=1000)
    def get(item_id: int) -> int:
        return 0

    @write_through(get, ttl=5, registry=reg)
    def put(item_id: int, v: int) -> int:
        return v

    put(1, 9)
    assert 0 < deployment.raw.pttl(get.key(1)) <= 5_500
    assert get(1) == 9


@pytest.fixture
def no_scripts_url(deployment: Deployment, prefix: str) -> Iterator[str]:
    """The deployment's URL logged in as a user that may SET and GET under the prefix but not
    run scripts: every store fails while reads and tombstones still work."""
    rules = ("+@all", "-@scripting")
    with confined_user(admins(deployment.raw), prefix, rules, keys=f"{prefix}*") as user:
        yield user_url(deployment.url, *user)


@pytest.mark.deployments("redis", "cluster")
@pytest.mark.parametrize("on_error", ["fallback", "raise"])
def test_store_failure_after_the_write_drops_the_old_entry(
        reg: Registry, make_registry: Callable[..., Registry], no_scripts_url: str,
        on_error: str) -> None:
    calls = Calls()
    broken = make_registry(no_scripts_url, on_error=on_error)

    def load(item_id: int) -> dict[str, Any]:
        calls(item_id)
        return {"id": item_id, "v": "db"}

    get = cached(registry=reg, tags=["item:{item_id}"])(load)
    get_broken = cached(registry=broken, tags=["item:{item_id}"])(load)

    @write_through(get_broken, registry=broken)
    def put(item_id: int, v: str) -> dict[str, Any]:
        calls(("write", item_id))
        return {"id": item_id, "v": v}

    assert get(1) == {"id": 1, "v": "db"}
    if on_error == "raise":
        with pytest.raises(BackendError):
            put(1, "new")
    else:
        assert put(1, "new") == {"id": 1, "v": "new"}
        assert broken.stats().backend_errors >= 1
    assert calls.log == [1, ("write", 1)]  # the write itself ran, once
    assert get(1) == {"id": 1, "v": "db"}  # the old entry did not survive: recomputed
    assert calls.log == [1, ("write", 1), 1]


@pytest.mark.deployments(*REDIS_BACKENDS)  # memory:// keeps objects: nothing to serialize
def test_unserializable_write_drops_the_old_entry(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg)
    def get(item_id: int) -> Any:
        calls(item_id)
        return {"id": item_id}

    @write_through(get, registry=reg)
    def put(item_id: int) -> Any:
        return {"id": item_id, "obj": object()}

    get(1)
    with pytest.raises(SerializationError):
        put(1)
    assert get(1) == {"id": 1}
    assert calls.log == [1, 1]  # the old entry was dropped, not served after the write
