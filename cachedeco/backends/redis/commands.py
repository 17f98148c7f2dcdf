"""Redis commands as data: the arguments cachedeco sends and the replies it parses, built by
pure functions shared by the sync and async backends, leases and queues."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Final

from redis.crc import key_slot
from redis.exceptions import ClusterError, TryAgainError

from cachedeco.backends.base import ReadResult
from cachedeco.backends.contracts.leases import Busy
from cachedeco.backends.contracts.queues import DeadLetter, Message, Push, Restore
from cachedeco.core.entry import Write, decode_entry, encode_header
from cachedeco.core.logs import say

__all__ = [
    "LANDED_REPLY",
    "MAX_BLOCK",
    "MIN_BLOCK",
    "MOVING_ERRORS",
    "MOVING_MS",
    "SCAN_COUNT",
    "MovingSlots",
    "ack_args",
    "add_args",
    "block_limit",
    "busy",
    "count_removed",
    "landed",
    "many_keys",
    "parse_dead",
    "parse_many",
    "parse_read",
    "parse_take",
    "push_args",
    "restore_calls",
    "restore_failed",
    "slot_moving",
    "store_args",
    "store_need",
    "text",
    "wake_ms",
]

SCAN_COUNT: Final = 500
LANDED_REPLY: Final = -3  # LEASE_ACQUIRE: not taken, a value landed in the entry since
#: The ms a caller that found a lease held while its Cluster slot moved waits before it asks
#: again: the lease may be released without waking anyone (LEASE_RELEASE_ALONE).
MOVING_MS: Final = 200
#: What Redis Cluster raises while a slot moves: see :func:`slot_moving`.
MOVING_ERRORS: Final = (TryAgainError, ClusterError)
MIN_BLOCK: Final = 0.01  # seconds: BLMOVE's 0 means "for ever", so never ask for less
MAX_BLOCK: Final = 5.0  # seconds: the longest single block, whatever the socket timeout
OVERRUN: Final = 0.12  # seconds: how late a blocking command may answer (1/hz), with a margin
WAKE_MS: Final = (1000, 10_000)  # bounds of a lease's wake list TTL
SlotCall = tuple[list[str], list[Any]]  # KEYS and ARGV of one script call on one hash slot


# --- the cache core ------------------------------------------------------------------------


def parse_read(values: Sequence[bytes | None]) -> ReadResult:
    """Turn ``MGET entry tag…`` replies into an entry and the tags' tokens."""
    raw = values[0]
    entry = None if raw is None else decode_entry(raw)
    return entry, tuple([None if v is None else v.decode("ascii", "replace") for v in values[1:]])


def many_keys(reads: Sequence[tuple[str, Sequence[str]]]
              ) -> tuple[list[str], list[tuple[int, ...]]]:
    """One ``MGET`` for many reads: the entry keys, then every distinct tag key once; and
    per read, where its tag keys sit in that list."""
    keys = [key for key, _ in reads]
    where: dict[str, int] = {}
    positions = []
    for _, tag_keys in reads:
        for tag in tag_keys:
            if tag not in where:
                where[tag] = len(keys)
                keys.append(tag)
        positions.append(tuple(where[tag] for tag in tag_keys))
    return keys, positions


def parse_many(values: Sequence[bytes | None], positions: Sequence[tuple[int, ...]]
               ) -> list[ReadResult]:
    """Turn the reply of :func:`many_keys`'s ``MGET`` into one result per read."""
    tokens = [None if v is None else v.decode("ascii", "replace") for v in values]
    return [(None if (raw := values[i]) is None else decode_entry(raw),
             tuple([tokens[p] for p in where])) for i, where in enumerate(positions)]


def store_args(key: str, write: Write, checks: str = "") -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV of the STORE script for one write (``checks``: its per-tag flags,
    see :class:`~cachedeco.backends.redis.tag_lives.TagLives`)."""
    expect = "-" if write.expect is None else write.expect
    conditional = write.expect_tags is not None
    tag_px = max(write.tag_px, write.px)
    args: list[Any] = [
        expect,
        encode_header(write.marker, write.soft, write.delta),
        write.value,
        write.px,
        f"{tag_px}:{checks}" if checks else tag_px,
        write.new_tag,
        "1" if conditional else "0",
    ]
    if write.expect_tags is not None:
        args.extend("" if t is None else t for t in write.expect_tags)
    return [key, *write.tag_keys], args


def store_need(write: Write) -> int:
    """The ms a tag key must have left for a store not to extend it (see scripts.STORE)."""
    return max(write.px, max(write.tag_px, write.px) // 2)


def count_removed(replies: Sequence[bytes | None]) -> int:
    """How many of ``SET … GET`` replies were live entries (not tombstones or misses)."""
    return sum(1 for old in replies if old is not None and old.startswith(b"cd1:"))


# --- leases --------------------------------------------------------------------------------


def block_limit(client: Any) -> float:
    """The longest one blocking call may last: under the client's socket timeout by a
    quarter of it and by ``OVERRUN`` at least (a server answers a blocking command's timeout
    up to 1/hz late: 100 ms at the default hz 10), so a wait is never mistaken for a dead
    connection."""
    pool = getattr(client, "connection_pool", None) or getattr(client, "nodes_manager", None)
    timeout = getattr(pool, "connection_kwargs", {}).get("socket_timeout")
    if not timeout:
        return MAX_BLOCK
    seconds = float(timeout)
    return min(max(min(seconds * 0.75, seconds - OVERRUN), MIN_BLOCK), MAX_BLOCK)


def wake_ms(ttl: float) -> int:
    """The wake list's TTL: long enough for a waiter between a failed acquire and its block."""
    return min(max(int(ttl * 1000), WAKE_MS[0]), WAKE_MS[1])


def landed(head: Any, seen: str) -> bool:
    """Whether the first 20 bytes of an entry (``GETRANGE 0 19``) are a readable entry's other
    than ``seen``: LEASE_ACQUIRE's -3 test, for the plain-command acquire."""
    text = head.decode("utf-8", "replace") if isinstance(head, bytes) else str(head or "")
    return text.startswith("cd1:") and text != seen


def busy(left: Any) -> Busy:
    """A Busy from the acquire script's reply (the holder's PTTL; -3: a value landed), or
    from a plain acquire's (None: the remaining time is not known)."""
    if left is None:
        return Busy(None)
    ms = int(left)
    if ms == LANDED_REPLY:
        return Busy(0, landed=True)
    return Busy(ms if ms >= 0 else None)


class MovingSlots:
    """Leases whose Cluster slot was found moving lately: taken by their key alone for
    ``FOR`` seconds without trying the acquire script first, which redis-py retries for about
    0.4 s before it gives up (each try of a waiter would pay that again)."""

    FOR: Final = 1.0
    KEEP: Final = 1024  # leases remembered before the expired ones are dropped

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def now(self, key: str) -> bool:
        """Whether ``key``'s slot was found moving less than ``FOR`` seconds ago."""
        until = self._until.get(key)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        self._until.pop(key, None)
        return False

    def seen(self, key: str) -> None:
        """``key``'s slot is moving."""
        now = time.monotonic()
        if len(self._until) > self.KEEP:  # a long move of many slots: drop the past
            self._until = {k: t for k, t in list(self._until.items()) if t > now}
        self._until[key] = now + self.FOR


def slot_moving(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis Cluster refusing a command over several keys of a slot that
    moves (TRYAGAIN, or redis-py's plain ``ClusterError`` "TTL exhausted" after retrying it),
    not a cluster down (``ClusterDownError``, a subclass), where a retry would only wait
    longer."""
    return isinstance(exc, TryAgainError) or type(exc) is ClusterError


# --- write-behind queues -------------------------------------------------------------------


def text(value: Any) -> str:
    """A reply's bytes as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def waits(client: Any, replicas: int, timeout_ms: int) -> list[tuple[Any, ...]]:
    """``WAIT replicas timeout_ms`` as WAITs sent together, each shorter than one blocking
    call may last (:func:`block_limit`): one WAIT as long as the socket timeout is read as a
    dead connection when no replica answers (the call then took the server for down, and
    with a spool returned without its replicas). A WAIT once the replicas acknowledged the
    connection's writes answers at once, so together they wait as one would."""
    step = max(1, int(block_limit(client) * 1000))
    left, out = max(timeout_ms, 1), []
    while left > 0:
        out.append(("WAIT", replicas, min(step, left)))
        left -= step
    return out


def push_args(item: Push, stream: str) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of WB_PUSH."""
    write = item.write
    if write is None:
        args: list[Any] = [item.tombstone, "", b"", item.tomb_px, 0, "", item.record, ""]
        return [item.key, stream], args
    args = [
        "-",
        encode_header(write.marker, write.soft, write.delta),
        write.value,
        write.px,
        max(write.tag_px, write.px),
        write.new_tag,
        item.record,
        write.marker,
    ]
    return [item.key, *write.tag_keys, stream], args


def _fields(raw: Any) -> dict[str, Any]:
    """A stream entry's fields: a flat list from Lua, a dict from redis-py's XRANGE."""
    if isinstance(raw, dict):
        return {text(k): v for k, v in raw.items()}
    return {text(raw[i]): raw[i + 1] for i in range(0, len(raw) - 1, 2)}


def _message(entry: Sequence[Any], claimed: bool) -> Message:
    """One ``[id, fields]`` stream entry as a message."""
    fields = _fields(entry[1])
    return Message(text(entry[0]), fields.get("r", b""), text(fields.get("k", b"")),
                   text(fields.get("m", b"")), claimed)


def parse_take(reply: Sequence[Any]) -> tuple[list[Message], int, str, list[str]]:
    """WB_TAKE's reply: the messages (claimed first), the length, the next cursor and the
    other consumers holding records."""
    length, cursor, claimed, fresh, holders = reply
    messages = [_message(e, True) for e in claimed if e and e[1]]
    messages += [_message(e, False) for e in fresh]
    return messages, int(length), text(cursor), [text(h) for h in holders]


def ack_args(group: str, ids: Sequence[str], restores: Sequence[Restore]
             ) -> tuple[list[str], list[Any]]:
    """The entry keys (after the stream) and ARGV of WB_ACK."""
    args: list[Any] = [group, len(ids), *ids]
    for r in restores:
        args += restore_args(r)
    return [r.key for r in restores], args


def add_args(item: Push) -> list[Any]:
    """ARGV of WB_ADD: the record, its entry's key and marker ("" for a tombstone)."""
    return [item.record, item.key, "" if item.write is None else item.write.marker]


def restore_calls(restores: Sequence[Restore]) -> list[SlotCall]:
    """KEYS and ARGV of WB_RESTORE, one call per hash slot of the entries."""
    calls: dict[int, SlotCall] = {}
    for r in restores:
        keys, args = calls.setdefault(key_slot(r.key.encode()), ([], []))
        keys.append(r.key)
        args += restore_args(r)
    return list(calls.values())


def restore_args(r: Restore) -> list[Any]:
    """The six ARGV of one entry's settling in WB_ACK and WB_RESTORE."""
    return [r.marker, int(r.soft * 1000), r.px, r.fresh, r.tomb, ",".join(r.older)]


def restore_failed(exc: BaseException) -> None:
    """A cluster ack could not settle some entries: the ack goes on, their drops are kept."""
    say(None, logging.WARNING, "flushed write-behind entries could not be settled (%s: %s); the "
        "records are acknowledged and the entries dropped once their nodes answer",
        type(exc).__name__, exc)


def parse_dead(entries: Sequence[Any]) -> list[DeadLetter]:
    """XRANGE of the dead-letter stream."""
    letters = []
    for entry in entries:
        f = _fields(entry[1])
        letters.append(DeadLetter(text(entry[0]), f.get("r", b""), text(f.get("k", b"")),
                                  text(f.get("e", b"")), int(f.get("t", 0)) / 1000,
                                  marker=text(f.get("m", b""))))
    return letters
