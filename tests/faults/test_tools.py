"""The fault suite's own tools: the TCP proxy in the middle (:mod:`tools.proxy`), the table
made from a results file (:mod:`tools.faults_table`), and how an asyncio worker tells its own
near hits from its other tasks' (:class:`tests.support.near.FirstStep`)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.near import FirstStep
from tools.faults_table import BEGIN, END, render, replace_between
from tools.proxy import Proxy
from tools.servers import Server


@pytest.fixture
def proxy(fresh_redis: Server) -> Iterator[Proxy]:
    with Proxy(fresh_redis.port) as started:
        yield started


def _client(proxy: Proxy, timeout: float = 2.0) -> redis.Redis:
    return redis.Redis(port=proxy.port, socket_timeout=timeout, socket_connect_timeout=timeout,
                       retry=Retry(NoBackoff(), 0))


def test_the_proxy_forwards_cuts_refuses_and_delays(proxy: Proxy) -> None:
    with _client(proxy) as client:
        assert client.set("k", "v") and client.get("k") == b"v"
        assert (proxy.cut(), proxy.accepted) == (1, 1)
        assert client.get("k") == b"v"  # redis-py saw the idle connection closed: a new one
        assert proxy.accepted == 2
        proxy.refuse()
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        proxy.heal()
        assert client.get("k") == b"v"
    with _client(proxy, timeout=0.2) as slow:
        assert slow.ping()
        proxy.delay(1.0)  # longer than the client's socket timeout
        with pytest.raises(redis.TimeoutError):
            slow.ping()
        proxy.heal()
    with _client(proxy) as client:
        assert client.get("k") == b"v"
    assert proxy.accepted >= 4


def test_the_table_is_rendered_and_replaced_between_its_markers() -> None:
    row = {"fault": "Redis frozen", "deployment": "single", "calls": 1200, "errors": 3,
           "errors_by_kind": {"behind:BackendError": 3}, "wrong": 0, "stale": 2,
           "stale_after": 0, "within_reach": 5, "lost": 0, "returned": 100,
           "lost_promised_zero": True,
           "p99_ms": 12.3, "max_ms": 250.0, "max_kind": "read", "recover_s": 0.7,
           "logged": 4, "logged_max": 2, "notes": "n"}
    data = {"meta": {"mode": "quick", "reach": 0.2}, "rows": [row]}
    short, full = render(data), render(data, full=True)
    assert "| stale reads after recovery | stale reads within reach | records lost |" in short
    assert ("| Redis frozen | 1,200 | 3 (write-behind) | 0 | 0 | 5 | 0 of 100 (promised 0) "
            "| 12 ms | 250 ms | 0.7 s |") in short
    assert ("| Redis frozen | single | 1,200 | 3: 3 write-behind BackendError | 0 | 0 | 2 | 5 "
            "| 0 of 100 (promised 0) |") in full
    assert "| stale reads during the fault | stale reads within reach |" in full
    assert "250 ms (read)" in full
    assert "served it less than 0.2 s after every write it missed returned" in short
    old = {key: value for key, value in row.items() if key != "within_reach"}
    before = render({"meta": {"mode": "quick"}, "rows": [old]})  # a run from before the column
    assert "| 0 | 0 | 0 | 0 of 100" in before and "every write it missed" not in before
    page = f"before\n{BEGIN}\nold\n{END}\nafter\n"
    assert replace_between(page, short) == f"before\n{BEGIN}\n{short}{END}\nafter\n"


def test_first_step_counts_what_a_call_did_before_it_first_suspended() -> None:
    hits = [0]

    def probe() -> int:
        return hits[0]

    async def near_hit() -> str:  # served at once: no suspension
        hits[0] += 1
        return "near"

    async def read(delay: float) -> str:  # suspends; another task's hit lands meanwhile
        await asyncio.sleep(delay)
        return "read"

    async def failing() -> str:
        await asyncio.sleep(0)
        raise ValueError("load failed")

    async def stepped(coro: Coroutine[Any, Any, str]) -> str:
        return await FirstStep(coro, probe)  # type: ignore[no-any-return]

    async def main() -> None:
        step = FirstStep(near_hit(), probe)
        assert await step == "near" and step.grew
        slow = FirstStep(read(0.05), probe)
        other = asyncio.create_task(near_hit())
        assert await slow == "read" and not slow.grew  # the other task's hit is not its own
        assert other.done() and hits[0] == 2
        with pytest.raises(ValueError, match="load failed"):
            await stepped(failing())
        waiting = asyncio.create_task(stepped(read(10)))
        await asyncio.sleep(0.01)
        waiting.cancel()  # thrown into the call it awaits
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(main())
