"""The changes auto-recovery keeps until they reach their backend, and their spool encoding.

Three kinds: ``DROP`` an entry (a tombstone: a write-through that could not store, an
invalidation, a refresh), ``TAGS`` (a new token for a tag key: ``invalidate_tags``,
``invalidate_all``) and ``RECORD`` (a write-behind record with its entry, queued again).
Drops and tag invalidations of one key are one pending change (the latest); records are
never merged: each one is delivered.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from cachedeco.backends.base import AsyncBackend, Backend
from cachedeco.backends.contracts.queues import NotStored, Push
from cachedeco.core.entry import Write, new_tag_token, new_tombstone
from cachedeco.core.keyspace import QueueNames

__all__ = ["DROP", "KINDS", "RECORD", "TAGS", "Change", "Outage", "aapply", "apply",
           "decode_change", "encode_change"]

DROP: Final = "drop"
TAGS: Final = "tags"
RECORD: Final = "record"
KINDS: Final = (DROP, TAGS, RECORD)
_WHAT: Final = {DROP: "entry drop(s)", TAGS: "tag invalidation(s)",
                RECORD: "write-behind record(s)"}


class Outage:
    """One backend's outage as a process saw it: since when, and what landed since."""

    def __init__(self) -> None:
        self.since = time.monotonic()
        self.landed: collections.Counter[str] = collections.Counter()

    def summary(self) -> str:
        """What landed, for the log line that ends the outage."""
        done = ", ".join(f"{n} {_WHAT[k]}" for k, n in sorted(self.landed.items()) if n)
        return done or "nothing"


@dataclass(slots=True, eq=False)
class Change:
    """One change waiting for its backend: what to do, and where it is spooled (``row``)."""

    backend: str  # the backend's name in the registry
    kind: str
    target: str  # the entry key (DROP, RECORD) or the tag key (TAGS)
    px: int  # how long the tombstone or tag token lives, in ms
    function: str = ""  # RECORD: the @write_behind function
    names: QueueNames | None = None  # RECORD: its queue
    push: Push | None = None  # RECORD: the record and its entry
    row: int | None = None  # its row in the spool, if any
    uid: str = field(default_factory=lambda: os.urandom(8).hex())

    @property
    def ident(self) -> str:
        """One pending change per ident: the latest drop of a key, the latest invalidation
        of a tag; every record its own."""
        last = self.uid if self.kind == RECORD else self.target
        return f"{self.kind}\x00{self.backend}\x00{last}"


def _b(value: Any) -> Any:
    """Bytes as base64 text (JSON has no bytes); anything else as is."""
    return {"b64": base64.b64encode(value).decode()} if isinstance(value, bytes) else value


def _u(value: Any) -> Any:
    return base64.b64decode(value["b64"]) if isinstance(value, dict) else value


def encode_change(change: Change) -> bytes:
    """The spool's row body of a change."""
    body: dict[str, Any] = {"k": change.kind, "b": change.backend, "t": change.target,
                            "px": change.px, "u": change.uid}
    if change.kind == RECORD:
        assert change.push is not None and change.names is not None
        push, write = change.push, change.push.write
        names = change.names
        body |= {"fn": change.function, "q": [names.stream, names.dead, names.group],
                 "p": [push.key, list(push.tag_keys), _b(push.record), push.tombstone,
                       push.tomb_px],
                 "w": None if write is None else [
                     write.marker, _b(write.value), write.soft, write.delta, write.px,
                     list(write.tag_keys), write.new_tag, write.tag_px]}
    return orjson.dumps(body)


def decode_change(raw: bytes, row: int) -> Change:
    """A change back from its spool row (ValueError, KeyError or TypeError if malformed)."""
    body = orjson.loads(raw)
    kind = body["k"]
    if kind not in KINDS:
        raise ValueError(f"unknown change kind {kind!r}")
    change = Change(body["b"], kind, body["t"], int(body["px"]), row=row, uid=body["u"])
    if kind == RECORD:
        key, tag_keys, record, tombstone, tomb_px = body["p"]
        w = body["w"]
        write = None if w is None else Write(
            marker=w[0], value=_u(w[1]), soft=w[2], delta=w[3], px=w[4], tag_keys=tuple(w[5]),
            new_tag=w[6], tag_px=w[7])
        change.function = body["fn"]
        change.names = QueueNames(*body["q"])
        change.push = Push(key, tuple(tag_keys), write, _u(record), tombstone, tomb_px)
    return change


def apply(backend: Backend, run: list[Change]) -> None:
    """Carry out one run of changes of one kind."""
    kind, px = run[0].kind, max(c.px for c in run)
    if kind == DROP:
        backend.invalidate([c.target for c in run], new_tombstone(), px)
    elif kind == TAGS:
        backend.invalidate_tags([c.target for c in run], new_tag_token(True), px)
    else:
        for change in run:
            assert change.names is not None and change.push is not None
            with contextlib.suppress(NotStored):  # NotStored: queued, its entry dropped
                backend.queue(change.names).push(change.push)


async def aapply(backend: AsyncBackend, run: list[Change]) -> None:
    """The asyncio form of :func:`apply`."""
    kind, px = run[0].kind, max(c.px for c in run)
    if kind == DROP:
        await backend.invalidate([c.target for c in run], new_tombstone(), px)
    elif kind == TAGS:
        await backend.invalidate_tags([c.target for c in run], new_tag_token(True), px)
    else:
        for change in run:
            assert change.names is not None and change.push is not None
            with contextlib.suppress(NotStored):
                await backend.queue(change.names).push(change.push)
