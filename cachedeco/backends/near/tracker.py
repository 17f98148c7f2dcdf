"""The near cache's change stream: a background thread holding one RESP3 connection per
primary with ``CLIENT TRACKING ON BCAST PREFIX <prefix>:``, turning Redis's invalidation
messages into drops from the :class:`~cachedeco.backends.near.store.NearStore`.

One thread serves the sync and the asyncio flavours alike (the store is thread-safe), so a
near cache works the same whatever calls it. In BCAST mode Redis names every key under the
prefix that changes, whoever changed it, on the tracking connection itself: no ``SUBSCRIBE``
to ``__redis__:invalidate`` is needed, so a user confined to the prefix can run it. The
connections are pinged every ``INTERVAL`` (a quarter of the socket timeout when that is
shorter); a failed or silent connection, or a change of primaries, empties the store and
stops it keeping values until tracking is enabled again on every primary. Before that, the
store serves no value once ``ANSWERED`` of the socket timeout passed since the last ping a
connection answered was sent: a change that cannot reach a frozen Redis fails its call only
after the socket timeout, so no near hit serves an older value after that call returns
(Redis answers a ping after the changes sent before it, and reports them first). On Cluster
the backend also tells it of any read answered by a server it does not listen to, or through
a redirect (:meth:`Tracker.stray`: a slot moving to a new primary): the store then keeps no
new value until the primaries were asked again.

This process's own stores are reported back to it like anyone's, and drop what it keeps for
those keys: the report cannot be told apart from another client's change. Redis names a key
once per event-loop turn however many clients changed it (two connections storing one key
4,000 times gave about 2,000 messages here), so a store of ours and another client's store
right after it in the same turn arrive as one message; counting our stores in flight and
letting each consume a message would then keep our value while Redis holds theirs, for good.
``NOLOOP`` only spares the connection that enabled tracking its own changes, and our stores
go through the data connections' pool (each pooled connection tracking with ``REDIRECT`` and
``NOLOOP`` would send one copy of every change per connection). So a value is kept only from
a read whose ticket was taken after the report of our store was applied; reads apply what
has arrived before taking their ticket (:meth:`Tracker.catch_up`), and Redis sends the report
in the same event-loop turn as the store's reply, so the read after a store usually keeps its
value (one read per key and process after a store: the cost of staying exact).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from typing import Any, Final

from cachedeco.backends.near.links import Link, make_poller
from cachedeco.backends.near.pushes import Push
from cachedeco.backends.near.sources import Source
from cachedeco.backends.near.store import NearStore
from cachedeco.backends.redis.cluster_plan import plain_tag_key
from cachedeco.core.forking import redo_after_fork
from cachedeco.core.logs import say

__all__ = ["Tracker"]


INTERVAL: Final = 0.25  # seconds between two pings of the tracking connections (at most)
ANSWERED: Final = 0.8  # of the socket timeout: how long an answered ping vouches for the stream
RETRY: Final = (0.05, 2.0)  # first and longest wait before connecting again
RECHECK: Final = 0.05  # seconds between two questions for the primaries after stray reads
QUIET: Final = 10.0  # seconds between two "change stream lost" lines (a flapping link)


class Moved(Exception):
    """The primaries changed: the stream must start over on the new ones."""


class Tracker:
    """The thread keeping ``store`` coherent with the keys under ``prefix`` on ``source``."""

    def __init__(self, store: NearStore, source: Source, prefix: str, backend: str) -> None:
        self.store = store
        self.source = source
        self.prefix = prefix
        self.backend = backend  # its name in the registry, for log lines
        self.connects = 0  # times tracking was enabled on every primary
        self.messages = 0  # invalidation messages received
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._primaries: frozenset[str] = frozenset()
        self._recheck = False  # a read was answered by a server not listened to: ask again
        self._wake: socket.socket | None = None  # wakes the thread's poll (see stray())
        self._failing = False
        self._said_lost = -QUIET  # when "lost" was last logged (monotonic)
        self._held = 0  # losses not logged since
        self._told = False  # the current loss was logged: so is its end
        #: the links being read, and by descriptor (for :meth:`catch_up`)
        self._links: tuple[list[Link], dict[int, Link]] | None = None
        #: each thread's poll object over the links' sockets, for :meth:`catch_up` (a poll
        #: object is not shared: one shared under a lock left the other threads serving while
        #: its holder waited for the GIL after its poll)
        self._pollers = threading.local()
        redo_after_fork(self)  # a forked child has none of its threads

    def ensure(self) -> None:
        """Start the thread unless it runs (a cheap check on every backend read)."""
        if self._thread is None and not self._stop.is_set():
            with self._lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(
                        target=self._run, args=(self._stop,), daemon=True,
                        name=f"cachedeco-near-{self.prefix}")
                    self._thread.start()

    def close(self, *, final: bool = False) -> None:
        """Stop the thread and forget every value. A later read starts a new thread (a
        registry used again after ``close()``), unless ``final`` (backends replaced)."""
        with self._lock:
            stop, thread = self._stop, self._thread
            stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
        self.store.lost()
        self.source.close()
        if not final:
            with self._lock:
                if self._stop is stop:  # the thread ran with its own: a new one gets another
                    self._thread, self._stop = None, threading.Event()

    @property
    def tracked(self) -> frozenset[str]:
        """``host:port`` of every primary the stream listens to now."""
        return self._primaries

    def stray(self) -> None:
        """A read is answered by a server the stream does not listen to, or through a
        redirect (a Cluster slot moving to a new primary): the store keeps no value read
        from now on until the thread has asked for the primaries again (woken to do so at
        once, at most every ``RECHECK`` seconds) and listens to every one of them."""
        self.store.pause()
        self._recheck = True
        self._wake_up()

    def abandon(self) -> None:
        """Its backend was dropped without being closed (collected): stop the thread without
        waiting for it; it lets go of its connections as it ends."""
        self._stop.set()
        self._wake_up()

    def _wake_up(self) -> None:
        wake = self._wake
        if wake is not None:
            with contextlib.suppress(OSError):  # full (a wake-up is pending) or closed
                wake.send(b"!")

    # -- the thread -------------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        wait = RETRY[0]
        while not stop.is_set():
            conns: list[Any] = []
            try:
                conns = self._connect()
                self.store.up()
                self.connects += 1
                if self._told:  # its loss was logged (a move's too): so is its end
                    say(self.prefix, logging.WARNING, "near cache of backend %r: change "
                        "stream back", self.backend)
                self._failing, self._told, wait = False, False, RETRY[0]
                self._listen(conns, stop)
            except Exception as exc:  # a stream that fails, however it fails, is lost
                if not self._failing and not stop.is_set():
                    self._lost(exc)
                self._failing = not isinstance(exc, Moved)
            finally:
                self.store.lost()
                for conn in conns:
                    conn.disconnect()
            stop.wait(wait)
            wait = min(wait * 2, RETRY[1])
        self.source.close()  # stopped (closed, or abandoned: nobody closes it after)

    def _lost(self, exc: Exception) -> None:
        """Log a loss of the stream, at most once per QUIET seconds (its end with it): a link
        that flaps is a line now and then, not two per cut."""
        now = time.monotonic()
        if now - self._said_lost < QUIET:
            self._held += 1
            return
        held = f" ({self._held} more since the last such line)" if self._held else ""
        say(self.prefix, logging.WARNING, "near cache of backend %r bypassed: change stream "
            "lost (%s: %s); reconnecting%s", self.backend, type(exc).__name__, exc, held)
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

    def _listen(self, conns: list[Any], stop: threading.Event) -> None:
        """Read invalidations until a connection fails, the primaries move or it is closed.

        The thread waits in ``poll`` holding nothing, then reads what arrived without
        blocking, under the link's lock: a thread serving near hits may read it first
        (:meth:`catch_up`). A ping every ``INTERVAL`` must be answered within the socket
        timeout."""
        for conn in conns:  # what redis-py's parser may hold already
            while conn.can_read(0):
                conn.read_response(push_request=True)
        links = [Link(conn) for conn in conns]
        interval = min(INTERVAL, *(link.timeout / 4 for link in links))
        by_fd = {link.sock.fileno(): link for link in links}
        waiting = select.poll()
        for fd in by_fd:
            waiting.register(fd, select.POLLIN)
        woken, self._wake = socket.socketpair()
        for end in (woken, self._wake):
            end.setblocking(False)
        waiting.register(woken.fileno(), select.POLLIN)
        self._links = (links, by_fd)
        self.answered()
        self.store.follow(self.catch_up)
        now = time.monotonic()
        ping = now + interval
        every = self.source.check_every
        check = now + every
        recheck = now  # the earliest time the primaries may be asked again after a stray
        try:
            while not stop.is_set():
                due = min(ping, check, recheck if self._recheck else check)
                for fd, _ in waiting.poll(max(1, int((due - time.monotonic()) * 1000))):
                    if fd in by_fd:
                        by_fd[fd].receive(self)
                    else:
                        with contextlib.suppress(OSError):
                            woken.recv(4096)
                for link in links:
                    if link.error is not None:
                        raise link.error
                now = time.monotonic()
                if now >= ping:
                    for link in links:
                        link.ping(now)
                    ping = now + interval
                if now >= check or (self._recheck and now >= recheck):
                    asked, self._recheck = self._recheck, False
                    if frozenset(self.source.primaries()) != self._primaries:
                        raise Moved("the primaries changed")
                    if asked:
                        self.store.resume()
                        recheck = now + RECHECK
                    check = now + every
        finally:
            self._links = None
            wake, self._wake = self._wake, None
            for end in (woken, wake):
                if end is not None:
                    end.close()

    def catch_up(self) -> None:
        """Apply what Redis already sent but this thread has not read yet (called from the
        hit path, on whatever thread serves hits): a process whose threads keep the GIL busy
        would otherwise serve old values until this thread gets the GIL back, up to a switch
        interval (5 ms) per blocking call. One ``poll(0)`` with this thread's own poll object;
        reading and applying only when something arrived, or waiting for the thread applying
        it right now (the stream's, or another caller's: it may wait for the GIL as long)."""
        found = self._links
        if found is None:
            return
        by_fd, mine = found[1], self._pollers
        if getattr(mine, "found", None) is not found:  # new links, or this thread's first look
            mine.found, mine.poller = found, make_poller(by_fd)
        try:
            ready = {fd for fd, _ in mine.poller.poll(0)}
            for fd, link in by_fd.items():
                if fd in ready or link.lock.locked():
                    link.receive(self)  # a fault is kept for the thread, which handles it
        except (OSError, ValueError):  # a socket closed meanwhile: the thread handles it too
            pass

    def answered(self) -> None:
        """A connection answered a ping: the store may serve values until ``ANSWERED`` of the
        timeout after the least recent of the connections' last answered pings was sent."""
        found = self._links
        if found is not None:
            self.store.quiet_after = min(link.proven + ANSWERED * link.timeout
                                         for link in found[0])

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

    def after_fork(self) -> None:
        """In a forked child, nothing kept near is known to be current: start over (the
        stream is opened again at the child's first read)."""
        self.store.lost()
        self._links = None
        self._wake = None  # the parent's thread's: not to be woken from here
        self._pollers = threading.local()
        self._thread = None
