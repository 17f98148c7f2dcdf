"""The backend contracts: a small core every backend implements, in a sync and an async flavour.

The core speaks in envelopes (:mod:`cachedeco.core.entry`): ``read`` fetches an entry with its tags'
current tokens in one round trip, ``write`` carries out a (conditional) store atomically, and
``invalidate``/``invalidate_tags`` leave markers that make later reads miss. Locks and the
write-behind queue are separate small contracts (:mod:`.contracts`) that a backend hands out
through its ``leases()`` and ``queue()`` methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import redis.exceptions
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from cachedeco.backends.contracts.leases import AsyncLeases, Leases
from cachedeco.backends.contracts.queues import AsyncQueue, Queue
from cachedeco.backends.contracts.tally import AsyncTally, Tally
from cachedeco.core.entry import Entry, Write
from cachedeco.core.keyspace import QueueNames

__all__ = ["BACKEND_ERRORS", "UNREACHABLE", "AsyncBackend", "Backend", "ConnectionOptions",
           "Coverage", "ReadResult"]

ReadResult = tuple[Entry | None, tuple[str | None, ...]]

#: What a backend raises when it is down, slow or refusing: translated, counted, logged.
BACKEND_ERRORS: Final = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException,
                         OSError, asyncio.TimeoutError)
#: Those of them that say the backend did not answer (down, frozen, cut off), rather than
#: that it answered with an error: a second command now would only wait again.
UNREACHABLE: Final = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError,
                      asyncio.TimeoutError)


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """Connection settings shared by every client a registry makes; timeouts are bounded."""

    socket_timeout: float = 1.0
    socket_connect_timeout: float = 1.0
    max_connections: int = 64
    pool_timeout: float = 5.0
    maxsize: int = 10_000  # entries of a memory:// backend
    near_cache: int = 0  # values kept near per Redis backend (0: no near cache)
    extra: dict[str, Any] = field(default_factory=dict)  # other redis-py connection keywords

    def redis_kwargs(self, asyncio: bool = False) -> dict[str, Any]:
        """Keyword arguments for redis-py clients and pools: bounded, no retry storms (the
        retry policy of the client's flavour: asyncio clients warn about a sync one), and
        RESP2 (nothing here needs RESP3's types, and a new connection then sends no
        ``HELLO``; the near cache's change stream asks for RESP3 itself)."""
        return {
            "protocol": 2,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            "retry": AsyncRetry(NoBackoff(), 0) if asyncio else Retry(NoBackoff(), 0),
            **self.extra,
        }


class Coverage(Protocol):
    """The servers a near cache's change stream listens to, as a Cluster backend sees them:
    a value read from another server (a slot moving to a new primary) must not be kept."""

    @property
    def tracked(self) -> frozenset[str]:
        """``host:port`` of every server the stream listens to."""
        ...

    def stray(self) -> None:
        """A read is being answered by a server not in ``tracked``, or through a redirect:
        keep no value until the servers are known again."""
        ...


class Backend(Protocol):
    """A synchronous cache backend."""

    #: True when values are kept as objects (memory), False when they are payload bytes.
    stores_objects: bool

    def read(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        """Return the entry at ``key`` (None if absent or unreadable) and the tags' tokens."""
        ...

    def read_many(self, reads: Sequence[tuple[str, Sequence[str]]]) -> list[ReadResult]:
        """:meth:`read` for many ``(key, tag_keys)`` at once, in one round trip (per node on
        a cluster); the results in the order of ``reads``."""
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

    def invalidate_tags_matching(self, pattern: str, token: str, px: int) -> int:
        """:meth:`invalidate_tags` for every tag key matching a glob pattern (SCAN, then the
        keys found in batches); return how many got a new token."""
        ...

    def raw(self, key: str) -> bytes | Entry | None:
        """What the backend holds at ``key``, for the operator's ``inspect``."""
        ...

    def leases(self) -> Leases:
        """The backend's leases (``lock=True``, ``cachedeco.lock``), one object per backend."""
        ...

    def queue(self, names: QueueNames) -> Queue:
        """The write-behind queue called ``names`` beside this backend, one per name."""
        ...

    def tally(self, key: str) -> Tally:
        """The table of counts at ``key`` that every process adds to."""
        ...

    def beat(self, key: str) -> dict[str, int] | None:
        """Add one to the counter at ``key`` (on Cluster, to one counter per primary, named
        from ``key``) and return each by name; None when this backend's data cannot go back
        in time (memory)."""
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

    async def read_many(self, reads: Sequence[tuple[str, Sequence[str]]]) -> list[ReadResult]:
        """See :meth:`Backend.read_many`."""
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

    async def invalidate_tags_matching(self, pattern: str, token: str, px: int) -> int:
        """See :meth:`Backend.invalidate_tags_matching`."""
        ...

    async def raw(self, key: str) -> bytes | Entry | None:
        """See :meth:`Backend.raw`."""
        ...

    def leases(self) -> AsyncLeases:
        """See :meth:`Backend.leases`."""
        ...

    def queue(self, names: QueueNames) -> AsyncQueue:
        """See :meth:`Backend.queue`."""
        ...

    def tally(self, key: str) -> AsyncTally:
        """See :meth:`Backend.tally`."""
        ...

    async def beat(self, key: str) -> dict[str, int] | None:
        """See :meth:`Backend.beat`."""
        ...

    async def close(self) -> None:
        """See :meth:`Backend.close`."""
        ...
