"""The stored envelope: what an entry, a tombstone and a write look like to every backend.

An entry carries a *marker* that names the write that produced it (``cd1:`` + 16 hex digits,
or ``cdT:`` + 16 hex digits for a tombstone left by an invalidation). A fill that read marker
``M`` stores only while the key still holds ``M``: that compare-and-set is how a load that
began before a write or an invalidation is kept from storing its old result (the equivalent of
memcache leases). Each entry also records the tokens its tags held when it was written; a read
that sees other tokens treats the entry as a miss, which makes tag invalidation O(1).

On Redis the envelope is one string, a header line then the payload::

    cd1:<16 hex>:<soft expiry ms>:<load ms>:<tag token>,<tag token>\\n<payload>

The marker sits at a fixed offset so Lua can compare it without parsing the rest. A load time
of ``-1`` marks a *held* entry: one a ``@write_behind`` call stored whose record waits in its
queue, newer than the database (:data:`HELD`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, NamedTuple

__all__ = [
    "ANY_TAG",
    "CORRUPT",
    "CREATED_TAG",
    "ENTRY",
    "HELD",
    "INVALIDATED_TAG",
    "MARKER_LEN",
    "MISS",
    "NO_VALUE",
    "TOMBSTONE",
    "Entry",
    "Miss",
    "Release",
    "Write",
    "decode_entry",
    "encode_header",
    "new_marker",
    "new_tag_token",
    "new_tombstone",
    "page_token",
    "tag_token",
]

ENTRY: Final = "cd1:"
TOMBSTONE: Final = "cdT:"
MARKER_LEN: Final = 20  # "cd1:" + 16 hex digits
CORRUPT: Final = "?"  # the marker of a stored value that is not a readable envelope
CREATED_TAG: Final = "c"  # tag token made by a store: adopting it is safe
INVALIDATED_TAG: Final = "i"  # tag token left by invalidate_tags: a fill that saw none aborts
#: In ``Write.expect_tags``: whatever token this tag key holds (a write-through invalidates
#: some of its entry's tags itself between its read and its store).
ANY_TAG: Final = "*"
#: The load time (``Entry.delta``) of a held entry: a write-behind record's, not flushed yet.
#: The ack after its flush settles the key: it gives the entry its normal expiry, or, where a
#: fill, a refresh or an invalidation replaced it meanwhile (from the database's older row),
#: leaves a tombstone; it leaves alone only a newer record's held entry.
HELD: Final = -0.001


class Miss(Enum):
    """The miss sentinel: falsy, typed, and never confused with a cached `None`.

    Public as `cachedeco.MISS`: what `f.get()` returns when there is no entry (expired,
    invalidated or absent); test it with `is`. Inside the package it also stands for "no
    value here" (a tombstone, a result not to cache).
    """

    MISS = "MISS"

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "cachedeco.MISS"

    __str__ = __repr__  # print(f.get(x)) shows the name users import, not Miss.MISS


MISS: Final = Miss.MISS
NO_VALUE: Final = MISS  # the internal spelling: "no value here"


class Entry(NamedTuple):
    """An entry as read back: its marker, payload, soft expiry, load time and tag tokens.

    A NamedTuple rather than a frozen dataclass: it is built on every Redis hit, and a tuple
    is several times cheaper to build.
    """

    marker: str
    value: Any  # payload bytes (Redis) or the object itself (memory); NO_VALUE for tombstones
    soft: float  # epoch seconds after which the value is stale
    delta: float  # seconds the load took, for early refresh
    tags: tuple[str, ...]

    @property
    def is_tombstone(self) -> bool:
        """True when an invalidation left this marker instead of a value."""
        return self.marker.startswith(TOMBSTONE)

    @property
    def is_held(self) -> bool:
        """True for a write-behind record's entry whose record is not flushed yet (:data:`HELD`)."""
        return self.delta < 0


@dataclass(slots=True)
class Release:
    """A lease to release in the same step as a store, where the backend can do both at once
    (one round trip less per ``lock=True`` load): the lease's key, its wake list and waiting
    mark, the holder's token and the wake list's px. The backend sets ``done``: True when it
    released the lease, False when the lease was no longer held (it expired); None means the
    holder releases it. ``sent`` is True once a store carrying it went out: with ``done``
    still None its reply was lost (a timeout, a cancelled caller), and the lease may be gone
    already."""

    lease: str
    wake: str
    mark: str
    token: str | bytes
    wake_px: int
    done: bool | None = None
    sent: bool = False


@dataclass(slots=True, frozen=True)
class Write:
    """One store, conditional or not, described without I/O so every backend can carry it out.

    ``expect`` is the marker the fill read ("" for a missing key) or None for an unconditional
    write; ``expect_tags`` likewise holds the tag tokens read (None for a missing tag key,
    ``ANY_TAG`` for one not checked) or is None for an unconditional write. Missing tag keys
    are created with ``new_tag``.
    """

    marker: str
    value: Any
    soft: float
    delta: float
    px: int  # hard TTL of the entry in milliseconds
    tag_keys: tuple[str, ...] = ()
    expect: str | None = None
    expect_tags: tuple[str | None, ...] | None = None
    new_tag: str = ""
    tag_px: int = 0  # tag keys live at least this long (and at least as long as the entry)
    release: Release | None = None  # the load's lease, released with the store if possible


_CORRUPT: Final = Entry(CORRUPT, NO_VALUE, 0.0, 0.0, ())


def _hex16() -> str:
    return os.urandom(8).hex()


def new_marker() -> str:
    """A fresh entry marker: unique per write."""
    return ENTRY + _hex16()


def new_tombstone() -> str:
    """A fresh tombstone marker: unique per invalidation."""
    return TOMBSTONE + _hex16()


def new_tag_token(invalidated: bool = False) -> str:
    """A fresh tag token; ``invalidated`` marks one left by ``invalidate_tags``."""
    return (INVALIDATED_TAG if invalidated else CREATED_TAG) + _hex16()


def page_token(token: str, before: int) -> str:
    """The token of one page of tag keys given ``token`` in pages (``invalidate_tags_matching``),
    after ``before`` keys: its tokens (:func:`tag_token`) differ from every other page's."""
    return f"{token}-{before}" if before else token


def tag_token(token: str, position: int) -> str:
    """The token the ``position``-th (from 1) of several tag keys gets when they are given
    ``token`` at once (a store creating them, an invalidation): every tag key holds a token
    of its own, so a token names the one tag key holding it (the operator's ``inspect``
    says which tags an entry has, and whether each is still current). The Lua scripts build
    it alike: ``token .. '.' .. position``."""
    return f"{token}.{position}"


def encode_header(marker: str, soft: float, delta: float) -> bytes:
    """The envelope header up to (not including) the tag tokens, for Lua to complete."""
    return f"{marker}:{int(soft * 1000)}:{int(delta * 1000)}:".encode()


def decode_entry(raw: bytes) -> Entry:
    """Parse a stored envelope; an unreadable one comes back with the CORRUPT marker.

    Parsed by position (this is on every Redis hit). Every value that the STORE script's Lua
    pattern deems readable is readable here too, so CORRUPT (a fill expecting "?") is only
    ever said of values the script agrees to overwrite. A value readable here but not to
    the script is overwritten too: the fill expects its own first 20 bytes.
    """
    if raw[:4] != b"cd1:":
        if raw[:4] == b"cdT:" and raw[:MARKER_LEN].isascii():  # its marker, byte for byte
            return Entry(raw[:MARKER_LEN].decode("ascii"), NO_VALUE, 0.0, 0.0, ())
        return _CORRUPT
    end = raw.find(b"\n")
    if end < 0 or raw[MARKER_LEN:MARKER_LEN + 1] != b":":
        return _CORRUPT
    try:
        _, soft, delta, tags = raw[MARKER_LEN:end].split(b":", 3)
        return Entry(raw[:MARKER_LEN].decode("ascii"), raw[end + 1:], int(soft) / 1000,
                     int(delta) / 1000,
                     tuple(tags.decode("ascii", "replace").split(",")) if tags else ())
    except (ValueError, UnicodeDecodeError):
        return _CORRUPT
