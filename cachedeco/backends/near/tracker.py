"""The near cache's change stream: a background thread holding one RESP3 connection per
primary with ``CLIENT TRACKING ON BCAST PREFIX <prefix>:``, turning Redis's invalidation
messages into drops from the :class:`~cachedeco.backends.near.store.NearStore`.

One thread serves the sync and the asyncio flavours alike (the store is thread-safe), so a
near cache works the same whatever calls it. In BCAST mode Redis names every key under the
prefix that changes, whoever changed it, on the tracking connection itself: no
``SUBSCRIBE`` to ``__redis__:invalidate`` is needed, so a user confined to the prefix can run
it. The connections are pinged every ``interval``; a failed or silent connection, or a change
of primaries, empties the store and stops it keeping values until tracking is enabled again
on every primary.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import sys
import threading
import time
import weakref
from typing import Any, Final

from redis.exceptions import ResponseError

from cachedeco.backends.near.pushes import PING, Push, PushReader, ReplyError
from cachedeco.backends.near.sources import Source
from cachedeco.backends.near.store import NearStore
from cachedeco.backends.redis.cluster_plan import plain_tag_key

__all__ = ["Tracker"]

logger = logging.getLogger("cachedeco")

INTERVAL: Final = 0.25  # seconds between two pings of the tracking connections
CHECK_EVERY: Final = 1.0  # seconds between two questions about moving primaries
RETRY: Final = (0.05, 2.0)  # first and longest wait before connecting again
QUIET: Final = 10.0  # seconds between two "change stream lost" lines (a flapping link)
#: SO_RCVTIMEO takes a ``struct timeval`` of two C longs here.
_KERNEL_TIMEOUT: Final = sys.platform == "linux" and struct.calcsize("l") == 8


class Moved(Exception):
    """The primaries changed: the stream must start over on the new ones."""


class Tracker:
    """The thread keeping ``store`` coherent with the keys under ``prefix`` on ``source``."""

    def __init__(self, store: NearStore, source: Source, prefix: str) -> None:
        self.store = store
        self.source = source
        self.prefix = prefix
        self.connects = 0  # times tracking was enabled on every primary
        self.messages = 0  # invalidation messages received
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._primaries: frozenset[str] = frozenset()
        self._failing = False
        self._said_lost = -QUIET  # when "lost" was last logged (monotonic)
        self._held = 0  # losses not logged since
        self._told = False  # the current loss was logged: so is its end
        _trackers.add(self)

    def ensure(self) -> None:
        """Start the thread unless it runs (a cheap check on every backend read)."""
        if self._thread is None and not self._stop.is_set():
            with self._lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name=f"cachedeco-near-{self.prefix}", daemon=True)
                    self._thread.start()

    def close(self) -> None:
        """Stop the thread and forget every value."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
        self.store.lost()
        self.source.close()

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        wait = RETRY[0]
        while not self._stop.is_set():
            conns: list[Any] = []
            try:
                conns = self._connect()
                self.store.up()
                self.connects += 1
                if self._failing and self._told:
                    logger.warning("cachedeco: near cache of %s: change stream back", self.prefix)
                self._failing, self._told, wait = False, False, RETRY[0]
                self._listen(conns)
            except Exception as exc:  # a stream that fails, however it fails, is lost
                if not self._failing and not self._stop.is_set():
                    self._lost(exc)
                self._failing = not isinstance(exc, Moved)
            finally:
                self.store.lost()
                for conn in conns:
                    conn.disconnect()
            self._stop.wait(wait)
            wait = min(wait * 2, RETRY[1])

    def _lost(self, exc: Exception) -> None:
        """Log a loss of the stream, at most once per QUIET seconds (its end with it): a link
        that flaps is a line now and then, not two per cut."""
        now = time.monotonic()
        if now - self._said_lost < QUIET:
            self._held += 1
            return
        held = f" ({self._held} more since the last such line)" if self._held else ""
        logger.warning("cachedeco: near cache of %s bypassed: change stream lost (%s: %s); "
                       "reconnecting%s", self.prefix, type(exc).__name__, exc, held)
        self._said_lost, self._held, self._told = now, 0, True

    def _connect(self) -> list[Any]:
        """Open a tracking connection to every primary (all or none)."""
        primaries = self.source.primaries()
        conns: list[Any] = []
        try:
            for make in primaries.values():
                conn = make()
                conns.append(conn)
                conn.connect()
                conn._parser.set_invalidation_push_handler(self._on_push)
                conn.send_command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX",
                                  self.prefix + ":")
                reply = conn.read_response()
                if isinstance(reply, Exception):
                    raise reply
        except BaseException:
            for conn in conns:
                conn.disconnect()
            raise
        self._primaries = frozenset(primaries)
        return conns

    def _listen(self, conns: list[Any]) -> None:
        """Read invalidations until a connection fails, the primaries move or it is closed.

        Each connection's socket is read directly (:mod:`.pushes`): one ``recv`` per
        wake-up. A ping every ``INTERVAL`` must be answered within the socket timeout."""
        for conn in conns:  # what redis-py's parser may hold already
            while conn.can_read(0):
                conn.read_response(push_request=True)
        links = [_Link(conn) for conn in conns]
        by_socket = {link.sock: link for link in links}
        now = time.monotonic()
        ping = now + INTERVAL
        check = now + CHECK_EVERY if self.source.moves else float("inf")
        while not self._stop.is_set():
            wait = max(0.0, min(ping, check) - time.monotonic())
            if len(links) == 1:
                links[0].receive(self, wait)
            else:
                ready, _, _ = select.select(list(by_socket), [], [], wait)
                for sock in ready:
                    by_socket[sock].receive(self, None)
            now = time.monotonic()
            if now >= ping:
                for link in links:
                    link.ping(now)
                ping = now + INTERVAL
            if now >= check:
                if frozenset(self.source.primaries()) != self._primaries:
                    raise Moved("the primaries changed")
                check = now + CHECK_EVERY

    def on_frame(self, frame: Any) -> None:
        """A push from Redis: an invalidation names the keys that changed, or None after
        FLUSHDB/FLUSHALL."""
        if not isinstance(frame, Push) or len(frame) < 2 or frame[0] != b"invalidate":
            return
        self.messages += 1
        names = frame[1]
        if names is None:
            self.store.flushed()
            return
        changed = []
        for raw in names:
            name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            changed.append(name)
            plain = plain_tag_key(name)  # a tag key as a cluster stores it, in its tag slot
            if plain != name:
                changed.append(plain)
        self.store.changed(changed)

    def _on_push(self, message: Any) -> None:
        """A push redis-py's parser read (before the socket is read directly)."""
        self.on_frame(Push(message))


class _Link:
    """One tracking connection's socket, read directly, and its pings."""

    def __init__(self, conn: Any) -> None:
        self.sock: socket.socket = conn._sock
        self.timeout = float(conn.socket_timeout or 5.0)
        self.reader = PushReader()
        self.pinged: float | None = None  # when the unanswered ping was sent

    def receive(self, tracker: Tracker, wait: float | None) -> None:
        """Read what arrived (waiting up to ``wait`` seconds when not None) and apply it."""
        try:
            if wait is None:
                self.sock.setblocking(False)
            elif _KERNEL_TIMEOUT and type(self.sock) is socket.socket:
                # a blocking recv bounded by the kernel: one call, one GIL hand-over (a
                # Python timeout polls first, then reads: two)
                self.sock.settimeout(None)
                wait = max(wait, 0.001)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack(
                    "ll", int(wait), int(wait % 1 * 1_000_000)))
            else:
                self.sock.settimeout(max(wait, 0.001))
            data = self.sock.recv(65536)
        except (TimeoutError, BlockingIOError, InterruptedError):
            return
        if not data:
            raise ConnectionError("the tracking connection was closed")
        for frame in self.reader.feed(data):
            if isinstance(frame, ReplyError):
                raise ResponseError(frame.decode("utf-8", "replace"))
            if frame == b"PONG":
                self.pinged = None
            else:
                tracker.on_frame(frame)

    def ping(self, now: float) -> None:
        """Send a ping, or fail when the last one went unanswered too long."""
        if self.pinged is not None:
            if now - self.pinged > self.timeout:
                raise TimeoutError("the tracking connection stopped answering")
            return
        self.sock.settimeout(self.timeout)
        self.sock.sendall(PING)
        self.pinged = now


#: Every tracker of the process: a forked child has none of their threads.
_trackers: weakref.WeakSet[Tracker] = weakref.WeakSet()


def _after_fork() -> None:
    """In a forked child, nothing kept near is known to be current: start over."""
    for tracker in list(_trackers):
        tracker.store.lost()
        tracker._thread = None
        tracker._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
