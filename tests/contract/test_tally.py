"""The tally contract (``backend.tally(key)``) on every backend, sync and async: counts add up
across adders, one call adds all of its counts, and reading gives every sum."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cachedeco import Registry
from tests.support.commands import commandstats, ran

Make = Callable[..., Registry]


@pytest.fixture(params=["memory", "redis", "cluster", "sentinel"])
def url(request: pytest.FixtureRequest, redis_url: str, cluster_url: str, sentinel_url: str,
        prefix: str) -> str:
    return {"memory": "memory://", "redis": redis_url, "cluster": cluster_url,
            "sentinel": sentinel_url}[request.param]


def test_counts_add_up_across_adders(url: str, prefix: str, make_registry: Make) -> None:
    one, two = make_registry(url, prefix=prefix), make_registry(url, prefix=prefix)
    key = one.keyspace.stats
    tally = one.slot("default").backend().tally(key)
    assert tally.read() == {}
    tally.add({"a|hits": 2, "a|misses": 1})
    tally.add({})  # nothing to add: nothing sent
    tally.add({"a|hits": 3, "b|loads": 7})
    expect = {"a|hits": 5, "a|misses": 1, "b|loads": 7}
    assert tally.read() == expect
    if not url.startswith("memory"):  # another process's view, through another client
        assert two.slot("default").backend().tally(key).read() == expect


async def test_the_async_tally(url: str, prefix: str, amake_registry: Make) -> None:
    reg = amake_registry(url, prefix=prefix)
    tally = reg.slot("default").abackend().tally(reg.keyspace.stats)
    await tally.add({"f|hits": 4})
    await tally.add({"f|hits": 1, "f|stale_hits": 2})
    assert await tally.read() == {"f|hits": 5, "f|stale_hits": 2}


def test_one_add_is_one_command(redis_url: str, prefix: str, make_registry: Make,
                                redis_client: Any) -> None:
    tally = make_registry(redis_url, prefix=prefix).slot("default").backend().tally(
        f"{prefix}:~stats")
    tally.add({"warm|hits": 1})  # the script is loaded by now
    before = commandstats(redis_client)
    tally.add({f"f{i}|hits": i for i in range(1, 21)})
    after = commandstats(redis_client)
    spent = ran(before, after)
    assert spent == {"evalsha": 1, "hincrby": 20}  # the script's own calls count too
