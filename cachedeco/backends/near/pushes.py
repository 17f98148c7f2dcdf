"""RESP3 read off a tracking connection's socket: invalidation pushes and ping replies.

The change stream reads its socket itself rather than through redis-py's parser: without
blocking, under a lock, from its own thread or from a thread serving near hits (which applies
what arrived while the stream's thread waits for the GIL). :func:`push_reader` parses with
hiredis when the ``hiredis`` extra is installed (about 0.4 µs for a message naming two keys
here, against 2.7 µs for the pure :class:`PushReader`, on the thread that holds the GIL
meanwhile).
"""

from __future__ import annotations

from typing import Any, Final, Protocol

__all__ = ["PING", "FrameReader", "HiredisPushReader", "Push", "PushReader", "ReplyError",
           "push_reader"]

#: ``PING`` as a RESP command.
PING: Final = b"*1\r\n$4\r\nPING\r\n"


class Push(list[Any]):
    """A RESP3 push frame (``>``): ``[b"invalidate", [key, …]]`` or ``[b"invalidate", None]``."""


class ReplyError(bytes):
    """An error reply (``-`` or ``!``)."""


class _Incomplete(Exception):
    """The buffer ends inside a frame: wait for more bytes."""


class FrameReader(Protocol):
    """What the change stream reads its frames with (see :func:`push_reader`)."""

    def feed(self, data: bytes) -> list[Any]:
        """Every complete frame in what was received up to ``data``."""
        ...


def push_reader() -> FrameReader:
    """A frame reader for one tracking connection: hiredis's parser when installed, from
    hiredis 3 on (the first to read RESP3 pushes)."""
    try:
        import hiredis
    except ImportError:
        return PushReader()
    return HiredisPushReader(hiredis) if hasattr(hiredis, "PushNotification") else PushReader()


_MORE: Final = object()  # hiredis: no complete frame yet


class HiredisPushReader:
    """:class:`PushReader`'s frames, parsed by hiredis (given as ``hiredis``, 3 or later):
    its push notifications become :class:`Push` and its error replies :class:`ReplyError`."""

    def __init__(self, hiredis: Any) -> None:
        self._reader = hiredis.Reader(notEnoughData=_MORE)
        self._push = hiredis.PushNotification
        self._error = hiredis.ReplyError

    def feed(self, data: bytes) -> list[Any]:
        """Every complete frame in what was received up to ``data``."""
        reader = self._reader
        reader.feed(data)
        frames: list[Any] = []
        while (frame := reader.gets()) is not _MORE:
            if type(frame) is self._push:
                frame = Push(frame)
            elif isinstance(frame, self._error):
                frame = ReplyError(str(frame).encode("utf-8", "replace"))
            frames.append(frame)
        return frames


class PushReader:
    """Frames out of the bytes received so far (a partial frame is kept for the next feed);
    pure Python."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[Any]:
        """Every complete frame in what was received up to ``data``."""
        buffer = self._buffer + data if self._buffer else data
        frames: list[Any] = []
        pos = 0
        while pos < len(buffer):
            try:
                frame, pos = _value(buffer, pos)
            except _Incomplete:
                break
            frames.append(frame)
        self._buffer = buffer[pos:]
        return frames


def _value(buf: bytes, pos: int) -> tuple[Any, int]:
    """The RESP3 value at ``pos`` and where the next one starts."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line, pos = buf[pos:pos + 1], buf[pos + 1:end], end + 2
    if kind in (b"$", b"=", b"!"):
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        data = buf[pos:pos + size]
        return (ReplyError(data) if kind == b"!" else data), pos + size + 2
    if kind in (b"*", b">", b"~", b"%", b"|"):
        count = int(line) * (2 if kind in (b"%", b"|") else 1)
        items = []
        for _ in range(max(count, 0)):
            item, pos = _value(buf, pos)
            items.append(item)
        return (Push(items) if kind == b">" else items), pos
    if kind == b"_":
        return None, pos
    if kind == b"-":
        return ReplyError(line), pos
    if kind in (b"+", b":", b",", b"#", b"("):
        return line, pos
    raise ValueError(f"not RESP3: {buf[pos - len(line) - 3:pos]!r}")
