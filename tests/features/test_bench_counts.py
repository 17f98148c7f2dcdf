"""Command counts, the benchmarks' and the tests': a call's commands, not a background beat's."""

from __future__ import annotations

import pytest
import redis

from benchmarks.servers import command_calls
from cachedeco import Registry
from cachedeco.runtime.lineage import Lineage
from tests.support.commands import commandstats, ran
from tools.servers import Server


def test_a_lineage_beat_is_not_counted_as_a_command_of_a_call(
        fresh_redis: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Lineage, "ensure", lambda self: None)  # no thread: one beat by hand
    client = redis.Redis.from_url(fresh_redis.url)
    reg = Registry(fresh_redis.url, prefix="bench", stats_interval=0)
    try:
        @reg.cached(ttl=60)
        def one() -> int:
            return 1

        one()
        before, sent = command_calls(client), commandstats(client)
        reg.lineage.beat()  # what each process's thread sends once a second
        assert sum(commandstats(client).values()) > sum(sent.values()) + 1  # INFO and the beat
        assert command_calls(client) == before
        assert ran(sent, commandstats(client)) == {}
    finally:
        reg.close()
        client.close()
