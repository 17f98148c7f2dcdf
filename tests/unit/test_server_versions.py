"""What a server's ``HELLO`` reply says of its version (:mod:`cachedeco.backends.redis.versions`):
Redis older than 7.0 is named, anything else is not judged."""

from __future__ import annotations

import time
from typing import Any

import fakeredis
import pytest
import redis

import cachedeco.backends.open as open_module
from cachedeco import Registry
from cachedeco.backends.redis.versions import ask, problem

# HELLO as Redis 6.2.14 and 7.0.15 answer it on a RESP2 connection (read off real servers).
HELLO_62 = [b"server", b"redis", b"version", b"6.2.14", b"proto", 2, b"id", 12, b"mode",
            b"standalone", b"role", b"master", b"modules", []]
HELLO_70 = [b"server", b"redis", b"version", b"7.0.15", b"proto", 2, b"id", 3, b"mode",
            b"standalone", b"role", b"master", b"modules", []]


def test_redis_older_than_7_is_named() -> None:
    said = problem(HELLO_62)
    assert said is not None
    assert "Redis 6.2.14" in said and "7.0 or newer" in said
    assert problem({b"server": b"redis", b"version": b"6.0.20"}) is not None  # RESP3: a map
    assert problem({"server": "redis", "version": "5.0.14"}) is not None


@pytest.mark.parametrize("hello", [
    HELLO_70,
    {b"server": b"redis", b"version": b"7.2.4"},
    {b"server": b"redis", b"version": b"10.0.0"},
    {b"server": b"valkey", b"version": b"8.0.1"},  # another server's own numbering
    {b"server": b"fakeredis", b"version": b"2.41.0"},
    {b"server": b"redis", b"version": b"unstable"},
    {b"server": b"redis"},
    [b"server"],
    None,
    b"OK",
])
def test_anything_else_is_not_judged(hello: object) -> None:
    assert problem(hello) is None


def test_ask_a_server_that_does_not_say() -> None:
    assert ask(fakeredis.FakeRedis()) is None  # fakeredis names itself: not judged


class _Silent(fakeredis.FakeRedis):
    """A server that answers everything but the version question (it does not answer that)."""

    asked = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if args and args[0] == "HELLO":
            type(self).asked += 1
            raise redis.exceptions.ConnectionError("no answer")
        return super().execute_command(*args, **options)


def test_a_question_unanswered_is_asked_again_later(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(open_module, "ASK_AGAIN", 0.2)
    reg = Registry(_Silent())
    slot = reg.slot("default")
    refused = redis.exceptions.ResponseError("syntax error")
    try:
        assert [slot.server_problem(refused) for _ in range(5)] == [None] * 5
        assert _Silent.asked == 1  # not once per refusal
        time.sleep(0.25)
        assert slot.server_problem(refused) is None
        assert _Silent.asked == 2
        assert slot.server_problem(redis.exceptions.ConnectionError("down")) is None
        assert _Silent.asked == 2  # only a refusal asks
    finally:
        reg.close()
