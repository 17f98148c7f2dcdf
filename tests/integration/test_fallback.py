"""With the backend down, calls are served by the function, still one load per key at once:
a cache outage must not turn into a stampede on the database."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from cachedeco import BackendError, Registry, cached


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback port nobody listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"


async def test_concurrent_async_callers_share_one_load_while_the_backend_is_down(
        dead_url: str, prefix: str) -> None:
    reg = Registry(dead_url, prefix=prefix, socket_connect_timeout=0.2)
    calls = 0

    @cached(registry=reg)
    async def value(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return x

    assert await asyncio.gather(*(value(1) for _ in range(50))) == [1] * 50
    assert calls == 1
    assert value.stats().backend_errors >= 1
    assert value.stats().singleflight_joins == 49
    assert await value(1) == 1  # nothing is kept in process: a later call loads again
    assert calls == 2
    await reg.aclose()


def test_concurrent_threads_share_one_load_while_the_breaker_is_open(dead_url: str,
                                                                     prefix: str) -> None:
    reg = Registry(dead_url, prefix=prefix, socket_connect_timeout=0.2, breaker_threshold=1,
                   breaker_cooldown=60)
    calls = 0
    lock = threading.Lock()

    @cached(registry=reg)
    def value(x: int) -> int:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.1)
        return x

    assert value(0) == 0  # the failure that opens the breaker
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(value(5))) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [5] * 16
    assert calls == 2
    reg.close()


def test_on_error_raise_raises_instead_of_loading(dead_url: str, prefix: str) -> None:
    reg = Registry(dead_url, prefix=prefix, socket_connect_timeout=0.2, on_error="raise")

    @cached(registry=reg)
    def value(x: int) -> int:
        raise AssertionError("not called when the backend error is raised")

    with pytest.raises(BackendError):
        value(1)
    reg.close()
