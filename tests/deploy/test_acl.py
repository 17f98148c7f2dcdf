"""A Redis ACL user confined to the prefix: it can touch nothing else, and it reloads the
scripts a server lost. Two users are tried on the single server: the one the documentation
promises to support (``~prefix:* &prefix:* +@all -@dangerous``) and the minimal command list
it gives. (The cache flows and write-behind under such users: ``_async/test_acl.py``.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from redis.exceptions import NoPermissionError

import cachedeco
from cachedeco import Registry
from cachedeco.runtime.lineage import Lineage

pytestmark = [pytest.mark.deployments("redis"),
              pytest.mark.parametrize("confined_url", ["api", "minimal"], indirect=True)]


def test_user_is_confined(confined_url: str, prefix: str) -> None:
    with redis.Redis.from_url(confined_url) as client:
        client.set(f"{prefix}:mine", b"1")
        with pytest.raises(NoPermissionError):
            client.get(f"{prefix}-outside")
        with pytest.raises(NoPermissionError):
            client.execute_command("FLUSHDB")
        client.unlink(f"{prefix}:mine")


def test_scripts_load_under_the_user(make_registry: Callable[..., Registry],
                                     confined_url: str) -> None:
    """A server that lost its script cache (restart, failover): the user reloads them."""
    reg = make_registry(confined_url, on_error="raise")

    @cachedeco.cached(registry=reg, tags=["t"])
    def f(x: int) -> int:
        return x

    with redis.Redis.from_url(confined_url) as client:
        assert client.script_load("return 1")  # what redis-py does on NOSCRIPT
    assert f(1) == 1 and f(1) == 1
    assert f.stats().hits == 1


def test_the_lineage_counter_beats_under_the_user(
        make_registry: Callable[..., Registry], confined_url: str, prefix: str,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The counter that notices a dataset gone back in time (see the failures page) is
    allowed: its beat goes on, and no warning turns the check off."""
    monkeypatch.setattr(Lineage, "ensure", lambda self: None)  # no thread: beats by hand
    reg = make_registry(confined_url, stats_interval=0)

    @cachedeco.cached(registry=reg)
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    with redis.Redis.from_url(confined_url) as client:
        before = int(client.get(reg.keyspace.lineage) or 0)
        for _ in range(2):
            reg.lineage.beat()
        assert int(client.get(reg.keyspace.lineage) or 0) == before + 2
    assert "refuses" not in caplog.text
