"""Read combining for threads: the concurrent reads of one process share round trips.

The sync twin of :mod:`~cachedeco.backends.redis.batching`'s idea. A read that finds no
other in flight goes straight to Redis, so a lone caller pays two uncontended lock
operations. A read that starts while one is in flight joins the *next* batch, which goes out
as one ``MGET`` (identical reads sent once) as soon as the round trip in flight returns: a
burst of N threads costs two or three round trips instead of N connection checkouts and N
replies, each waking its own thread. Every read of a batch starts after its caller did, so a
caller never gets a reply older than its own call. The callers of a batch wait on one event,
and wake together.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import redis
import redis.exceptions

from cachedeco.backends.base import ReadResult
from cachedeco.backends.redis._sync.single import RedisBackend
from cachedeco.core.forking import redo_after_fork
from cachedeco.core.latch import Latch

__all__ = ["CombiningRedisBackend", "ReadCombiner"]

Request = tuple[str, tuple[str, ...]]
ReadOne = Callable[[str, Sequence[str]], ReadResult]
ReadMany = Callable[[Sequence[Request]], list[ReadResult]]


class CombinedReadError(redis.exceptions.ConnectionError):
    """The shared round trip of a batch failed: each of its callers falls back as from its
    own failed read."""


class _Batch:
    """The reads waiting for the next round trip: distinct requests, their results."""

    __slots__ = ("done", "error", "given", "requests", "results")

    def __init__(self) -> None:
        self.requests: dict[Request, int] = {}
        self.results: list[ReadResult] = []
        self.error: BaseException | None = None
        self.given = threading.Event()  # its turn: the round trip before it returned
        self.done = Latch()  # its results (or its error) are in: every caller wakes at once


class ReadCombiner:
    """At most one read round trip in flight per process; the reads that arrive meanwhile
    go out together next, sent by the first of them."""

    def __init__(self, one: ReadOne, many: ReadMany) -> None:
        self._one = one
        self._many = many
        self._lock = threading.Lock()
        self.after_fork()
        redo_after_fork(self)

    def after_fork(self) -> None:
        """Nothing in flight, as in a forked child: it has none of its parent's threads, so
        a round trip one of them had in flight would never hand the turn on."""
        self._busy = False  # a round trip is in flight (or its turn is being handed over)
        self._open: _Batch | None = None  # the batch collecting reads for the next one

    def read(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        """The entry at ``key`` and its tags' tokens, read after this call began."""
        with self._lock:
            if not self._busy:
                self._busy = True
                batch = None
            else:
                batch = self._open
                lead = batch is None
                if batch is None:
                    batch = self._open = _Batch()
                request = (key, tuple(tag_keys))
                index = batch.requests.setdefault(request, len(batch.requests))
        if batch is None:
            try:
                return self._one(key, tag_keys)
            finally:
                self._hand_over()
        if lead:
            self._send(batch)
        else:
            batch.done.wait()
        if batch.error is not None:
            if lead:
                raise batch.error
            raise CombinedReadError(f"a shared read failed: {type(batch.error).__name__}: "
                                    f"{batch.error}") from batch.error
        return batch.results[index]

    def _send(self, batch: _Batch) -> None:
        """Wait for the turn, close the batch to newcomers, send it, hand the turn on."""
        try:
            batch.given.wait()
        except BaseException as exc:  # interrupted: the batch fails, now or at its turn
            with self._lock:
                batch.error = exc
                given = batch.given.is_set()
            if given:
                self._close(batch)
                batch.done.open()
                self._hand_over()
            raise
        self._close(batch)
        try:
            batch.results = self._many(list(batch.requests))
        except BaseException as exc:
            batch.error = exc
        finally:
            batch.done.open()
            self._hand_over()

    def _close(self, batch: _Batch) -> None:
        """Newcomers start the next batch."""
        with self._lock:
            if self._open is batch:
                self._open = None

    def _hand_over(self) -> None:
        """A round trip returned: give the turn to the batch waiting for it, if any (a batch
        whose sender was interrupted fails at once, and the turn goes on)."""
        while True:
            with self._lock:
                batch = self._open
                if batch is None:
                    self._busy = False
                    return
                if batch.error is None:
                    batch.given.set()
                    return
                self._open = None
            batch.done.open()


class CombiningRedisBackend(RedisBackend):
    """The sync single-server backend whose concurrent reads share round trips."""

    def __init__(self, client: redis.Redis, *, companions: Sequence[object] = (),
                 direct: bool = False) -> None:
        super().__init__(client, companions=companions, direct=direct)
        self._reads = ReadCombiner(super().read, self.read_many)

    def read(self, key: str, tag_keys: Sequence[str]) -> ReadResult:
        """One round trip, shared with the reads that start while another is in flight."""
        return self._reads.read(key, tag_keys)
