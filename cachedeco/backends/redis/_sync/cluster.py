# GENERATED from _async/cluster.py by tools/unasync.py: do not edit.
"""The Redis Cluster backend, sync flavour: the envelope contract over keys spread across
the primaries' 16384 hash slots.

A hit is ``GET entry`` plus ``MGET`` of its tags (every tag key of a prefix sits in one slot),
both written to their nodes before either reply is read; a store is ``CHECK_TAGS`` on the tag
slot, then ``STORE_ENTRY`` on the entry's slot. An error on the direct path (``MOVED`` after a
resharding, a node down) redoes a read through the client's routed commands, which follow
redirects. ``docs/internals/cluster.md`` gives the reasons and the windows.

A full server (``maxmemory`` with ``noeviction``) refuses an invalidation's writes but not
deletes: the keys (entries, or tag keys: their entries then miss) are unlinked at once, so
no reader gets the old value meanwhile, and the error goes on to auto-recovery, which writes
the tombstones or tokens once the server takes writes again.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Callable, Sequence
from typing import Any, cast

import redis.cluster
from redis.crc import key_slot
from redis.exceptions import OutOfMemoryError, RedisClusterException, RedisError

from cachedeco.backends.base import Coverage, ReadResult
from cachedeco.backends.redis._sync.leases import RedisLeases
from cachedeco.backends.redis._sync.queues import ClusterQueue
from cachedeco.backends.redis._sync.tally import RedisTally
from cachedeco.backends.redis.cluster_plan import (
    Command,
    by_slot,
    check_tags_calls,
    counter_keys,
    counter_slots,
    decode_tokens,
    entry_args,
    has_hash_tag,
    listed_primaries,
    many_read_commands,
    parse_many_replies,
    parse_replies,
    plain_tag_key,
    read_commands,
    set_commands,
    tag_plan,
    tag_slot_key,
)
from cachedeco.backends.redis.commands import SCAN_COUNT, count_removed
from cachedeco.backends.redis.pools import NoFreeConnection
from cachedeco.backends.redis.scripts import CHECK_TAGS, STORE_ENTRY
from cachedeco.backends.redis.twins import NodeLink, cluster_errors
from cachedeco.core.entry import Entry, Write, page_token, tag_token
from cachedeco.core.forking import redo_after_fork
from cachedeco.core.keyspace import QueueNames

__all__ = ["ClusterBackend"]

#: What the direct path may fail with before the routed path is tried.
_RETRY_ROUTED = (RedisError, RedisClusterException, OSError, LookupError)


class ClusterBackend:
    """A cache backend over ``redis.cluster.RedisCluster``."""

    stores_objects = False

    def __init__(self, client: redis.cluster.RedisCluster) -> None:
        self.client = client
        self._cluster: Any = client  # scan() is annotated for one server, not a cluster
        self._routed: Callable[..., Any] = client.execute_command
        self._check_tags = client.register_script(CHECK_TAGS)
        self._store_entry = client.register_script(STORE_ENTRY)
        self._nodes = NodeLink(client)
        self._leases = RedisLeases(client)
        self._queues: dict[str, ClusterQueue] = {}
        self._lock = threading.Lock()
        redo_after_fork(self)  # a lock of its own in a forked child
        self._counters: dict[str, int] = {}  # the slot of each primary's lineage counter
        #: The near cache's change stream in front of this backend, if any: told of every
        #: read answered by a server it does not listen to (set by the backend's slot).
        self.coverage: Coverage | None = None

    @cluster_errors
    def read(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        """The entry and its tags' tokens: two commands on two nodes, sent together."""
        plan = tag_plan(tuple(tag_keys))
        commands = read_commands(key, plan)
        try:
            replies = self._direct(commands)
        except NoFreeConnection:
            raise  # the routed path would wait as long again
        except _RETRY_ROUTED:
            self._redirected()
            replies = [self._routed(*command) for _, command in commands]
        return parse_replies(replies, plan)

    @cluster_errors
    def read_many(self, reads: Sequence[tuple[str, Sequence[str]]]) -> list[ReadResult]:
        """Many reads at once: every node's commands written, then every reply read (one
        round trip per node, all nodes at once)."""
        if not reads:
            return []
        commands, plan, positions = many_read_commands(reads)
        try:
            replies = self._direct(commands)
        except NoFreeConnection:
            raise
        except _RETRY_ROUTED:
            self._redirected()
            replies = [self._routed(*command) for _, command in commands]
        return parse_many_replies(replies, plan, positions)

    def _redirected(self) -> None:
        """A read goes the routed way, whichever server answers: a near cache keeps none of
        it (see :attr:`coverage`)."""
        if self.coverage is not None:
            self.coverage.stray()

    def _direct(self, commands: list[Command]) -> list[Any]:
        """Write every command to its node's connection, then read every reply; inside one of
        the client's places, taking the nodes' connections in name order."""
        nodes: Any = self.client.nodes_manager  # redis-py internals: typed loosely on purpose
        self._nodes.enter()
        held: list[tuple[Any, Any, list[int]]] = []
        replies: list[Any] = [None] * len(commands)
        try:
            by_node: dict[str, tuple[Any, list[int]]] = {}
            for i, (slot, _) in enumerate(commands):
                node = nodes.get_node_from_slot(slot)
                by_node.setdefault(node.name, (node, []))[1].append(i)
            if (coverage := self.coverage) is not None and not coverage.tracked.issuperset(
                    by_node):
                coverage.stray()  # a node the near cache's stream does not listen to
            for _, (node, idx) in sorted(by_node.items()):
                owner, conn = self._nodes.acquire(node)
                held.append((owner, conn, idx))
                conn.send_packed_command(conn.pack_commands([commands[i][1] for i in idx]))
            for _, conn, idx in held:
                for i in idx:
                    replies[i] = conn.read_response()
        except BaseException:
            for _, conn, _ in held:
                with contextlib.suppress(Exception):
                    self._nodes.discard(conn)  # replies may be left unread on it
            raise
        finally:
            for owner, conn, _ in held:
                self._nodes.release(owner, conn)
            self._nodes.leave()
        return replies

    @cluster_errors
    def on_node(self, key: str, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The replies of ``commands``, sent in order on one connection of the node holding
        ``key`` (``WAIT`` after a write must go where the write went)."""
        slot = key_slot(key.encode())
        return self._direct([(slot, command) for command in commands])

    @cluster_errors
    def write(self, key: str, write: Write) -> bool:
        """CHECK_TAGS on the tag slot, then STORE_ENTRY on the entry's slot."""
        plan = tag_plan(tuple(write.tag_keys))
        tokens = [""] * len(plan.names)
        for keys, args, idx in check_tags_calls(write, plan):
            got = self._check_tags(keys=keys, args=args)
            if got is None:
                return False
            for i, token in zip(idx, decode_tokens(got), strict=True):
                tokens[i] = token
        return bool(self._store_entry(keys=[key], args=entry_args(write, tokens)))

    @cluster_errors
    def invalidate(self, keys: Sequence[str], marker: str, px: int) -> int:
        """Tombstones via ``SET … GET``: one pipelined call per node (a full node: see
        the module's docstring)."""
        try:
            if len(keys) == 1:
                old = self.client.set(keys[0], marker, px=px, get=True)
                return count_removed([cast("bytes | None", old)])
            with self._cluster.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(key, marker, px=px, get=True)
                return count_removed(pipe.execute())
        except OutOfMemoryError:
            self.client.unlink(*keys)
            raise

    @cluster_errors
    def invalidate_tags(self, tag_keys: Sequence[str], token: str, px: int) -> None:
        """New tokens for every tag: one round trip to the tag slot's node (setting a fresh
        token twice is harmless, so a failed direct attempt is redone through a pipeline)."""
        plan = tag_plan(tuple(tag_keys))
        try:
            self._direct(set_commands(plan, token, px))
        except NoFreeConnection:
            raise
        except OutOfMemoryError:  # a full node (see the module's docstring): one UNLINK
            self.client.unlink(*plan.names)
            raise
        except _RETRY_ROUTED:
            with self._cluster.pipeline(transaction=False) as pipe:
                for i, name in enumerate(plan.names, 1):
                    pipe.set(name, tag_token(token, i), px=px)
                pipe.execute()

    @cluster_errors
    def delete_matching(self, pattern: str, spare: str | None = None) -> int:
        """SCAN MATCH on every primary; each page UNLINKed per slot (but keys starting with
        ``spare``). Never KEYS."""
        deleted = 0
        kept = spare.encode() if spare else None
        for page in self._pages(pattern):
            keys = [k for k in page if kept is None or not k.startswith(kept)]
            if keys:
                deleted += self._unlink(keys)
        return deleted

    @cluster_errors
    def invalidate_tags_matching(self, pattern: str, token: str, px: int) -> int:
        """SCAN MATCH on every primary (a tag key's name ends with its slot's hash tag, which
        the glob's last ``*`` matches), then new tokens for each page found. Never KEYS."""
        renewed = 0
        for names in self._pages(pattern):
            self.invalidate_tags([plain_tag_key(n.decode()) for n in names],
                                       page_token(token, renewed), px)
            renewed += len(names)
        return renewed

    def _pages(self, pattern: str) -> Iterator[list[bytes]]:
        """The keys matching ``pattern``, a SCAN page at a time (empty pages left out), on
        every primary in turn."""
        for node in self._every_primary():
            cursor = 0
            while True:
                cursors, keys = self._cluster.scan(
                    cursor, match=pattern, count=SCAN_COUNT, target_nodes=node)
                cursor = cursors[node.name]
                if keys:
                    yield keys
                if not cursor:
                    break

    def _every_primary(self) -> list[Any]:
        """The primaries the client routes to, and any other the cluster names: a new
        primary receiving a slot holds the keys moved so far before it serves the slot, and
        redis-py knows only the primaries serving slots (and, here, those it was sent to by
        ``ASK``). Without the right to run ``CLUSTER NODES``, or on a client handed over
        ready, the ones the client knows."""
        found = {node.name: node for node in self._cluster.get_primaries()}
        try:
            listed = self._cluster.cluster_nodes()
        except RedisError:
            return list(found.values())
        for host, port in listed_primaries(listed):
            node = self._cluster.get_node(host, port)  # ours adds one it lacks
            if node is not None:
                found.setdefault(node.name, node)
        return list(found.values())

    def _unlink(self, keys: Sequence[bytes]) -> int:
        batches = by_slot(keys)
        if len(batches) == 1:
            return int(self._routed("UNLINK", *batches[0]))
        with self._cluster.pipeline(transaction=False) as pipe:
            for batch in batches:
                pipe.execute_command("UNLINK", *batch)
            return sum(map(int, pipe.execute()))

    @cluster_errors
    def raw(self, key: str) -> bytes | Entry | None:
        """The bytes stored at ``key`` (or at its tag-slot name when ``key`` is a tag key)."""
        value = self._routed("GET", key)
        if value is None and not has_hash_tag(key):
            value = self._routed("GET", tag_slot_key(key))
        return value if isinstance(value, bytes) or value is None else str(value).encode()

    def leases(self) -> RedisLeases:
        """Leases in the cluster (a lease and its wake list share their entry's slot)."""
        return self._leases

    def queue(self, names: QueueNames) -> ClusterQueue:
        """The write-behind stream called ``names``, on its slot's node."""
        with self._lock:
            queue = self._queues.get(names.stream)
            if queue is None:
                queue = self._queues[names.stream] = ClusterQueue(self, self.client, names)
            return queue

    def tally(self, key: str) -> RedisTally:
        """The table of counts in the hash at ``key`` (all its state is in Redis)."""
        return RedisTally(self.client, key)

    def beat(self, key: str) -> dict[str, int]:
        """INCR one counter on each primary serving slots (named with a hash tag of one of
        its slots, :func:`counter_slots`: each primary's data can go back on its own); those
        that answer. Raises only when none does."""
        found: dict[str, int] = {}
        failed: BaseException | None = None
        primaries = [node.name for node in self._cluster.get_primaries()]
        self._counters = counter_slots(self._cluster.nodes_manager.slots_cache, primaries,
                                       self._counters)
        for name in counter_keys(key, self._counters):
            try:
                found[name] = int(self._routed("INCR", name))
            except _RETRY_ROUTED as exc:
                failed = exc
        if failed is not None and not found:
            raise failed
        return found

    def close(self) -> None:
        """Close the connections to every node."""
        self._nodes.close()
