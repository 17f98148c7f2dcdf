# GENERATED from _async/test_outages.py by tools/unasync.py: do not edit.
"""A backend that fails, sync and asyncio: one that never answers costs at most the socket
timeout and then the breaker answers at once, ``on_error="raise"`` raises ``BackendError``
instead of loading, and an unreachable cluster fails open."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import redis

import cachedeco
from cachedeco import BackendError, Registry, cached
from tests.support.calls import Calls
from tests.support.outages import blackhole, dead_port


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A Redis URL whose server accepts connections but never answers."""
    with blackhole() as port:
        yield f"redis://127.0.0.1:{port}/0"


def test_fallback_within_the_socket_timeout_then_breaker(
        make_registry: Callable[..., Registry], silent_url: str) -> None:
    reg = make_registry(silent_url, socket_timeout=0.2, socket_connect_timeout=0.2)
    calls = Calls()

    @cached(registry=reg)
    def f(x: int) -> int:
        calls(x)
        return x * 3

    durations = []
    for x in range(10):
        start = time.monotonic()
        assert f(x) == x * 3
        durations.append(time.monotonic() - start)
    assert max(durations) < 0.2 + 0.4, durations
    assert durations[0] >= 0.15  # it really waited on the socket
    assert all(d < 0.05 for d in durations[-3:]), durations  # breaker open: no wait at all
    assert len(calls) == 10
    assert reg.stats().backend_errors >= 10
    assert f.stats().backend_errors >= 10


def test_on_error_raise_raises_backend_error(
        make_registry: Callable[..., Registry], silent_url: str) -> None:
    reg = make_registry(silent_url, socket_timeout=0.2, socket_connect_timeout=0.2,
                         on_error="raise")
    calls = Calls()

    @cached(registry=reg)
    def f(x: int) -> int:
        calls(x)
        return x

    start = time.monotonic()
    with pytest.raises(BackendError) as info:
        f(1)
    assert time.monotonic() - start < 0.6
    assert "f" in str(info.value)
    assert isinstance(info.value.__cause__, redis.RedisError | OSError | TimeoutError)
    assert calls.log == []
    with pytest.raises(BackendError):
        reg.invalidate_tags("t")


def test_under_raise_an_entry_whose_change_waits_raises_instead_of_loading(
        make_registry: Callable[..., Registry], silent_url: str) -> None:
    """A read of an entry auto-recovery holds back (its tag's invalidation could not land)
    raises like every other call the backend cannot serve; it loaded uncached, silently."""
    reg = make_registry(silent_url, socket_timeout=0.2, socket_connect_timeout=0.2,
                         on_error="raise")
    calls = Calls()

    @cached(registry=reg, tags=["t"])
    def f(x: int) -> int:
        calls(x)
        return x

    with pytest.raises(BackendError):
        reg.invalidate_tags("t")  # kept for auto-recovery all the same
    errors = reg.stats().backend_errors
    with pytest.raises(BackendError, match="auto-recovery has not landed"):
        f(1)
    with pytest.raises(BackendError, match="auto-recovery has not landed"):
        f.get(1)
    assert calls.log == []
    assert reg.stats().backend_errors == errors + 2


def test_an_unreachable_cluster_fails_open(
        make_registry: Callable[..., Registry]) -> None:
    reg = make_registry(f"redis+cluster://127.0.0.1:{dead_port()}")

    @cached(registry=reg)
    def f(x: int) -> int:
        return x + 1

    assert f(1) == 2
    assert f(1) == 2
    assert f.stats().backend_errors >= 1
    strict = make_registry(f"redis+cluster://127.0.0.1:{dead_port()}", on_error="raise")
    with pytest.raises(cachedeco.BackendError):
        strict.invalidate_tags("x")
