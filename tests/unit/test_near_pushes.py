"""The change stream's RESP3 reading, without a server: invalidation pushes (keys, or null after
FLUSHDB), ping replies and errors, split across reads anywhere."""

from __future__ import annotations

from cachedeco.backends.near.pushes import Push, PushReader, ReplyError

STREAM = (b">2\r\n$10\r\ninvalidate\r\n*2\r\n$5\r\np:a:1\r\n$8\r\np:~tag:t\r\n"
          b"+PONG\r\n"
          b">2\r\n$10\r\ninvalidate\r\n_\r\n"
          b"-ERR nope\r\n")
FRAMES = [Push([b"invalidate", [b"p:a:1", b"p:~tag:t"]]), b"PONG",
          Push([b"invalidate", None]), ReplyError(b"ERR nope")]


def test_whole_frames_are_read() -> None:
    frames = PushReader().feed(STREAM)
    assert frames == FRAMES
    assert isinstance(frames[0], Push) and isinstance(frames[3], ReplyError)


def test_frames_split_anywhere_are_read_once_complete() -> None:
    for cut in range(1, len(STREAM)):
        reader = PushReader()
        assert reader.feed(STREAM[:cut]) + reader.feed(STREAM[cut:]) == FRAMES
    reader = PushReader()
    assert [f for i in range(len(STREAM)) for f in reader.feed(STREAM[i:i + 1])] == FRAMES
