"""The change stream's RESP3 reading, without a server: invalidation pushes (keys, or null after
FLUSHDB), ping replies and errors, split across reads anywhere; by the pure reader and by
hiredis's parser alike."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from cachedeco.backends.near.pushes import (
    FrameReader,
    HiredisPushReader,
    Push,
    PushReader,
    ReplyError,
    push_reader,
)

STREAM = (b">2\r\n$10\r\ninvalidate\r\n*2\r\n$5\r\np:a:1\r\n$8\r\np:~tag:t\r\n"
          b"+PONG\r\n"
          b">2\r\n$10\r\ninvalidate\r\n_\r\n"
          b"-ERR nope\r\n")
FRAMES = [Push([b"invalidate", [b"p:a:1", b"p:~tag:t"]]), b"PONG",
          Push([b"invalidate", None]), ReplyError(b"ERR nope")]
try:
    import hiredis
except ImportError:  # the hiredis extra left out: the pure reader alone
    hiredis = None
#: hiredis reads RESP3 pushes from 3.0 on; the extra allows 2.3, with which the pure reader runs.
RESP3_HIREDIS = hiredis is not None and hasattr(hiredis, "PushNotification")
READERS: dict[str, Callable[[], FrameReader]] = {
    "pure": PushReader, **({"hiredis": lambda: HiredisPushReader(hiredis)} if RESP3_HIREDIS
                           else {})}


@pytest.fixture(params=sorted(READERS))
def make(request: pytest.FixtureRequest) -> Callable[[], FrameReader]:
    return READERS[request.param]


def test_whole_frames_are_read(make: Callable[[], FrameReader]) -> None:
    frames = make().feed(STREAM)
    assert frames == FRAMES
    assert [type(frame) for frame in frames] == [Push, bytes, Push, ReplyError]


def test_frames_split_anywhere_are_read_once_complete(make: Callable[[], FrameReader]) -> None:
    for cut in range(1, len(STREAM)):
        reader = make()
        assert reader.feed(STREAM[:cut]) + reader.feed(STREAM[cut:]) == FRAMES
    reader = make()
    assert [f for i in range(len(STREAM)) for f in reader.feed(STREAM[i:i + 1])] == FRAMES


def test_a_stream_that_is_not_resp_fails(make: Callable[[], FrameReader]) -> None:
    with pytest.raises(Exception):  # noqa: B017 - ValueError or hiredis.ProtocolError
        make().feed(b"?what\r\n")


def test_hiredis_parses_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(push_reader(), HiredisPushReader if RESP3_HIREDIS else PushReader)
    monkeypatch.setitem(sys.modules, "hiredis", None)  # as without the extra
    assert isinstance(push_reader(), PushReader)


def test_a_hiredis_without_resp3_pushes_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    if hiredis is not None:
        monkeypatch.delattr(hiredis, "PushNotification", raising=False)  # hiredis before 3
    assert isinstance(push_reader(), PushReader)
