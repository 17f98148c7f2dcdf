"""One tracking connection of the near cache's change stream, read directly: its socket, its
pings, and the frames it carries to the :class:`~cachedeco.backends.near.tracker.Tracker`."""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from typing import Any, Protocol

from redis.exceptions import ResponseError

from cachedeco.backends.near.pushes import PING, ReplyError, push_reader
from cachedeco.backends.near.store import NearStore

__all__ = ["Link", "Listener", "make_poller"]


class Listener(Protocol):
    """What a link hands its frames to (the tracker)."""

    store: NearStore

    def on_frame(self, frame: Any) -> None: ...

    def answered(self) -> None: ...


class Link:
    """One tracking connection's socket, read directly (never blocking, under ``lock``: the
    tracker's thread and :meth:`Tracker.catch_up` both read it), and its pings."""

    def __init__(self, conn: Any) -> None:
        self.sock: socket.socket = conn._sock
        #: Bytes a TLS socket decrypted and holds (poll cannot see them: read them now).
        self._buffered = self.sock.pending if isinstance(self.sock, ssl.SSLSocket) else _none
        self.sock.setblocking(False)
        self.timeout = float(conn.socket_timeout or 5.0)
        self.reader = push_reader()
        self.lock = threading.Lock()
        self.error: BaseException | None = None  # a fault met by a catch-up, for the thread
        self.pinged: float | None = None  # when the unanswered ping was sent
        self.proven = time.monotonic()  # when the last answered ping was sent (or tracking on)

    def receive(self, tracker: Listener) -> None:
        """Read what arrived, without waiting, and apply it; a fault is kept in ``error`` (the
        thread raises it) and the store stops serving at once."""
        with self.lock:
            if self.error is not None:
                return
            try:
                self._receive(tracker)
            except Exception as exc:
                self.error = exc
                tracker.store.lost()

    def _receive(self, tracker: Listener) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                    ssl.SSLWantWriteError):  # nothing more now (TLS: no whole record yet)
                return
            if not data:
                raise ConnectionError("the tracking connection was closed")
            for frame in self.reader.feed(data):
                if isinstance(frame, ReplyError):
                    raise ResponseError(frame.decode("utf-8", "replace"))
                if frame == b"PONG":
                    if self.pinged is not None:
                        self.proven, self.pinged = self.pinged, None
                        tracker.answered()
                else:
                    tracker.on_frame(frame)
            if len(data) < 65536 and not self._buffered():
                return

    def ping(self, now: float) -> None:
        """Send a ping, or fail when the last one went unanswered too long."""
        if self.pinged is not None:
            if now - self.pinged > self.timeout:
                raise TimeoutError("the tracking connection stopped answering")
            return
        with self.lock:
            self.sock.settimeout(self.timeout)
            try:
                self.sock.sendall(PING)
            finally:
                self.sock.setblocking(False)
        self.pinged = now


def _none() -> int:
    """A plain socket holds nothing that poll cannot see."""
    return 0


def make_poller(by_fd: dict[int, Link]) -> Any:
    """A poll object over the links' sockets, for catch-ups (one poll object per waiter)."""
    polled = select.poll()
    for fd in by_fd:
        polled.register(fd, select.POLLIN)
    return polled
