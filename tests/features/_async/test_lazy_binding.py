"""Decorate first, configure later: a function decorated before ``cachedeco.configure`` uses
the deployment configured after, on the default registry."""

from __future__ import annotations

import pytest

import cachedeco
from cachedeco import cached
from tests.support.calls import Calls
from tests.support.deployments import SERVERS, Deployment


@pytest.mark.deployments(*SERVERS)
async def test_lazy_binding(deployment: Deployment, prefix: str) -> None:
    calls = Calls()

    @cached(ttl=60)
    async def f(x: int) -> int:
        calls(x)
        return x

    try:
        cachedeco.configure(deployment.url, prefix=prefix)
        assert await f(1) == 1
        assert await f(1) == 1
        assert calls.log == [1]
        assert f.key(1).startswith(f"{prefix}:")
        assert deployment.raw.exists(f.key(1)) == 1
        await cachedeco.ainvalidate_tags("nothing")
    finally:
        await cachedeco.registry.aclose()
        cachedeco.configure("memory://")
