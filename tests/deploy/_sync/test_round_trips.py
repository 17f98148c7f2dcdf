# GENERATED from _async/test_round_trips.py by tools/unasync.py: do not edit.
"""What a call costs on the wire: on a single server a hit is one round trip (one command, no
EVAL, with or without tags) and a miss a read and one store; on a cluster a hit is a GET on the
entry's node and an MGET on the tag slot's, never the routed fallback."""

from __future__ import annotations

from collections.abc import Iterator, Callable
from typing import Any

import pytest

from cachedeco import Registry, cached
from tests.support.calls import Calls
from tests.support.commands import BOOKKEEPING, commandstats, ran
from tests.support.counting import CountingClient, flat


@pytest.fixture
def counted(redis_url: str) -> Iterator[CountingClient]:
    """A client of the single server whose every send is recorded (one send, one trip)."""
    counting = CountingClient(redis_url)
    yield counting
    counting.close()


@pytest.mark.parametrize("tags", [(), ("a:{x}", "b", "c:{x}")], ids=["0 tags", "3 tags"])
def test_a_hit_is_one_round_trip(
        make_registry: Callable[..., Registry], counted: CountingClient, prefix: str,
        redis_client: Any, tags: tuple[str, ...]) -> None:
    client, sends = counted.client, counted.sends
    reg = make_registry(client)
    calls = Calls()

    @cached(registry=reg, tags=list(tags))
    def f(x: int) -> dict[str, int]:
        calls(x)
        return {"x": x}

    assert f(1) == {"x": 1}
    assert f(1) == {"x": 1}  # warm: connection made, script loaded
    sends.clear()
    assert f.key(1).startswith(f"{prefix}:")
    assert sends == []  # f.key is pure: no I/O
    before = commandstats(redis_client)
    assert f(1) == {"x": 1}
    after = commandstats(redis_client)
    assert len(sends) == 1, sends
    assert b"EVAL" not in flat(sends).upper()
    assert sum(ran(before, after).values()) == 1, ran(before, after)  # one command there too
    for _ in range(9):
        assert f(1) == {"x": 1}
    assert len(sends) == 10, sends
    assert len(calls) == 1


def test_a_miss_is_a_read_and_one_store(
        make_registry: Callable[..., Registry], counted: CountingClient) -> None:
    client, sends = counted.client, counted.sends
    reg = make_registry(client)

    @cached(registry=reg, tags=["t:{x}"])
    def f(x: int) -> int:
        return x

    f(0)  # connection and script warmed up
    sends.clear()
    f(1)
    assert len(sends) == 2, sends


def _no_routing(*args: Any) -> Any:
    raise AssertionError(f"routed fallback used for {args}")


def test_a_cluster_hit_costs_two_commands(
        make_registry: Callable[..., Registry], cluster_url: str,
        cluster_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hit with 3 tags (4 tag keys with the implicit one): one GET and one MGET."""
    reg = make_registry(cluster_url, on_error="raise")

    @cached(registry=reg, tags=["a:{x}", "b", "c:{x}"])
    def f(x: int) -> int:
        return x * 2

    for x in range(20):
        f(x)  # fill
    f(0)
    before = commandstats(cluster_client)
    assert [f(x) for x in range(20)] == [x * 2 for x in range(20)]
    spent = ran(before, commandstats(cluster_client), ignore=BOOKKEEPING)
    assert spent == {"get": 20, "mget": 20}
    assert f.stats().hits == 21
    # hits take the direct path, never the routed fallback
    with monkeypatch.context() as patch:
        patch.setattr(reg.slot("default").backend(), "_routed", _no_routing)
        assert [f(x) for x in range(20)] == [x * 2 for x in range(20)]
    assert f.stats().hits == 41
    # a fill: CHECK_TAGS on the tag slot, STORE_ENTRY on the entry's slot
    before = commandstats(cluster_client)
    f(100)
    spent = ran(before, commandstats(cluster_client), ignore=BOOKKEEPING)
    assert (spent["evalsha"], spent["mget"]) == (2, 1)  # (scripts' own calls count too)
