"""The decoder and the STORE script agree on what is readable, so every stored value heals.

Whatever bytes a key holds, the fill that read them (expecting the CORRUPT marker "?" or
the value's own marker) must be able to overwrite them: otherwise a corrupt value would be
a miss forever.
"""

from __future__ import annotations

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachedeco.backends.redis._sync.single import RedisBackend
from tests.support.backends import CORRUPT, Write, decode_entry, new_marker

VALID = b"cd1:0123456789abcdef:1790000000000:12:c0123456789abcdef\n{}"


@st.composite
def stored_values(draw: st.DrawFn) -> bytes:
    """A valid envelope with a few bytes replaced, cut or inserted, or arbitrary bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=60))
    value = bytearray(VALID)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(value) - 1))
        byte = draw(st.sampled_from([b":", b"\n", b"x", b"9", b"A", b"\xff", b"", b"cdT:"]))
        value[at:at + draw(st.integers(0, 2))] = byte
    return bytes(value)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=stored_values())
def test_a_fill_can_overwrite_whatever_it_read(raw: bytes, redis_client: redis.Redis,
                                               prefix: str) -> None:
    key = f"{prefix}:agreement"
    redis_client.set(key, raw, px=60_000)
    entry = decode_entry(raw)
    expect = CORRUPT if entry.marker == CORRUPT else entry.marker
    write = Write(marker=new_marker(), value=b"1", soft=0.0, delta=0.0, px=60_000,
                  expect=expect, expect_tags=(), new_tag="c0", tag_px=60_000)
    assert RedisBackend(redis_client).write(key, write) is True, raw
    assert decode_entry(redis_client.get(key)).marker == write.marker  # type: ignore[arg-type]
