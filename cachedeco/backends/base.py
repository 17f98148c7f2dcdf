"""The backend contracts: a small core every backend implements, in a sync and an async flavour.

The core speaks in envelopes (:mod:`cachedeco._entry`): ``read`` fetches an entry with its tags'
current tokens in one round trip, ``write`` carries out a (conditional) store atomically, and
``invalidate``/``invalidate_tags`` leave markers that make later reads miss. Locks and the
write-behind queue are separate small contracts, so a backend can offer them or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cachedeco._entry import Entry, Write

__all__ = ["AsyncBackend", "Backend", "ReadResult"]

ReadResult = tuple[Entry | None, tuple[str | None, ...]]


class Backend(Protocol):
    """A synchronous cache backend."""

    #: True when values are kept as objects (memory), False when they are payload bytes.
    stores_objects: bool

    def read(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        """Return the entry at ``key`` (None if absent or unreadable) and the tags' tokens."""
        ...

    def write(self, key: str, write: Write) -> bool:
        """Store atomically; False when a condition of ``write`` no longer holds."""
        ...

    def invalidate(self, keys: Sequence[str], marker: str, px: int) -> int:
        """Replace entries by a tombstone living ``px`` ms; return how many values it removed."""
        ...

    def invalidate_tags(self, tag_keys: Sequence[str], token: str, px: int) -> None:
        """Give every tag a new token (one round trip), so entries recorded with it miss."""
        ...

    def delete_matching(self, pattern: str, spare: str | None = None) -> int:
        """Delete the keys matching a glob pattern (SCAN + UNLINK in batches) except those
        starting with ``spare``; return the count."""
        ...

    def raw(self, key: str) -> bytes | Entry | None:
        """What the backend holds at ``key``, for the operator's ``inspect``."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class AsyncBackend(Protocol):
    """The asyncio twin of :class:`Backend`: the same contract, awaited."""

    stores_objects: bool

    async def read(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        """See :meth:`Backend.read`."""
        ...

    async def write(self, key: str, write: Write) -> bool:
        """See :meth:`Backend.write`."""
        ...

    async def invalidate(self, keys: Sequence[str], marker: str, px: int) -> int:
        """See :meth:`Backend.invalidate`."""
        ...

    async def invalidate_tags(self, tag_keys: Sequence[str], token: str, px: int) -> None:
        """See :meth:`Backend.invalidate_tags`."""
        ...

    async def delete_matching(self, pattern: str, spare: str | None = None) -> int:
        """See :meth:`Backend.delete_matching`."""
        ...

    async def raw(self, key: str) -> bytes | Entry | None:
        """See :meth:`Backend.raw`."""
        ...

    async def close(self) -> None:
        """See :meth:`Backend.close`."""
        ...
