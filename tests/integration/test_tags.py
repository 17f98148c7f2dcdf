"""Issue 4 on a real redis-server: O(1) tags, one-round-trip hits and invalidations, no stale
sets, ``@write_through``, ``invalidate_pattern`` and ``clear`` within the prefix."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import redis.connection

import cachedeco
from cachedeco import BackendError, ConfigurationError, Registry, SerializationError, cached
from cachedeco import write_through as write_through_
from tools.redis_servers import commandstats

write_through = write_through_


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def other_reg(make_registry: Callable[..., Registry], redis_url: str, prefix: str) -> Registry:
    """A second registry with the same prefix, as another process would have."""
    return make_registry(redis_url, prefix=prefix)


@pytest.fixture(scope="module")
def commands_before(redis_url: str) -> dict[str, int]:
    with redis.Redis.from_url(redis_url) as client:
        return commandstats(client)


@pytest.fixture(autouse=True)
def _snapshot_first(commands_before: dict[str, int]) -> None:
    """Take the module's INFO commandstats snapshot before its first test."""


class CountingConnection(redis.connection.Connection):
    sends: list[Any]

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends.append(command)
        super().send_packed_command(command, check_health)


@pytest.fixture
def counted(redis_url: str, prefix: str) -> Iterator[tuple[redis.Redis, list[Any]]]:
    """A client whose every send (one round trip; a pipeline is one send) is recorded."""
    sends: list[Any] = []
    url = redis.connection.parse_url(redis_url)
    pool = redis.ConnectionPool(
        connection_class=type("Counting", (CountingConnection,), {"sends": sends}),
        host=url["host"], port=url["port"], db=url.get("db", 0))
    client = redis.Redis(connection_pool=pool)
    yield client, sends
    client.close()
    pool.disconnect()


class Calls:
    def __init__(self) -> None:
        self.log: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, item: Any) -> None:
        with self.lock:
            self.log.append(item)

    def __len__(self) -> int:
        return len(self.log)

    def count(self, item: Any) -> int:
        return self.log.count(item)


def _scan(client: redis.Redis, prefix: str) -> list[bytes]:
    return list(client.scan_iter(match=f"{prefix}:*", count=1000))


# --- exactness ---------------------------------------------------------------------------------


def test_only_tagged_entries_recompute(reg: Registry) -> None:
    calls = Calls()

    @cached(registry=reg, tags=["user:{uid}", "users"])
    def user(uid: int) -> dict[str, int]:
        calls(("user", uid))
        return {"uid": uid}

    @cached(registry=reg, tags=lambda tid: [f"team:{tid}"])
    def team(tid: int) -> int:
        calls(("team", tid))
        return tid

    @cached(registry=reg)
    def plain(x: int) -> int:
        calls(("plain", x))
        return x

    def everything() -> None:
        for i in range(5):
            assert user(i) == {"uid": i}
            assert team(i) == i
            assert plain(i) == i

    everything()
    everything()
    assert len(calls) == 15
    reg.invalidate_tags("user:2")
    everything()
    assert calls.log[15:] == [("user", 2)]
    reg.invalidate_tags("team:1", "team:3", "never-used")
    everything()
    assert calls.log[16:] == [("team", 1), ("team", 3)]
    reg.invalidate_tags("users")
    everything()
    assert calls.log[18:] == [("user", i) for i in range(5)]
    user.invalidate_all()
    everything()
    assert calls.log[23:] == [("user", i) for i in range(5)]
    everything()
    assert len(calls) == 28


async def test_async_invalidation_is_exact(amake_registry: Callable[..., Registry],
                                           redis_url: str, prefix: str) -> None:
    reg = amake_registry(redis_url, prefix=prefix)
    calls = Calls()

    @cached(registry=reg, tags=["doc:{doc_id}", "docs"])
    async def doc(doc_id: int) -> str:
        calls(doc_id)
        return f"doc{doc_id}"

    assert [await doc(i) for i in range(4)] == [f"doc{i}" for i in range(4)]
    await reg.ainvalidate_tags("doc:1", "doc:2")
    assert [await doc(i) for i in range(4)] == [f"doc{i}" for i in range(4)]
    assert calls.log == [0, 1, 2, 3, 1, 2]
    await doc.invalidate_all()
    assert await doc(0) == "doc0"
    assert calls.log[-1] == 0 and len(calls) == 7


def test_default_registry_module_functions(redis_url: str, prefix: str) -> None:
    calls = Calls()
    try:
        cachedeco.configure(redis_url, prefix=prefix)

        @cached(tags=["g:{x}"])
        def f(x: int) -> int:
            calls(x)
            return x

        f(1)
        f(1)
        cachedeco.invalidate_tags("g:1")
        f(1)
        assert calls.log == [1, 1]

        async def invalidate() -> None:
            await cachedeco.ainvalidate_tags("g:1")
            await cachedeco.registry.aclose()

        asyncio.run(invalidate())
        f(1)
        assert calls.log == [1, 1, 1]
    finally:
        cachedeco.registry.close()
        cachedeco.configure("memory://")


def shared_loader(uid: int) -> dict[str, Any]:
    """Decorated per test (and in a child process): one module.qualname, one key."""
    return {"uid": uid, "by": "parent"}


def test_another_registry_sees_entries_and_invalidations(reg: Registry,
                                                         other_reg: Registry) -> None:
    calls = Calls()

    def loader(uid: int) -> dict[str, Any]:
        calls(uid)
        return shared_loader(uid)

    mine = cached(registry=reg, tags=["user:{uid}"])(loader)
    theirs = cached(registry=other_reg, tags=["user:{uid}"])(loader)
    assert mine(1) == theirs(1) == {"uid": 1, "by": "parent"}
    assert calls.log == [1]  # the other registry read what this one stored
    other_reg.invalidate_tags("user:1")
    assert mine(1) == {"uid": 1, "by": "parent"}
    assert calls.log == [1, 1]
    theirs.invalidate_all()
    assert mine(1) == {"uid": 1, "by": "parent"}
    assert calls.log == [1, 1, 1]
    mine.invalidate(1)
    assert theirs(1) == {"uid": 1, "by": "parent"}
    assert calls.log == [1, 1, 1, 1]


CHILD = """
import json, sys
from cachedeco import Registry, cached
url, prefix, module = sys.argv[1:4]
calls = []
def shared_loader(uid: int) -> dict:
    calls.append(uid)
    return {"uid": uid, "by": "child"}
shared_loader.__module__ = module
reg = Registry(url, prefix=prefix)
f = cached(registry=reg, tags=["user:{uid}"])(shared_loader)
seen = f(1)
reg.invalidate_tags("user:1")
reg.close()
print(json.dumps({"seen": seen, "calls": len(calls)}))
"""


def test_another_process_sees_entries_and_invalidations(reg: Registry, redis_url: str,
                                                        prefix: str) -> None:
    calls = Calls()

    def loader(uid: int) -> dict[str, Any]:
        calls(uid)
        return shared_loader(uid)

    loader.__module__, loader.__qualname__ = shared_loader.__module__, "shared_loader"
    f = cached(registry=reg, tags=["user:{uid}"])(loader)
    assert f(1) == {"uid": 1, "by": "parent"}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, redis_url, prefix, shared_loader.__module__],
        capture_output=True, text=True, timeout=30, check=True)
    report = json.loads(child.stdout)
    assert report == {"seen": {"uid": 1, "by": "parent"}, "calls": 0}  # a hit over there
    assert f(1) == {"uid": 1, "by": "parent"}
    assert calls.log == [1, 1]  # the child's invalidation reached this process


def test_key_templates_do_not_collide_with_tag_keys(reg: Registry) -> None:
    """A user's key template is free text after the prefix: ``"tag:{name}"`` (a blog's tag
    page) must not share a key with the tag ``"python"`` another function uses."""
    calls = Calls()

    @cached(registry=reg, key="tag:{name}")
    def tag_page(name: str) -> dict[str, str]:
        calls(("page", name))
        return {"name": name}

    @cached(registry=reg, tags=["python"])
    def post(pid: int) -> dict[str, int]:
        calls(("post", pid))
        return {"pid": pid}

    for _ in range(3):
        assert tag_page("python") == {"name": "python"}
        assert post(1) == {"pid": 1}
    assert calls.log == [("page", "python"), ("post", 1)]
    reg.invalidate_tags("python")
    assert (tag_page("python"), post(1)) == ({"name": "python"}, {"pid": 1})
    assert calls.log == [("page", "python"), ("post", 1), ("post", 1)]


# --- round trips and server commands -------------------------------------------------------------


def test_hit_with_three_tags_is_one_round_trip(counted: tuple[redis.Redis, list[Any]],
                                               prefix: str) -> None:
    client, sends = counted
    reg = Registry(client, prefix=prefix)

    @cached(registry=reg, tags=["a:{x}", "b", "c:{x}"])
    def f(x: int) -> list[int]:
        return [x]

    f(1)
    f(1)
    sends.clear()
    for _ in range(10):
        assert f(1) == [1]
    assert len(sends) == 10


def test_invalidating_three_tags_over_20000_entries_is_one_round_trip(
        counted: tuple[redis.Redis, list[Any]], prefix: str,
        redis_client: redis.Redis) -> None:
    client, sends = counted
    reg = Registry(client, prefix=prefix)
    calls = Calls()

    @cached(registry=reg, tags=["a", "b", "c"], ttl=600)
    def f(i: int) -> dict[str, str]:
        calls(i)
        return {"shape": "same for every i"}

    @cached(registry=reg, tags=["d"], ttl=600)
    def untouched(i: int) -> int:
        return i

    for i in range(500):  # real fills through the library...
        f(i)
    raw = redis_client.get(f.key(0))
    assert raw is not None
    with redis_client.pipeline(transaction=False) as pipe:  # ...and 19,500 copies of one
        for i in range(500, 20_000):
            pipe.set(f.key(i), raw, px=600_000)
        pipe.execute()
    untouched(1)
    sample = random.Random(4).sample(range(20_000), 200)
    before_calls = len(calls)
    for i in sample:
        f(i)
    assert len(calls) == before_calls  # all 20,000 are live, tagged entries

    sends.clear()
    before = commandstats(redis_client)
    reg.invalidate_tags("a", "b", "c")
    after = commandstats(redis_client)
    assert len(sends) == 1, sends
    executed = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    executed.pop("info", None)
    assert sum(executed.values()) <= 3, executed  # nothing per entry on the server either

    for i in sample:
        f(i)
    assert len(calls) == before_calls + len(sample)  # every sampled entry is now a miss
    untouched(1)
    assert untouched.stats().hits == 1


def test_tag_memory_is_small_and_constant(reg: Registry, redis_client: redis.Redis,
                                          prefix: str) -> None:
    def body(i: int) -> dict[str, Any]:
        return {"i": i, "pad": "x" * 60}

    plain = cached(registry=reg, key="plain:{i}")(body)
    tagged = cached(registry=reg, key="tagd:{i}", tags=["org:{i}", "shared", "kind"])(body)
    plain(1)
    tagged(1)
    overhead = redis_client.memory_usage(tagged.key(1)) - redis_client.memory_usage(plain.key(1))
    assert 0 <= overhead <= 3 * 24 + 40, overhead  # a short token per tag, no more

    one_tag = cached(registry=reg, key="many:{i}", tags=["shared"])(body)

    def tag_side() -> tuple[int, int]:
        entries = {one_tag.key(i).encode() for i in range(2_000)} | {
            plain.key(1).encode(), tagged.key(1).encode()}
        others = [k for k in _scan(redis_client, prefix) if k not in entries]
        return len(others), sum(redis_client.memory_usage(k) or 0 for k in others)

    for i in range(10):
        one_tag(i)
    keys_10, bytes_10 = tag_side()
    for i in range(10, 1_000):
        one_tag(i)
    keys_1000, bytes_1000 = tag_side()
    assert keys_1000 == keys_10  # no key per entry, no set of members
    assert bytes_1000 == bytes_10


def test_every_key_expires_and_tags_outlive_their_entries(reg: Registry,
                                                          redis_client: redis.Redis,
                                                          prefix: str) -> None:
    @cached(registry=reg, ttl=7200, jitter=0, tags=["long:{i}", "all"])
    def long_lived(i: int) -> int:
        return i

    @cached(registry=reg, ttl=60, tags=["all"])
    def short(i: int) -> int:
        return i

    long_lived(1)
    before_short = set(_scan(redis_client, prefix))
    short(1)  # shares the tag "all": it must not shorten it
    own_short = set(_scan(redis_client, prefix)) - before_short  # its entry and fn tag
    entry_ttl = redis_client.pttl(long_lived.key(1))
    keys = _scan(redis_client, prefix)
    assert len(keys) == 6  # 2 entries, 2 function tags, "long:1" and "all"
    for key in keys:
        ttl = redis_client.pttl(key)
        assert ttl > 0, key  # nothing lives forever
        if key != long_lived.key(1).encode() and key not in own_short:
            assert ttl >= entry_ttl - 1_000, key  # no tag dies before its entries


# --- no stale set --------------------------------------------------------------------------------

RACES = ["write_through", "invalidate_tags", "invalidate", "invalidate_all"]


@pytest.mark.parametrize("who", ["same registry", "other registry"])
@pytest.mark.parametrize("race", RACES)
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_a_fill_that_began_before_a_change_does_not_store(
        reg: Registry, other_reg: Registry, race: str, who: str, warm: bool) -> None:
    started, release = threading.Event(), threading.Event()
    calls = Calls()
    block = {"on": False}

    def load(item_id: int) -> dict[str, Any]:
        calls(item_id)
        if block["on"]:
            block["on"] = False
            started.set()
            assert release.wait(5)
            return {"id": item_id, "v": "old fill"}
        return {"id": item_id, "v": f"load {len(calls)}"}

    get = cached(registry=reg, tags=["item:{item_id}"])(load)
    acting = reg if who == "same registry" else other_reg
    get_there = get if acting is reg else cached(registry=acting,
                                                 tags=["item:{item_id}"])(load)

    @write_through(get_there, registry=acting)
    def put(item_id: int, v: str) -> dict[str, Any]:
        return {"id": item_id, "v": v}

    if warm:  # an entry existed and was dropped: the fill starts from a tombstone or token
        get(1)
        get.invalidate(1)
        reg.invalidate_tags("item:1")
    block["on"] = True
    with ThreadPoolExecutor(1) as pool:
        fill = pool.submit(get, 1)
        assert started.wait(5)
        if race == "write_through":
            put(1, "written")
        elif race == "invalidate_tags":
            acting.invalidate_tags("item:1")
        elif race == "invalidate":
            get_there.invalidate(1)
        else:
            get_there.invalidate_all()
        release.set()
        assert fill.result(5) == {"id": 1, "v": "old fill"}
    loads = len(calls)
    result = get(1)
    if race == "write_through":
        assert result == {"id": 1, "v": "written"}
        assert len(calls) == loads  # served from the write, the old fill was not stored
    else:
        assert result == {"id": 1, "v": f"load {loads + 1}"}  # recomputed
    assert get(1) == result


async def test_async_fill_that_began_before_an_invalidation_does_not_store(
        amake_registry: Callable[..., Registry], redis_url: str, prefix: str) -> None:
    reg = amake_registry(redis_url, prefix=prefix)
    started, release = asyncio.Event(), asyncio.Event()
    counter = iter(range(100))

    @cached(registry=reg, tags=["k:{k}"])
    async def get(k: int) -> int:
        value = next(counter)
        if value == 0:
            started.set()
            await release.wait()
        return value

    fill = asyncio.create_task(get(1))
    await started.wait()
    await reg.ainvalidate_tags("k:1")
    release.set()
    assert await fill == 0
    assert await get(1) == 1
    assert await get(1) == 1


# --- write_through -------------------------------------------------------------------------------


def test_writer_that_raises_leaves_the_cache_untouched(reg: Registry,
                                                       redis_client: redis.Redis) -> None:
    calls = Calls()

    @cached(registry=reg, tags=["item:{item_id}"])
    def get(item_id: int) -> dict[str, Any]:
        calls(item_id)
        return {"id": item_id, "v": "db"}

    @write_through(get, registry=reg, invalidate=["item:{item_id}"])
    def put(item_id: int, v: str) -> dict[str, Any]:
        raise RuntimeError("database down")

    get(1)
    raw = redis_client.get(get.key(1))
    with pytest.raises(RuntimeError, match="database down"):
        put(1, "new")
    assert redis_client.get(get.key(1)) == raw
    assert get(1) == {"id": 1, "v": "db"}
    assert len(calls) == 1


def test_written_result_is_the_entry_without_calling_the_reader(
        reg: Registry, redis_client: redis.Redis) -> None:
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
    assert 90_000 <= redis_client.pttl(get.key(1)) <= 100_000  # the target's ttl
    reg.invalidate_tags("item:1")  # and the target's tags
    assert get(1) == {"id": 1, "v": "db"}


async def test_async_write_through(amake_registry: Callable[..., Registry], redis_url: str,
                                   prefix: str) -> None:
    reg = amake_registry(redis_url, prefix=prefix)
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
    """API.md's example: the reader is tagged "analyses" and the writer invalidates it."""
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


def test_write_through_key_template(reg: Registry, redis_client: redis.Redis,
                                    prefix: str) -> None:
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
    stored = redis_client.get(f"{prefix}:user:1")
    assert stored is not None and b'"written"' in stored
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


def test_write_through_tags_with_a_target_is_refused_at_decoration(reg: Registry) -> None:
    """``tags=`` with a @cached target would store an entry its reader can never serve (the
    reader checks its own tags' tokens), so it is a ConfigurationError (see README)."""

    @cached(registry=reg, tags=["item:{item_id}"])
    def get(item_id: int) -> dict[str, Any]:
        return {"id": item_id, "v": "db"}

    with pytest.raises(ConfigurationError, match="tags= applies only with key="):

        @write_through(get, tags=["custom:{item_id}"], registry=reg)
        def put(item_id: int, v: str) -> dict[str, Any]:
            return {"id": item_id, "v": v}


def test_write_through_ttl_override(reg: Registry, redis_client: redis.Redis) -> None:
    @cached(registry=reg, ttl=1000)
    def get(item_id: int) -> int:
        return 0

    @write_through(get, ttl=5, registry=reg)
    def put(item_id: int, v: int) -> int:
        return v

    put(1, 9)
    assert 0 < redis_client.pttl(get.key(1)) <= 5_500
    assert get(1) == 9


@pytest.fixture
def no_scripts_registry(make_registry: Callable[..., Registry], redis_url: str, prefix: str,
                        redis_client: redis.Redis) -> Iterator[Callable[..., Registry]]:
    """Registries logged in as an ACL user that may SET and GET under the prefix but not run
    scripts: every store fails while reads and tombstones still work."""
    user = f"{prefix}-noscript"
    redis_client.acl_setuser(user, enabled=True, passwords=["+pw"], keys=[f"{prefix}*"],
                             commands=["+@all", "-@scripting"])
    url = redis_url.replace("redis://", f"redis://{user}:pw@", 1)

    def make(**settings: Any) -> Registry:
        return make_registry(url, prefix=prefix, **settings)

    try:
        yield make
    finally:
        redis_client.acl_deluser(user)


@pytest.mark.parametrize("on_error", ["fallback", "raise"])
def test_store_failure_after_the_write_drops_the_old_entry(
        reg: Registry, no_scripts_registry: Callable[..., Registry], redis_client: redis.Redis,
        on_error: str) -> None:
    calls = Calls()
    broken = no_scripts_registry(on_error=on_error)

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


# --- invalidate_pattern and clear ----------------------------------------------------------------


def _fill(reg: Registry, calls: Calls) -> tuple[Any, Any]:
    @cached(registry=reg, key="user:{uid}")
    def user(uid: int) -> int:
        calls(("user", uid))
        return uid

    @cached(registry=reg, key="item:{iid}")
    def item(iid: int) -> int:
        calls(("item", iid))
        return iid

    for i in range(3):
        user(i)
        item(i)
    return user, item


@pytest.mark.parametrize("glob_prefix", ["a*b", "a?b", "a[XY]b", "a\\b"])
def test_invalidate_pattern_stays_within_the_prefix(
        make_registry: Callable[..., Registry], redis_url: str, prefix: str,
        redis_client: redis.Redis, glob_prefix: str) -> None:
    mine = make_registry(redis_url, prefix=prefix + glob_prefix)
    foreign = make_registry(redis_url, prefix=prefix + "aXb")
    calls, foreign_calls = Calls(), Calls()
    user, item = _fill(mine, calls)
    f_user, f_item = _fill(foreign, foreign_calls)
    assert mine.invalidate_pattern("user:*") == 3
    for i in range(3):
        user(i)
        item(i)
        f_user(i)
        f_item(i)
    assert calls.log[6:] == [("user", i) for i in range(3)]
    assert len(foreign_calls) == 6
    assert mine.invalidate_pattern("*") >= 6
    assert mine.invalidate_pattern("nothing:*") == 0
    for i in range(3):
        f_user(i)
        f_item(i)
    assert len(foreign_calls) == 6
    assert all(redis_client.exists(f_user.key(i), f_item.key(i)) == 2 for i in range(3))


async def test_ainvalidate_pattern_and_aclear(amake_registry: Callable[..., Registry],
                                              redis_url: str, prefix: str,
                                              redis_client: redis.Redis) -> None:
    reg = amake_registry(redis_url, prefix=prefix + "a*")
    foreign_key = f"{prefix}aa:user:1"
    redis_client.set(foreign_key, b"foreign", px=60_000)

    @cached(registry=reg, key="user:{uid}", tags=["u"])
    async def user(uid: int) -> int:
        return uid

    for i in range(4):
        await user(i)
    assert await reg.ainvalidate_pattern("user:[12]") == 2
    assert await reg.aclear() >= 2
    internal = f"{prefix}a*:~".encode()  # cachedeco's own keys (tags) are spared
    assert [k for k in _scan(redis_client, prefix + "a\\*") if not k.startswith(internal)] == []
    assert redis_client.get(foreign_key) == b"foreign"


@pytest.mark.parametrize("glob_prefix", ["", "a*b"])
def test_clear_leaves_foreign_keys_alone(make_registry: Callable[..., Registry],
                                         redis_url: str, prefix: str,
                                         redis_client: redis.Redis, glob_prefix: str) -> None:
    mine = make_registry(redis_url, prefix=prefix + glob_prefix)
    foreign = [f"{prefix}{glob_prefix}x:user:1", f"{prefix}{glob_prefix}", f"{prefix}aXb:k",
               f"{prefix}other:{prefix}{glob_prefix}:user:1"]
    for key in foreign:
        redis_client.set(key, b"foreign", px=60_000)
    calls = Calls()

    @cached(registry=mine, tags=["t:{x}"])
    def f(x: int) -> int:
        calls(x)
        return x

    for x in range(5):
        f(x)
    mine.invalidate_tags("t:1")
    assert mine.clear() >= 5
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in mine.prefix)
    internal = f"{mine.prefix}:~".encode()  # tags, leases, queues: cachedeco's own, spared
    left = list(redis_client.scan_iter(match=f"{escaped}:*"))
    assert [k for k in left if not k.startswith(internal)] == []
    assert any(k.startswith(internal + b"tag:") for k in left)
    assert [redis_client.get(k) for k in foreign] == [b"foreign"] * len(foreign)
    for x in range(5):
        f(x)
    assert len(calls) == 10


def test_a_lost_tag_key_never_resurrects_old_entries(reg: Registry,
                                                       redis_client: redis.Redis,
                                                       prefix: str) -> None:
    """Entries record their tags' tokens and never 'missing': a tag key that is evicted or
    expires (here: deleted, as eviction would) makes its entries miss, and so does a tag whose
    invalidation mark later expired."""
    calls = Calls()

    @cached(registry=reg, tags=["t"])
    def f(x: int) -> int:
        calls(x)
        return x

    f(1)
    redis_client.delete(f"{prefix}:~tag:t")  # evicted
    f(1)
    assert calls.log == [1, 1]
    f(2)
    reg.invalidate_tags("t")
    redis_client.delete(f"{prefix}:~tag:t")  # the mark expired
    f(1)
    f(2)
    assert calls.log == [1, 1, 2, 1, 2]
    f(1)
    f(2)
    assert calls.log == [1, 1, 2, 1, 2]  # cached again under the new token


# --- last: no KEYS, FLUSHDB or FLUSHALL during this module ----------------------------------------


def test_zz_no_keys_or_flush_commands_were_run(commands_before: dict[str, int],
                                               redis_client: redis.Redis) -> None:
    after = commandstats(redis_client)
    for command in ("keys", "flushdb", "flushall"):
        assert after.get(command, 0) == commands_before.get(command, 0), command
    assert after.get("scan", 0) > commands_before.get("scan", 0)  # the clean-ups did run
