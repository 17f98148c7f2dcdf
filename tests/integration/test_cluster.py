"""cachedeco on a real 3-primary Redis Cluster: the @cached flows (sync and async, from a URL and
from ready clients), round trips per hit, the two-step store and its window, SCAN on every
primary, redirects, an unreachable cluster failing open, and the backend conformance suite
(``tests/backends/conformance.py``) over the sync and asyncio cluster backends.

``check_flows`` / ``acheck_flows`` are the deployment-independent flows; the Sentinel and ACL
suites run them too.
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio.cluster
from redis.cluster import RedisCluster
from redis.crc import key_slot

import cachedeco
from cachedeco import Registry
from cachedeco.backends.redis import urls
from cachedeco.backends.redis._async.cluster import AsyncClusterBackend
from cachedeco.backends.redis._sync.cluster import ClusterBackend
from cachedeco.backends.redis.cluster_plan import tag_plan, tag_slot_key
from cachedeco.core.entry import (
    CREATED_TAG,
    Write,
    new_marker,
    new_tag_token,
    new_tombstone,
    tag_token,
)
from cachedeco.errors import ConfigurationError
from tests.backends.conformance import (
    BackendContract,
    BytesBackendContract,
    Driver,
    Poke,
    make_write,
)
from tools.redis_servers import cluster_hosts, commandstats

Raw = redis.Redis | RedisCluster


# --- the flows, shared with test_sentinel.py and test_acl.py -----------------------------------


def check_flows(reg: Registry, raw: Raw, prefix: str) -> None:
    """miss → hit, tag exactness, f.invalidate, f.invalidate_all, write_through,
    invalidate_pattern and clear (sparing a key outside the prefix), on ``reg``."""
    calls: collections.Counter[tuple[str, int]] = collections.Counter()
    names: dict[int, str] = {}

    @cachedeco.cached(registry=reg, key="user:{uid}", tags=["user:{uid}", "users"])
    def user(uid: int) -> dict[str, Any]:
        calls["user", uid] += 1
        return {"id": uid, "name": names.get(uid, "?")}

    @cachedeco.cached(registry=reg, key="team:{tid}", tags=["team:{tid}"])
    def team(tid: int) -> list[int]:
        calls["team", tid] += 1
        return [tid, tid + 1]

    @cachedeco.write_through(user, registry=reg, invalidate=["team:{tid}"])
    def save_user(uid: int, tid: int, name: str) -> dict[str, Any]:
        names[uid] = name
        return {"id": uid, "name": name}

    def loads() -> dict[tuple[str, int], int]:
        return dict(calls)

    # miss, then hit
    assert user(1) == {"id": 1, "name": "?"}
    assert user(1) == {"id": 1, "name": "?"}
    assert calls["user", 1] == 1
    assert user.stats().hits == 1
    user(2)
    team(1)
    before = loads()
    # a tag drops exactly its entries
    reg.invalidate_tags("user:1")
    user(1), user(2), team(1)
    assert loads() == {**before, ("user", 1): 2}
    reg.invalidate_tags("users")
    user(1), user(2), team(1)
    assert loads() == {**before, ("user", 1): 3, ("user", 2): 2}
    # one entry
    assert user.invalidate(2) is True
    assert user.invalidate(99) is False
    user(1), user(2)
    assert calls["user", 1] == 3 and calls["user", 2] == 3
    # every entry of one function
    user.invalidate_all()
    user(1), user(2), team(1)
    assert (calls["user", 1], calls["user", 2], calls["team", 1]) == (4, 4, 1)
    # write-through: the written record is served, the listed tag dropped
    assert save_user(1, 1, "ada") == {"id": 1, "name": "ada"}
    assert user(1) == {"id": 1, "name": "ada"} and calls["user", 1] == 4
    team(1)
    assert calls["team", 1] == 2
    # a pattern
    for uid in range(10, 20):
        user(uid)
    assert reg.invalidate_pattern("user:1?") == 10
    user(10), user(1)
    assert calls["user", 10] == 2 and calls["user", 1] == 4
    # clear, sparing a key outside the prefix
    foreign = f"{prefix}-foreign"
    raw.set(foreign, b"keep")
    assert reg.clear() > 0
    user(1), team(1)
    assert calls["user", 1] == 5 and calls["team", 1] == 3
    assert raw.get(foreign) == b"keep"
    assert user.stats().backend_errors == 0


async def acheck_flows(reg: Registry, raw: Raw, prefix: str) -> None:
    """The asyncio twin of :func:`check_flows`."""
    calls: collections.Counter[tuple[str, int]] = collections.Counter()
    names: dict[int, str] = {}

    @cachedeco.cached(registry=reg, key="auser:{uid}", tags=["user:{uid}", "users"])
    async def user(uid: int) -> dict[str, Any]:
        calls["user", uid] += 1
        return {"id": uid, "name": names.get(uid, "?")}

    @cachedeco.cached(registry=reg, key="ateam:{tid}", tags=["team:{tid}"])
    async def team(tid: int) -> list[int]:
        calls["team", tid] += 1
        return [tid, tid + 1]

    @cachedeco.write_through(user, registry=reg, invalidate=["team:{tid}"])
    async def save_user(uid: int, tid: int, name: str) -> dict[str, Any]:
        names[uid] = name
        return {"id": uid, "name": name}

    assert await user(1) == {"id": 1, "name": "?"}
    assert await user(1) == {"id": 1, "name": "?"}
    assert calls["user", 1] == 1
    assert user.stats().hits == 1
    await user(2)
    await team(1)
    before = dict(calls)
    await reg.ainvalidate_tags("user:1")
    for call in (user(1), user(2), team(1)):
        await call
    assert dict(calls) == {**before, ("user", 1): 2}
    await reg.ainvalidate_tags("users")
    for call in (user(1), user(2), team(1)):
        await call
    assert dict(calls) == {**before, ("user", 1): 3, ("user", 2): 2}
    assert await user.invalidate(2) is True
    assert await user.invalidate(99) is False
    await user(1)
    await user(2)
    assert calls["user", 1] == 3 and calls["user", 2] == 3
    await user.invalidate_all()
    for call in (user(1), user(2), team(1)):
        await call
    assert (calls["user", 1], calls["user", 2], calls["team", 1]) == (4, 4, 1)
    assert await save_user(1, 1, "ada") == {"id": 1, "name": "ada"}
    assert await user(1) == {"id": 1, "name": "ada"} and calls["user", 1] == 4
    await team(1)
    assert calls["team", 1] == 2
    for uid in range(10, 20):
        await user(uid)
    assert await reg.ainvalidate_pattern("auser:1?") == 10
    await user(10)
    await user(1)
    assert calls["user", 10] == 2 and calls["user", 1] == 4
    foreign = f"{prefix}-foreign"
    raw.set(foreign, b"keep")
    assert await reg.aclear() > 0
    await user(1)
    await team(1)
    assert calls["user", 1] == 5 and calls["team", 1] == 3
    assert raw.get(foreign) == b"keep"
    assert user.stats().backend_errors == 0


# --- the flows on the cluster ------------------------------------------------------------------


def _nodes(url: str) -> list[redis.cluster.ClusterNode]:
    return [redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
            for h, p in cluster_hosts(url)]


def test_flows_sync_from_url(cluster_url: str, prefix: str, cluster_client: RedisCluster) -> None:
    reg = Registry(cluster_url, prefix=prefix, on_error="raise")
    try:
        assert isinstance(reg.slot("default").backend(), ClusterBackend)
        check_flows(reg, cluster_client, prefix)
    finally:
        reg.close()


async def test_flows_async_from_url(cluster_url: str, prefix: str,
                                    cluster_client: RedisCluster) -> None:
    reg = Registry(cluster_url, prefix=prefix, on_error="raise")
    try:
        assert isinstance(reg.slot("default").abackend(), AsyncClusterBackend)
        await acheck_flows(reg, cluster_client, prefix)
    finally:
        await reg.aclose()


def test_flows_sync_ready_client(cluster_url: str, prefix: str,
                                 cluster_client: RedisCluster) -> None:
    client = RedisCluster(startup_nodes=_nodes(cluster_url), socket_timeout=2.0)
    reg = Registry(client, prefix=prefix, on_error="raise")
    try:
        check_flows(reg, cluster_client, prefix)
    finally:
        reg.close()


async def test_flows_async_ready_client(cluster_url: str, prefix: str,
                                        cluster_client: RedisCluster) -> None:
    nodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in cluster_hosts(cluster_url)]
    client = redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, socket_timeout=2.0)
    reg = Registry(client, prefix=prefix, on_error="raise")
    try:
        await acheck_flows(reg, cluster_client, prefix)
    finally:
        await reg.aclose()


def test_decoding_cluster_client_is_refused(cluster_url: str) -> None:
    client = RedisCluster(startup_nodes=_nodes(cluster_url), decode_responses=True)
    try:
        with pytest.raises(ConfigurationError, match="decode_responses"):
            Registry(client).slot("default").backend()
    finally:
        client.close()


# --- round trips --------------------------------------------------------------------------------

_BOOKKEEPING = ("info", "cluster|slots", "cluster|shards", "cluster|nodes", "command",
                "client|setinfo", "hello", "ping", "script|load")


def primaries_commandstats(client: Any) -> dict[str, int]:
    """Calls per command summed over every primary (each node asked on its own).

    ``tools.redis_servers.commandstats(RedisCluster)`` asks only the client's default node.
    """
    total: collections.Counter[str] = collections.Counter()
    for node in client.get_primaries():
        total.update(commandstats(client.get_redis_connection(node)))
    return dict(total)


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Data commands run between two commandstats snapshots."""
    return {name: n - before.get(name, 0) for name, n in after.items()
            if name not in _BOOKKEEPING and n != before.get(name, 0)}


def _no_routing(*args: Any) -> Any:
    raise AssertionError(f"routed fallback used for {args}")


def test_hit_costs_two_commands(cluster_url: str, prefix: str, cluster_client: RedisCluster,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A hit with 3 tags (4 tag keys with the implicit one): one GET and one MGET."""
    reg = Registry(cluster_url, prefix=prefix, on_error="raise")

    @cachedeco.cached(registry=reg, tags=["a:{x}", "b", "c:{x}"])
    def f(x: int) -> int:
        return x * 2

    try:
        for x in range(20):
            f(x)  # fill
        f(0)
        before = primaries_commandstats(cluster_client)
        assert [f(x) for x in range(20)] == [x * 2 for x in range(20)]
        spent = _delta(before, primaries_commandstats(cluster_client))
        assert spent == {"get": 20, "mget": 20}
        assert f.stats().hits == 21
        # hits take the direct path, never the routed fallback
        with monkeypatch.context() as patch:
            patch.setattr(reg.slot("default").backend(), "_routed", _no_routing)
            assert [f(x) for x in range(20)] == [x * 2 for x in range(20)]
        assert f.stats().hits == 41
        # a fill: CHECK_TAGS on the tag slot, STORE_ENTRY on the entry's slot
        before = primaries_commandstats(cluster_client)
        f(100)
        spent = _delta(before, primaries_commandstats(cluster_client))
        assert (spent["evalsha"], spent["mget"]) == (2, 1)  # (scripts' own calls count too)
    finally:
        reg.close()


async def test_async_hit_costs_two_commands(cluster_url: str, prefix: str,
                                            cluster_client: RedisCluster,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    reg = Registry(cluster_url, prefix=prefix, on_error="raise")

    @cachedeco.cached(registry=reg, tags=["a:{x}", "b", "c:{x}"])
    async def f(x: int) -> int:
        return x * 2

    try:
        for x in range(20):
            await f(x)
        before = primaries_commandstats(cluster_client)
        assert [await f(x) for x in range(20)] == [x * 2 for x in range(20)]
        assert _delta(before, primaries_commandstats(cluster_client)) == {"get": 20, "mget": 20}
        # hits take the direct path, never the routed fallback
        monkeypatch.setattr(reg.slot("default").abackend(), "_routed", _no_routing)
        assert [await f(x) for x in range(20)] == [x * 2 for x in range(20)]
        assert f.stats().hits == 40
    finally:
        await reg.aclose()


def test_tags_share_one_slot_and_invalidate_in_one_command_per_tag(
        cluster_url: str, prefix: str, cluster_client: RedisCluster) -> None:
    reg = Registry(cluster_url, prefix=prefix, on_error="raise")
    tags = [f"t{i}" for i in range(50)]
    keys = [reg.keyspace.tag(t) for t in tags]
    assert len({key_slot(tag_slot_key(k).encode()) for k in keys}) == 1
    assert len(tag_plan(tuple(keys)).groups) == 1
    try:
        before = primaries_commandstats(cluster_client)
        reg.invalidate_tags(*tags)
        assert _delta(before, primaries_commandstats(cluster_client)) == {"set": 50}
        # the tag keys are where reads look, under the prefix (ACL ~prefix:*)
        names = [tag_slot_key(k) for k in keys]
        assert all(n.startswith(f"{prefix}:") for n in names)
        assert all(v is not None for v in cluster_client.mget(names))
    finally:
        reg.close()


def test_tag_with_braces_lands_in_its_own_slot_and_still_works(
        cluster_url: str, prefix: str) -> None:
    """A tag carrying its own hash tag costs one more command, never correctness."""
    reg = Registry(cluster_url, prefix=prefix, on_error="raise")
    loads: list[int] = []

    @cachedeco.cached(registry=reg, tags=lambda x: ["plain", "odd{slot}"])
    def f(x: int) -> int:
        loads.append(x)
        return x

    try:
        f(1), f(1)
        reg.invalidate_tags("odd{slot}")
        f(1), f(1)
        reg.invalidate_tags("plain", "odd{slot}")
        f(1)
        assert loads == [1, 1, 1]
    finally:
        reg.close()


def test_stampede_lock_and_mutex_on_the_cluster(cluster_url: str, prefix: str) -> None:
    """The lease code runs over the cluster backend's ``client``: one load for 5 callers."""
    reg = Registry(cluster_url, prefix=prefix, on_error="raise")
    loads: list[int] = []

    @cachedeco.cached(registry=reg, lock=True, tags=["t"])
    def slow(x: int) -> int:
        time.sleep(0.2)
        loads.append(x)
        return x

    try:
        threads = [threading.Thread(target=slow, args=(1,)) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert loads == [1]
        with reg.lock("job", ttl=5), pytest.raises(cachedeco.LockTimeout):
            reg.lock("job", ttl=5, timeout=0.1).acquire()
    finally:
        reg.close()


# --- the two-step store --------------------------------------------------------------------------


def _write(tag_keys: tuple[str, ...], state: tuple[str, tuple[str | None, ...]] | None,
           value: bytes = b"1") -> Write:
    expect, expect_tags = (None, None) if state is None else state
    return Write(marker=new_marker(), value=value, soft=2e9, delta=0.0, px=60_000,
                 tag_keys=tag_keys, expect=expect, expect_tags=expect_tags,
                 new_tag=new_tag_token(), tag_px=60_000)


def _state(backend: ClusterBackend, key: str,
           tags: tuple[str, ...]) -> tuple[str, tuple[str | None, ...]]:
    entry, tokens = backend.read(key, tags)
    return ("" if entry is None else entry.marker), tokens


def test_fill_aborts_when_a_tag_was_invalidated_before_step_one(
        cluster_url: str, prefix: str) -> None:
    reg = Registry(cluster_url, prefix=prefix)
    backend = reg.slot("default").backend()
    assert isinstance(backend, ClusterBackend)
    key, tags = f"{prefix}:k", (f"{prefix}:tag:a", f"{prefix}:fn:f")
    try:
        assert backend.write(key, _write(tags, None))  # creates the tags
        state = _state(backend, key, tags)
        backend.invalidate_tags([tags[0]], new_tag_token(True), 60_000)
        assert backend.write(key, _write(tags, state)) is False
        # a tag the fill saw missing, since created by an invalidation: abort too
        missing = (f"{prefix}:tag:new",)
        state = _state(backend, key + "2", missing)
        assert state == ("", (None,))
        backend.invalidate_tags(missing, new_tag_token(True), 60_000)
        assert backend.write(key + "2", _write(missing, state)) is False
        # ... but one created by a store is adopted
        state = _state(backend, key + "3", (f"{prefix}:tag:fresh",))
        assert backend.write(key + "4", _write((f"{prefix}:tag:fresh",), None))
        assert backend.write(key + "3", _write((f"{prefix}:tag:fresh",), state)) is True
    finally:
        reg.close()


def test_fill_aborts_when_the_entry_changed(cluster_url: str, prefix: str) -> None:
    reg = Registry(cluster_url, prefix=prefix)
    backend = reg.slot("default").backend()
    assert isinstance(backend, ClusterBackend)
    key, tags = f"{prefix}:k", (f"{prefix}:tag:a",)
    try:
        state = _state(backend, key, tags)
        assert backend.invalidate([key], new_tombstone(), 60_000) == 0
        assert backend.write(key, _write(tags, state)) is False  # a tombstone since
        state = _state(backend, key, tags)
        assert backend.write(key, _write(tags, None, b"written"))  # a write-through since
        assert backend.write(key, _write(tags, state, b"old")) is False
        entry, _ = backend.read(key, tags)
        assert entry is not None and entry.value == b"written"
    finally:
        reg.close()


def test_invalidation_between_the_steps_leaves_a_dead_entry(
        cluster_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented window: the entry is stored, but it records the old tokens: a miss."""
    reg = Registry(cluster_url, prefix=prefix)
    backend = reg.slot("default").backend()
    assert isinstance(backend, ClusterBackend)
    key, tags = f"{prefix}:k", (f"{prefix}:tag:a", f"{prefix}:fn:f")
    store_entry = backend._store_entry

    def invalidate_then_store(**kwargs: Any) -> Any:
        backend.invalidate_tags([tags[0]], new_tag_token(True), 60_000)
        return store_entry(**kwargs)

    try:
        state = _state(backend, key, tags)
        monkeypatch.setattr(backend, "_store_entry", invalidate_then_store)
        assert backend.write(key, _write(tags, state)) is True
        entry, tokens = backend.read(key, tags)
        assert entry is not None and entry.tags != tokens  # stored, and already a miss
    finally:
        reg.close()


# --- SCAN on every primary, redirects, an unreachable cluster -----------------------------------


def test_delete_matching_scans_every_primary(cluster_url: str, prefix: str,
                                             cluster_client: Any) -> None:
    keys = [f"{prefix}:bulk:{i}" for i in range(1200)]
    primaries = {cluster_client.get_node_from_key(k).name for k in keys}
    assert len(primaries) == 3
    for start in range(0, len(keys), 100):
        with cluster_client.pipeline(transaction=False) as pipe:
            for k in keys[start:start + 100]:
                pipe.set(k, b"x")
            pipe.execute()
    cluster_client.set(f"{prefix}:other", b"x")
    reg = Registry(cluster_url, prefix=prefix, on_error="raise")
    try:
        before = primaries_commandstats(cluster_client)
        assert reg.invalidate_pattern("bulk:*") == 1200
        spent = _delta(before, primaries_commandstats(cluster_client))
        assert set(spent) == {"scan", "unlink"}
        assert cluster_client.exists(*keys[:1]) == 0
        assert cluster_client.get(f"{prefix}:other") == b"x"
        assert reg.clear() == 1
    finally:
        reg.close()


def test_read_survives_a_stale_slot_map(cluster_url: str, prefix: str) -> None:
    """The direct read path meets MOVED; the routed path answers and repairs the map."""
    reg = Registry(cluster_url, prefix=prefix, on_error="raise")

    @cachedeco.cached(registry=reg, tags=["t"])
    def f(x: int) -> int:
        return x

    try:
        assert f(7) == 7
        backend = reg.slot("default").backend()
        assert isinstance(backend, ClusterBackend)
        manager: Any = backend.client.nodes_manager
        slot = key_slot(f.key(7).encode())
        right = manager.slots_cache[slot]
        primaries: Any = backend.client
        wrong = next(n for n in primaries.get_primaries() if n.name != right[0].name)
        manager.slots_cache[slot] = [wrong]
        assert f(7) == 7
        assert f.stats().hits == 1
        assert manager.slots_cache[slot][0].name == right[0].name
        # the same for invalidate_tags, whose SETs also go straight to the tag slot's node
        tag_slot = key_slot(tag_slot_key(reg.keyspace.tag("t")).encode())
        right = manager.slots_cache[tag_slot]
        manager.slots_cache[tag_slot] = [
            next(n for n in primaries.get_primaries() if n.name != right[0].name)]
        reg.invalidate_tags("t")
        assert f(7) == 7
        assert f.stats().misses == 2
    finally:
        reg.close()


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_unreachable_cluster_fails_open(caplog: pytest.LogCaptureFixture) -> None:
    reg = Registry(f"redis+cluster://127.0.0.1:{_dead_port()}", prefix="nowhere")

    @cachedeco.cached(registry=reg)
    def f(x: int) -> int:
        return x + 1

    try:
        assert f(1) == 2
        assert f(1) == 2
        assert f.stats().backend_errors >= 1
        with pytest.raises(cachedeco.BackendError):
            Registry(f"redis+cluster://127.0.0.1:{_dead_port()}", on_error="raise",
                     prefix="nowhere").invalidate_tags("x")
    finally:
        reg.close()


async def test_async_unreachable_cluster_fails_open() -> None:
    reg = Registry(f"redis+cluster://127.0.0.1:{_dead_port()}", prefix="nowhere")

    @cachedeco.cached(registry=reg)
    async def f(x: int) -> int:
        return x + 1

    try:
        assert await f(1) == 2
        assert f.stats().backend_errors >= 1
    finally:
        await reg.aclose()


# --- the backend conformance suite ----------------------------------------------------------------


class _ClusterContract(BackendContract, BytesBackendContract):
    """The shared suite, with the one documented difference of a two-slot store."""

    @pytest.fixture
    def ns(self, prefix: str, cluster_url: str) -> str:  # swept from the cluster afterwards
        return prefix

    async def test_failed_entry_condition_creates_no_tags(self, backend: Driver,
                                                          ns: str) -> None:
        """On a cluster step one (the tag slot) has run: the missing tag now holds the
        fill's ``c…`` token, which any later fill adopts (cluster.py, "A store")."""
        await backend.write(f"{ns}:k", make_write())
        write = make_write(tags=[f"{ns}:t"], expect="", expect_tags=[None])
        assert await backend.write(f"{ns}:k", write) is False
        assert (await backend.read(f"{ns}:x", [f"{ns}:t"]))[1] == (tag_token(write.new_tag, 1),)
        assert write.new_tag.startswith(CREATED_TAG)


class TestClusterBackendContract(_ClusterContract):
    @pytest.fixture
    def backend(self, cluster_client: RedisCluster) -> Driver:
        return Driver(ClusterBackend(cluster_client))

    @pytest.fixture
    def poke(self, cluster_client: RedisCluster) -> Poke:
        async def poke(key: str, raw: bytes) -> None:
            cluster_client.set(key, raw)

        return poke


class TestAsyncClusterBackendContract(_ClusterContract):
    @pytest.fixture
    async def aclient(self, cluster_url: str
                      ) -> AsyncIterator[redis.asyncio.cluster.RedisCluster]:
        nodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in cluster_hosts(cluster_url)]
        client = redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, socket_timeout=5.0)
        yield client
        await client.aclose()

    @pytest.fixture
    def backend(self, aclient: redis.asyncio.cluster.RedisCluster) -> Driver:
        return Driver(AsyncClusterBackend(aclient))

    @pytest.fixture
    def poke(self, aclient: redis.asyncio.cluster.RedisCluster) -> Poke:
        async def poke(key: str, raw: bytes) -> None:
            await aclient.set(key, raw)

        return poke


# --- URLs ---------------------------------------------------------------------------------------


def test_cluster_and_sentinel_urls_parse() -> None:
    target = urls.parse_url("cluster", "redis+cluster://u:p%40ss@h1:7000,[::1]:7001,h3")
    assert target.hosts == (("h1", 7000), ("::1", 7001), ("h3", 6379))
    assert (target.username, target.password) == ("u", "p@ss")
    target = urls.parse_url("sentinel", "redis+sentinel://s1:26380,s2/mymaster/2")
    assert target.hosts == (("s1", 26380), ("s2", 26379))
    assert (target.service, target.db, target.password) == ("mymaster", 2, None)


@pytest.mark.parametrize("kind, url", [
    ("cluster", "redis+cluster://h1:7000,h2:x"),
    ("cluster", "redis+cluster://h1:7000,"),
    ("cluster", "redis+cluster://h1:7000/3"),
    ("cluster", "redis+cluster://h1:7000?ssl=true"),
    ("sentinel", "redis+sentinel://s1:26379"),
    ("sentinel", "redis+sentinel://s1:26379/mymaster/x"),
    ("sentinel", "redis+sentinel://s1:99999/mymaster"),
])
def test_malformed_urls_are_configuration_errors(kind: str, url: str) -> None:
    with pytest.raises(ConfigurationError):
        urls.parse_url(kind, url)
    with pytest.raises(ConfigurationError):  # when the registry is built, or first used
        Registry(url, on_error="raise").slot("default").backend()
