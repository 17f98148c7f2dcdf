"""Redis Cluster planning, pure: which slot each key lives in and what to send where.

Entry keys spread over every slot; every tag key of a prefix is moved into one slot
(``prefix:~tag:x{prefix:tags}``) so a read is ``GET entry`` plus one ``MGET`` of its tags and
an invalidation is one round trip. ``docs/internals/cluster.md`` explains the trade-offs.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.crc import key_slot

from cachedeco.backends.base import ReadResult
from cachedeco.core.entry import Write, decode_entry, encode_header, tag_token

__all__ = [
    "Command",
    "ScriptCall",
    "TagPlan",
    "by_slot",
    "check_tags_calls",
    "counter_keys",
    "counter_slots",
    "decode_tokens",
    "entry_args",
    "has_hash_tag",
    "listed_primaries",
    "many_read_commands",
    "parse_many_replies",
    "parse_replies",
    "plain_tag_key",
    "read_commands",
    "set_commands",
    "slot_tag",
    "tag_plan",
    "tag_slot_key",
]

Command = tuple[int, tuple[Any, ...]]  # (hash slot, command and arguments)
ScriptCall = tuple[list[str], list[Any], tuple[int, ...]]  # KEYS, ARGV, tag indices




def has_hash_tag(key: str) -> bool:
    """Whether Redis Cluster hashes only part of ``key`` (a non-empty ``{…}``)."""
    start = key.find("{")
    return start >= 0 and key.find("}", start + 1) > start + 1


def tag_slot_key(key: str) -> str:
    """The name a tag key is stored under on a cluster: every tag of a prefix in one slot."""
    if has_hash_tag(key):
        return key
    return f"{key}{{{key.partition(':')[0]}:tags}}"


def plain_tag_key(name: str) -> str:
    """The tag key that :func:`tag_slot_key` stored under ``name`` (``name`` itself when it
    is not a cluster name)."""
    suffix = f"{{{name.partition(':')[0]}:tags}}"
    return name.removesuffix(suffix)


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


def many_read_commands(reads: Sequence[tuple[str, Sequence[str]]]
                       ) -> tuple[list[Command], TagPlan, list[tuple[int, ...]]]:
    """Many reads at once: ``GET`` of each entry, then one ``MGET`` per tag slot of every
    distinct tag key; with the tag plan and, per read, its tags' indices in the plan."""
    where: dict[str, int] = {}
    for _, tag_keys in reads:
        for tag in tag_keys:
            where.setdefault(tag, len(where))
    plan = tag_plan.__wrapped__(tuple(where))  # not memoized: a one-off set of tags
    commands: list[Command] = [(key_slot(key.encode()), ("GET", key)) for key, _ in reads]
    for slot, idx in plan.groups:
        commands.append((slot, ("MGET", *(plan.names[i] for i in idx))))
    return commands, plan, [tuple(where[tag] for tag in tag_keys) for _, tag_keys in reads]


def parse_many_replies(replies: Sequence[Any], plan: TagPlan,
                       positions: Sequence[tuple[int, ...]]) -> list[ReadResult]:
    """One result per read from the replies to :func:`many_read_commands`."""
    count = len(positions)
    tokens: list[str | None] = [None] * len(plan.names)
    for (_, idx), values in zip(plan.groups, replies[count:], strict=True):
        for i, value in zip(idx, values, strict=True):
            tokens[i] = None if value is None else value.decode("ascii", "replace")
    return [(None if (raw := replies[i]) is None else decode_entry(raw),
             tuple([tokens[p] for p in where])) for i, where in enumerate(positions)]


def set_commands(plan: TagPlan, token: str, px: int) -> list[Command]:
    """``SET tag token PX px`` for every tag key, by slot."""
    return [(slot, ("SET", plan.names[i], tag_token(token, i + 1), "PX", px))
            for slot, idx in plan.groups for i in idx]


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
    calls = []
    for group, (_, idx) in enumerate(plan.groups, 1):
        # each slot's script numbers its tags from 1: a token of the group's own keeps
        # every tag key's token its own
        token = write.new_tag if len(plan.groups) == 1 else tag_token(write.new_tag, group)
        tag_px = max(write.tag_px, write.px)
        lifetimes = f"{tag_px}:{max(write.px, tag_px // 2)}"  # see scripts.STORE
        args: list[Any] = [lifetimes, token, "1" if conditional else "0"]
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


def listed_primaries(listed: dict[Any, Any]) -> list[tuple[str, int]]:
    """``(host, port)`` of every primary in redis-py's parsed ``CLUSTER NODES`` reply that is
    reachable (not failing, not in a handshake, with an address), slots or not."""
    found = []
    for address, info in listed.items():
        host, _, port = str(address).rpartition(":")
        flags = set(str(info.get("flags", "")).split(","))
        if host and "master" in flags and not flags & {"fail", "fail?", "handshake", "noaddr"}:
            found.append((host, int(port)))
    return found


def decode_tokens(got: Sequence[bytes]) -> list[str]:
    return [t.decode("ascii", "replace") for t in got]


_TAGS: dict[int, str] = {}  # a hash tag for each slot asked for so far


def slot_tag(slot: int) -> str:
    """A short hash tag whose key slot is ``slot`` (found by trying ``l0``, ``l1``, ...:
    about 16,384 tries, a few ms, once per slot)."""
    tag = _TAGS.get(slot)
    if tag is None:
        tag = next(f"l{i}" for i in itertools.count() if key_slot(f"l{i}".encode()) == slot)
        _TAGS[slot] = tag
    return tag


def counter_slots(slots: Mapping[int, Sequence[Any]], primaries: Collection[str],
                  known: Mapping[str, int]) -> dict[str, int]:
    """The slot of each primary's lineage counter (``slots``: redis-py's slot cache, the
    primary first; ``primaries``: the names of the primaries the client knows). ``known``
    again while it names those primaries and each of its slots is still its primary's (a few
    lookups: a counter only has to live on its primary, every process keeps its own history);
    else each primary's lowest slot, from a walk over the 16,384 slots (about 6 ms)."""
    if known and set(known) == set(primaries) and all(
            (nodes := slots.get(slot)) and nodes[0].name == name
            for name, slot in known.items()):
        return dict(known)
    lowest: dict[str, int] = {}
    for slot, nodes in slots.items():
        if nodes:
            name = nodes[0].name
            lowest[name] = min(slot, lowest.get(name, slot))
    return lowest


def counter_keys(key: str, slots: Mapping[str, int]) -> list[str]:
    """The names of the counters in those slots: ``key`` with each slot's hash tag."""
    return [f"{key}:{{{slot_tag(slot)}}}" for slot in sorted(slots.values())]
