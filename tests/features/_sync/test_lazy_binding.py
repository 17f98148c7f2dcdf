# GENERATED from _async/test_lazy_binding.py by tools/unasync.py: do not edit.
"""Decorate first, configure later: a function decorated before ``cachedeco.configure`` uses
the deployment configured after, on the default registry."""

from __future__ import annotations

import pytest

import cachedeco
from cachedeco import cached
from tests.support.calls import Calls
from tests.support.deployments import SERVERS, Deployment


@pytest.mark.deployments(*SERVERS)
def test_lazy_binding(deployment: Deployment, prefix: str) -> None:
    calls = Calls()

    @cached(ttl=60)
    def f(x: int) -> int:
        calls(x)
        return x

    try:
        cachedeco.configure(deployment.url, prefix=prefix)
        assert f(1) == 1
        assert f(1) == 1
        assert calls.log == [1]
        assert f.key(1).startswith(f"{prefix}:")
        assert deployment.raw.exists(f.key(1)) == 1
        cachedeco.invalidate_tags("nothing")
    finally:
        cachedeco.registry.close()
        cachedeco.configure("memory://")
