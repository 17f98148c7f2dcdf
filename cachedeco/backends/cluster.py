"""The Redis Cluster backend, sync and async: the envelope contract of :mod:`.base` over keys
that live in 16384 hash slots spread across primaries.

Where keys live
    Entry keys have no hash tag (``_keys.py`` never emits ``{`` or ``}``), so entries spread
    over every slot: that is what the cluster is for. A tag is shared by entries in every slot,
    so its token cannot sit beside all of them. Instead every tag key of a prefix is moved into
    *one* slot: ``myapp:~tag:user:1`` is stored as ``myapp:~tag:user:1{myapp:tags}`` (the hash tag
    is the text before the key's first ``:``, usually the registry prefix). The name still
    starts with ``prefix:``, so ``~prefix:*`` ACLs and ``clear()`` cover it. A tag key that
    already carries a hash tag (a tag with braces in it) keeps it and its own slot; every path
    groups tag keys by slot, so that case costs one more command, never correctness. Code that
    touches tag keys itself must use :func:`tag_slot_key` (``raw()`` looks under both names).

A hit: 2 commands, sent together — why not 1
    Redis runs a multi-key command or a Lua script only on keys of one slot, and the entry and
    its tags' tokens are in two (entry slot, tag slot). Making that one would mean putting the
    entries in the tag slot (one node holds everything: no cluster) or copying every tag token
    into every slot (an invalidation would write 16384 keys). So a read is ``GET entry`` plus
    ``MGET tag…`` (one MGET per tag slot, normally exactly one). Both are written to their
    nodes' connections before either reply is read, so the latency is that of the slower node,
    not the sum. Measured on loopback (redis-py 8.1, µs per read, sync / asyncio): one
    ``GET`` 42-49 / 76; routed ``GET`` then ``MGET`` 104-108 / 138; ``ClusterPipeline`` 100-125
    / 112; this direct write-both-then-read-both 56 / 84. The direct path uses the slot map and
    the per-node pools redis-py keeps; on any error (``MOVED`` after a resharding, a node down,
    a map not loaded yet) the read is done again through the client's routed commands, which
    follow redirects and refresh the map. A read is side-effect free, so repeating it is safe;
    a node that hangs can cost that read two socket timeouts, both bounded. The two replies are
    not one snapshot, but a read that starts after ``invalidate_tags`` returned sees the new
    token, and a skew between them can only turn a hit into a miss (an entry records the
    tokens it was stored under, and tokens never come back).

A store: 2 steps, and the window between them
    Step one runs ``CHECK_TAGS`` on the tag slot (one script per tag slot, normally one): for a
    fill it checks that the tag tokens are still those the fill read (a tag the fill saw missing
    may have been created by a store, not by an invalidation), creates missing tags, extends
    their TTL and returns the tokens. Step two runs ``STORE_ENTRY`` on the entry's slot: it
    compares the entry's marker with the one the fill read (so ``f.invalidate()`` and writes
    made before step two still win, atomically) and stores the envelope recording the tokens.
    An ``invalidate_tags`` that lands before step one aborts the fill. One that lands between
    the steps cannot be detected by step two (other slot), so the entry *is* stored — but it
    records the tokens of step one, which no longer match: every read treats it as a miss, and
    the next fill overwrites it. The residual cost of the window is therefore a wasted write
    (an already-dead entry occupying memory until overwritten or expired), never a stale hit.
    A crash between the steps leaves only created or extended tag keys, which expire. So does
    a fill that step two rejects (its entry changed meanwhile): unlike the single server's
    one-script STORE, it has already created the tags it found missing. Each holds a fresh
    ``c…`` token, which later fills adopt as they would one made by a store, so no outcome
    changes; making it strict would cost every such fill a third round trip.

Invalidations and clean-ups
    ``invalidate_tags`` writes its ``SET``\\s straight to the tag slot's node, as a read does:
    one round trip however many tags. A failed attempt is redone through redis-py's
    ``ClusterPipeline`` (a fresh token set twice is harmless). ``invalidate`` (tombstones via
    ``SET … GET``) is one routed ``SET`` for one key and a ``ClusterPipeline`` for several (one
    request per node, all written before any reply is read); it is never repeated, as its
    replies count the live entries it removed.
    ``delete_matching`` runs ``SCAN MATCH`` on every primary (never ``KEYS``) and ``UNLINK``\\s
    each page in one command per slot, the commands of a page pipelined per node.

Cluster client errors that redis-py raises outside ``RedisError`` (``RedisClusterException``:
no reachable node, slot not covered) are re-raised as ``redis.exceptions.ClusterError``, so
the registry's fallback and circuit breaker treat them as backend faults.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot
from redis.exceptions import ClusterError, RedisClusterException, RedisError

from cachedeco._entry import Entry, Write, decode_entry, encode_header
from cachedeco.backends._scripts import CHECK_TAGS, STORE_ENTRY
from cachedeco.backends.base import ReadResult
from cachedeco.backends.redis import SCAN_COUNT, count_removed

__all__ = [
    "AsyncClusterBackend",
    "ClusterBackend",
    "TagPlan",
    "has_hash_tag",
    "tag_plan",
    "tag_slot_key",
]

P = ParamSpec("P")
R = TypeVar("R")
Command = tuple[int, tuple[Any, ...]]  # (hash slot, command and arguments)
ScriptCall = tuple[list[str], list[Any], tuple[int, ...]]  # KEYS, ARGV, tag indices
#: What the direct path may fail with before the routed path is tried.
_RETRY_ROUTED = (RedisError, RedisClusterException, OSError, LookupError)


# --- pure: where keys live, what to send, what came back ---------------------------------------


def has_hash_tag(key: str) -> bool:
    """Whether Redis Cluster hashes only part of ``key`` (a non-empty ``{…}``)."""
    start = key.find("{")
    return start >= 0 and key.find("}", start + 1) > start + 1


def tag_slot_key(key: str) -> str:
    """The name a tag key is stored under on a cluster: every tag of a prefix in one slot."""
    if has_hash_tag(key):
        return key
    return f"{key}{{{key.partition(':')[0]}:tags}}"


@dataclass(frozen=True, slots=True)
class TagPlan:
    """The cluster names of some tag keys and their indices grouped by hash slot."""

    names: tuple[str, ...]
    groups: tuple[tuple[int, tuple[int, ...]], ...]


@functools.lru_cache(maxsize=4096)
def tag_plan(tag_keys: tuple[str, ...]) -> TagPlan:
    """Plan the tag keys of one call once; hot tag sets come from the cache."""
    names = tuple(map(tag_slot_key, tag_keys))
    groups: dict[int, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(key_slot(name.encode()), []).append(i)
    return TagPlan(names, tuple((slot, tuple(idx)) for slot, idx in groups.items()))


def read_commands(key: str, plan: TagPlan) -> list[Command]:
    """``GET entry`` then one ``MGET`` per tag slot."""
    commands: list[Command] = [(key_slot(key.encode()), ("GET", key))]
    for slot, idx in plan.groups:
        commands.append((slot, ("MGET", *(plan.names[i] for i in idx))))
    return commands


def set_commands(plan: TagPlan, token: str, px: int) -> list[Command]:
    """``SET tag token PX px`` for every tag key, by slot."""
    return [(slot, ("SET", plan.names[i], token, "PX", px)) for slot, idx in plan.groups
            for i in idx]


def parse_replies(replies: Sequence[Any], plan: TagPlan) -> ReadResult:
    """The entry and the tags' tokens (in the caller's order) from the read's replies."""
    raw = replies[0]
    tokens: list[str | None] = [None] * len(plan.names)
    for (_, idx), values in zip(plan.groups, replies[1:], strict=True):
        for i, value in zip(idx, values, strict=True):
            tokens[i] = None if value is None else value.decode("ascii", "replace")
    return (None if raw is None else decode_entry(raw)), tuple(tokens)


def check_tags_calls(write: Write, plan: TagPlan) -> list[ScriptCall]:
    """KEYS, ARGV and tag indices of the CHECK_TAGS script, one call per tag slot."""
    conditional = write.expect_tags is not None
    head = [max(write.tag_px, write.px), write.new_tag, "1" if conditional else "0"]
    calls = []
    for _, idx in plan.groups:
        args: list[Any] = list(head)
        if write.expect_tags is not None:
            args.extend("" if write.expect_tags[i] is None else write.expect_tags[i] for i in idx)
        calls.append(([plan.names[i] for i in idx], args, idx))
    return calls


def entry_args(write: Write, tokens: Sequence[str]) -> list[Any]:
    """ARGV of the STORE_ENTRY script: the envelope header completed with the tag tokens."""
    header = encode_header(write.marker, write.soft, write.delta) + ",".join(tokens).encode()
    return ["-" if write.expect is None else write.expect, header + b"\n", write.value, write.px]


def by_slot(keys: Sequence[Any]) -> list[list[Any]]:
    """Keys (str or bytes) batched by hash slot, for multi-key commands."""
    batches: dict[int, list[Any]] = {}
    for key in keys:
        slot = key_slot(key if isinstance(key, bytes) else key.encode())
        batches.setdefault(slot, []).append(key)
    return list(batches.values())


def _decode_tokens(got: Sequence[bytes]) -> list[str]:
    return [t.decode("ascii", "replace") for t in got]


def _translate(exc: RedisClusterException) -> ClusterError:
    return ClusterError(f"{type(exc).__name__}: {exc}")


def _cluster_errors(method: Callable[P, R]) -> Callable[P, R]:
    """Re-raise redis-py's RedisClusterException (not a RedisError) as a ClusterError."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except RedisClusterException as exc:
            raise _translate(exc) from exc

    return wrapper


def _acluster_errors(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """The coroutine form of :func:`_cluster_errors`."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except RedisClusterException as exc:
            raise _translate(exc) from exc

    return wrapper


# --- sync --------------------------------------------------------------------------------------


class ClusterBackend:
    """A cache backend over a synchronous ``redis.cluster.RedisCluster``.

    ``client`` is the cluster client itself, for the lease and write-behind code.
    """

    stores_objects = False

    def __init__(self, client: redis.cluster.RedisCluster) -> None:
        self.client = client
        self._cluster: Any = client  # redis-py's sync cluster API is partly unannotated
        self._routed: Callable[..., Any] = client.execute_command
        self._check_tags = client.register_script(CHECK_TAGS)
        self._store_entry = client.register_script(STORE_ENTRY)

    @_cluster_errors
    def read(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        """The entry and its tags' tokens: two commands on two nodes, sent together."""
        plan = tag_plan(tuple(tag_keys))
        commands = read_commands(key, plan)
        try:
            replies = self._direct(commands)
        except _RETRY_ROUTED:
            replies = [self._routed(*command) for _, command in commands]
        return parse_replies(replies, plan)

    def _direct(self, commands: list[Command]) -> list[Any]:
        """Write every command to its node's connection, then read every reply."""
        nodes: Any = self.client.nodes_manager  # redis-py internals: typed loosely on purpose
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i, (slot, _) in enumerate(commands):
            node = nodes.get_node_from_slot(slot)
            by_node.setdefault(node.name, (node, []))[1].append(i)
        held: list[tuple[Any, Any, list[int]]] = []
        replies: list[Any] = [None] * len(commands)
        try:
            for node, idx in by_node.values():
                pool = (node.redis_connection or self.client.get_redis_connection(node)
                        ).connection_pool
                conn = pool.get_connection()
                held.append((pool, conn, idx))
                conn.send_packed_command(conn.pack_commands([commands[i][1] for i in idx]))
            for _, conn, idx in held:
                for i in idx:
                    replies[i] = conn.read_response()
        except BaseException:
            for _, conn, _ in held:
                conn.disconnect()  # replies may be left unread on it
            raise
        finally:
            for pool, conn, _ in held:
                pool.release(conn)
        return replies

    @_cluster_errors
    def write(self, key: str, write: Write) -> bool:
        """CHECK_TAGS on the tag slot, then STORE_ENTRY on the entry's slot (module docstring)."""
        plan = tag_plan(tuple(write.tag_keys))
        tokens = [""] * len(plan.names)
        for keys, args, idx in check_tags_calls(write, plan):
            got = self._check_tags(keys=keys, args=args)
            if got is None:
                return False
            for i, token in zip(idx, _decode_tokens(got), strict=True):
                tokens[i] = token
        return bool(self._store_entry(keys=[key], args=entry_args(write, tokens)))

    @_cluster_errors
    def invalidate(self, keys: Sequence[str], marker: str, px: int) -> int:
        """Tombstones via ``SET … GET``: one pipelined call per node."""
        if len(keys) == 1:
            old = self.client.set(keys[0], marker, px=px, get=True)
            return count_removed([cast("bytes | None", old)])
        with self._cluster.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, marker, px=px, get=True)
            return count_removed(pipe.execute())

    @_cluster_errors
    def invalidate_tags(self, tag_keys: Sequence[str], token: str, px: int) -> None:
        """New tokens for every tag: one round trip to the tag slot's node (setting a fresh
        token twice is harmless, so a failed direct attempt is redone through a pipeline)."""
        plan = tag_plan(tuple(tag_keys))
        try:
            self._direct(set_commands(plan, token, px))
        except _RETRY_ROUTED:
            with self._cluster.pipeline(transaction=False) as pipe:
                for name in plan.names:
                    pipe.set(name, token, px=px)
                pipe.execute()

    @_cluster_errors
    def delete_matching(self, pattern: str, spare: str | None = None) -> int:
        """SCAN MATCH on every primary; each page UNLINKed per slot (but keys starting with
        ``spare``). Never KEYS."""
        deleted = 0
        kept = spare.encode() if spare else None
        for node in self._cluster.get_primaries():
            cursor = 0
            while True:
                cursors, keys = self._cluster.scan(cursor, match=pattern, count=SCAN_COUNT,
                                                   target_nodes=node)
                cursor = cursors[node.name]
                keys = [k for k in keys if kept is None or not k.startswith(kept)]
                if keys:
                    deleted += self._unlink(keys)
                if not cursor:
                    break
        return deleted

    def _unlink(self, keys: Sequence[bytes]) -> int:
        batches = by_slot(keys)
        if len(batches) == 1:
            return int(self._routed("UNLINK", *batches[0]))
        with self._cluster.pipeline(transaction=False) as pipe:
            for batch in batches:
                pipe.execute_command("UNLINK", *batch)
            return sum(map(int, pipe.execute()))

    @_cluster_errors
    def raw(self, key: str) -> bytes | Entry | None:
        """The bytes stored at ``key`` (or at its tag-slot name when ``key`` is a tag key)."""
        value = self._routed("GET", key)
        if value is None and not has_hash_tag(key):
            value = self._routed("GET", tag_slot_key(key))
        return value if isinstance(value, bytes) or value is None else str(value).encode()

    def close(self) -> None:
        """Close the connections to every node."""
        self.client.close()


# --- asyncio -----------------------------------------------------------------------------------


class AsyncClusterBackend:
    """A cache backend over ``redis.asyncio.cluster.RedisCluster``; see :class:`ClusterBackend`."""

    stores_objects = False

    def __init__(self, client: redis.asyncio.cluster.RedisCluster) -> None:
        self.client = client
        self._cluster: Any = client  # scan() is annotated for one server, not a cluster
        self._routed: Callable[..., Awaitable[Any]] = client.execute_command
        self._check_tags = client.register_script(CHECK_TAGS)
        self._store_entry = client.register_script(STORE_ENTRY)

    @_acluster_errors
    async def read(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        """See :meth:`ClusterBackend.read`."""
        plan = tag_plan(tuple(tag_keys))
        commands = read_commands(key, plan)
        try:
            replies = await self._direct(commands)
        except _RETRY_ROUTED:
            replies = [await self._routed(*command) for _, command in commands]
        return parse_replies(replies, plan)

    async def _direct(self, commands: list[Command]) -> list[Any]:
        """See :meth:`ClusterBackend._direct`."""
        nodes: Any = self.client.nodes_manager  # redis-py internals: typed loosely on purpose
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i, (slot, _) in enumerate(commands):
            node = nodes.get_node_from_slot(slot)
            by_node.setdefault(node.name, (node, []))[1].append(i)
        held: list[tuple[Any, Any, list[int]]] = []
        replies: list[Any] = [None] * len(commands)
        try:
            for node, idx in by_node.values():
                conn = node.acquire_connection()
                held.append((node, conn, idx))
                await conn.send_packed_command(conn.pack_commands([commands[i][1] for i in idx]))
            for _, conn, idx in held:
                for i in idx:
                    replies[i] = await conn.read_response()
        except BaseException:
            for _, conn, _ in held:
                await conn.disconnect(nowait=True)  # replies may be left unread on it
            raise
        finally:
            for node, conn, _ in held:
                node.release(conn)
        return replies

    @_acluster_errors
    async def write(self, key: str, write: Write) -> bool:
        """See :meth:`ClusterBackend.write`."""
        plan = tag_plan(tuple(write.tag_keys))
        tokens = [""] * len(plan.names)
        for keys, args, idx in check_tags_calls(write, plan):
            got = await self._check_tags(keys=keys, args=args)
            if got is None:
                return False
            for i, token in zip(idx, _decode_tokens(got), strict=True):
                tokens[i] = token
        return bool(await self._store_entry(keys=[key], args=entry_args(write, tokens)))

    @_acluster_errors
    async def invalidate(self, keys: Sequence[str], marker: str, px: int) -> int:
        """See :meth:`ClusterBackend.invalidate`."""
        if len(keys) == 1:
            old = await self.client.set(keys[0], marker, px=px, get=True)
            return count_removed([cast("bytes | None", old)])
        async with self._cluster.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, marker, px=px, get=True)
            return count_removed(await pipe.execute())

    @_acluster_errors
    async def invalidate_tags(self, tag_keys: Sequence[str], token: str, px: int) -> None:
        """See :meth:`ClusterBackend.invalidate_tags`."""
        plan = tag_plan(tuple(tag_keys))
        try:
            await self._direct(set_commands(plan, token, px))
        except _RETRY_ROUTED:
            async with self._cluster.pipeline(transaction=False) as pipe:
                for name in plan.names:
                    pipe.set(name, token, px=px)
                await pipe.execute()

    @_acluster_errors
    async def delete_matching(self, pattern: str, spare: str | None = None) -> int:
        """See :meth:`ClusterBackend.delete_matching`."""
        deleted = 0
        kept = spare.encode() if spare else None
        for node in self._cluster.get_primaries():
            cursor = 0
            while True:
                cursors, keys = await self._cluster.scan(
                    cursor, match=pattern, count=SCAN_COUNT, target_nodes=node)
                cursor = cursors[node.name]
                keys = [k for k in keys if kept is None or not k.startswith(kept)]
                if keys:
                    deleted += await self._unlink(keys)
                if not cursor:
                    break
        return deleted

    async def _unlink(self, keys: Sequence[bytes]) -> int:
        batches = by_slot(keys)
        if len(batches) == 1:
            return int(await self._routed("UNLINK", *batches[0]))
        async with self._cluster.pipeline(transaction=False) as pipe:
            for batch in batches:
                pipe.execute_command("UNLINK", *batch)
            return sum(map(int, await pipe.execute()))

    @_acluster_errors
    async def raw(self, key: str) -> bytes | Entry | None:
        """See :meth:`ClusterBackend.raw`."""
        value = await self._routed("GET", key)
        if value is None and not has_hash_tag(key):
            value = await self._routed("GET", tag_slot_key(key))
        return value if isinstance(value, bytes) or value is None else str(value).encode()

    async def close(self) -> None:
        """Close the connections to every node."""
        await self.client.aclose()
