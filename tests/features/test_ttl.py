"""TTLs as the servers store them: the registry's TTL and jitter read back, a decorator's
override, never below one second, never forever."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from cachedeco import Registry, cached
from tests.support.deployments import SERVERS, Deployment

pytestmark = pytest.mark.deployments(*SERVERS)


def test_ttl_with_jitter_read_back(make_registry: Callable[..., Registry],
                                   deployment: Deployment) -> None:
    reg = make_registry(deployment.url, ttl=100, jitter=0.2)

    @cached(registry=reg)
    def f(x: int) -> int:
        return x

    for x in range(40):
        f(x)
    pttls = [deployment.raw.pttl(f.key(x)) for x in range(40)]
    assert all(80_000 - 2_000 <= p <= 120_000 for p in pttls), pttls
    assert len(set(pttls)) > 10  # drawn per entry, not one constant
    assert min(pttls) < 95_000 and max(pttls) > 105_000


def test_decorator_ttl_and_jitter_override(reg: Registry, deployment: Deployment) -> None:
    raw = deployment.raw

    @cached(registry=reg, ttl=10, jitter=0)
    def exact(x: int) -> int:
        return x

    @cached(registry=reg, ttl=50, jitter=0.5)
    def wide(x: int) -> int:
        return x

    exact(1)
    assert 9_000 <= raw.pttl(exact.key(1)) <= 10_000
    for x in range(20):
        wide(x)
    pttls = [raw.pttl(wide.key(x)) for x in range(20)]
    assert all(25_000 - 2_000 <= p <= 75_000 for p in pttls), pttls


@pytest.mark.parametrize(("ttl", "jitter"), [(0.2, 0.0), (1, 0.9), (1.5, 0.5)])
def test_stored_ttl_is_never_below_one_second(reg: Registry, deployment: Deployment,
                                              ttl: float, jitter: float) -> None:
    raw = deployment.raw

    @cached(registry=reg, ttl=ttl, jitter=jitter)
    def f(x: int) -> int:
        return x

    highest = max(ttl * (1 + jitter), 1) * 1000
    for x in range(20):
        # Stored between the call's start and the read back: it had at least 1,000 ms then,
        # so it has at least 1,000 minus the time since (a loaded machine may pause between).
        start = time.monotonic()
        f(x)
        left = raw.pttl(f.key(x))
        elapsed_ms = (time.monotonic() - start) * 1000
        assert 1000 - elapsed_ms - 1 <= left <= highest, (x, left, elapsed_ms)


def test_no_entry_lives_forever(reg: Registry, deployment: Deployment) -> None:
    raw = deployment.raw

    @cached(registry=reg, ttl=None)
    def f(x: int) -> int:
        return x

    f(1)
    assert 0 < raw.pttl(f.key(1)) <= 3600 * 1.1 * 1000
