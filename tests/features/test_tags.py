"""Tags on every deployment: exactly the tagged entries recompute, whatever registry or process
invalidates; tag keys are small, constant and outlive their entries; a fill that began before
a change never stores; a lost tag key never brings old entries back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import cachedeco
from cachedeco import Registry, cached, write_through
from tests.support.calls import Calls
from tests.support.deployments import (
    BACKENDS,
    REDIS_BACKENDS,
    SERVERS,
    Deployment,
)

pytestmark = pytest.mark.deployments(*BACKENDS)


def _scan(raw: Any, prefix: str) -> list[bytes]:
    return list(raw.scan_iter(match=f"{prefix}:*", count=1000))


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


async def test_async_invalidation_is_exact(reg: Registry) -> None:
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


def test_default_registry_module_functions(deployment: Deployment, prefix: str) -> None:
    calls = Calls()
    try:
        cachedeco.configure(deployment.url, prefix=prefix)

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


@pytest.mark.deployments(*SERVERS)
def test_another_registry_sees_entries_and_invalidations(
        reg: Registry, deployment: Deployment, make_registry: Callable[..., Registry]) -> None:
    other_reg = make_registry(deployment.url)  # as another process would have it
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


@pytest.mark.deployments("redis", "cluster")
def test_another_process_sees_entries_and_invalidations(reg: Registry, deployment: Deployment,
                                                        prefix: str) -> None:
    calls = Calls()

    def loader(uid: int) -> dict[str, Any]:
        calls(uid)
        return shared_loader(uid)

    loader.__module__, loader.__qualname__ = shared_loader.__module__, "shared_loader"
    f = cached(registry=reg, tags=["user:{uid}"])(loader)
    assert f(1) == {"uid": 1, "by": "parent"}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, deployment.url, prefix, shared_loader.__module__],
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


def test_tag_with_braces_still_works(make_registry: Callable[..., Registry],
                                    deployment: Deployment) -> None:
    """A tag carrying its own hash tag lands in its own cluster slot: one more command, never
    a wrong answer."""
    reg = make_registry(deployment.url, on_error="raise")
    loads: list[int] = []

    @cachedeco.cached(registry=reg, tags=lambda x: ["plain", "odd{slot}"])
    def f(x: int) -> int:
        loads.append(x)
        return x

    f(1), f(1)
    reg.invalidate_tags("odd{slot}")
    f(1), f(1)
    reg.invalidate_tags("plain", "odd{slot}")
    f(1)
    assert loads == [1, 1, 1]


def test_invalidate_tags_names_the_tag_a_template_rendered_with_special_characters(
        reg: Registry) -> None:
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


# --- tag keys on the server -----------------------------------------------------------------------


@pytest.mark.deployments("redis")  # the cluster's tag slot: tests/deploy/test_cluster.py
def test_tag_memory_is_small_and_constant(reg: Registry, deployment: Deployment,
                                          prefix: str) -> None:
    raw = deployment.raw

    def body(i: int) -> dict[str, Any]:
        return {"i": i, "pad": "x" * 60}

    plain = cached(registry=reg, key="plain:{i}")(body)
    tagged = cached(registry=reg, key="tagd:{i}", tags=["org:{i}", "shared", "kind"])(body)
    plain(1)
    tagged(1)
    overhead = raw.memory_usage(tagged.key(1)) - raw.memory_usage(plain.key(1))
    assert 0 <= overhead <= 3 * 24 + 40, overhead  # a short token per tag, no more

    one_tag = cached(registry=reg, key="many:{i}", tags=["shared"])(body)

    def tag_side() -> tuple[int, int]:
        entries = {one_tag.key(i).encode() for i in range(2_000)} | {
            plain.key(1).encode(), tagged.key(1).encode()}
        others = [k for k in _scan(raw, prefix) if k not in entries]
        return len(others), sum(raw.memory_usage(k) or 0 for k in others)

    for i in range(10):
        one_tag(i)
    keys_10, bytes_10 = tag_side()
    for i in range(10, 1_000):
        one_tag(i)
    keys_1000, bytes_1000 = tag_side()
    assert keys_1000 == keys_10  # no key per entry, no set of members
    assert bytes_1000 == bytes_10


@pytest.mark.deployments(*REDIS_BACKENDS)
def test_every_key_expires_and_tags_outlive_their_entries(reg: Registry, deployment: Deployment,
                                                          prefix: str) -> None:
    raw = deployment.raw

    @cached(registry=reg, ttl=7200, jitter=0, tags=["long:{i}", "all"])
    def long_lived(i: int) -> int:
        return i

    @cached(registry=reg, ttl=60, tags=["all"])
    def short(i: int) -> int:
        return i

    long_lived(1)
    before_short = set(_scan(raw, prefix))
    short(1)  # shares the tag "all": it must not shorten it
    own_short = set(_scan(raw, prefix)) - before_short  # its entry and fn tag
    entry_ttl = raw.pttl(long_lived.key(1))
    keys = _scan(raw, prefix)
    assert len(keys) == 6  # 2 entries, 2 function tags, "long:1" and "all"
    for key in keys:
        ttl = raw.pttl(key)
        assert ttl > 0, key  # nothing lives forever
        if key != long_lived.key(1).encode() and key not in own_short:
            assert ttl >= entry_ttl - 1_000, key  # no tag dies before its entries


@pytest.mark.deployments("redis", "sentinel")  # a cluster keeps tag keys in a slot of their own
def test_a_lost_tag_key_never_resurrects_old_entries(reg: Registry, deployment: Deployment,
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
    deployment.raw.delete(f"{prefix}:~tag:t")  # evicted
    f(1)
    assert calls.log == [1, 1]
    f(2)
    reg.invalidate_tags("t")
    deployment.raw.delete(f"{prefix}:~tag:t")  # the mark expired
    f(1)
    f(2)
    assert calls.log == [1, 1, 2, 1, 2]
    f(1)
    f(2)
    assert calls.log == [1, 1, 2, 1, 2]  # cached again under the new token


# --- no stale set ---------------------------------------------------------------------------------


RACES = ["write_through", "invalidate_tags", "invalidate", "invalidate_all"]


@pytest.mark.deployments(*REDIS_BACKENDS)
@pytest.mark.parametrize("who", ["same registry", "other registry"])
@pytest.mark.parametrize("race", RACES)
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_a_fill_that_began_before_a_change_does_not_store(
        reg: Registry, deployment: Deployment, make_registry: Callable[..., Registry], *,
        race: str, who: str, warm: bool) -> None:
    other_reg = make_registry(deployment.url)
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
        reg: Registry) -> None:
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
