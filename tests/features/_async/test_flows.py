"""The cache flows (miss, hit, tags, invalidation, write-through, patterns, clear) on every
deployment, from a URL and, where a user may hand one over, from a ready client."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cachedeco import Registry
from tests.support._async.flows import check_flows
from tests.support.deployments import Deployment


async def test_flows_from_a_url(
        amake_registry: Callable[..., Registry], deployment: Deployment, prefix: str) -> None:
    # on_error="raise": a refused command must fail the test, not fall back silently
    reg = amake_registry(deployment.url, on_error="raise")
    await check_flows(reg, deployment.raw if deployment.has_server else None, prefix)


@pytest.mark.deployments("redis", "cluster")
async def test_flows_over_a_ready_client(
        amake_registry: Callable[..., Registry], deployment: Deployment, prefix: str) -> None:
    client = deployment.aclient()
    try:
        await check_flows(amake_registry(client, on_error="raise"), deployment.raw, prefix)
    finally:
        await client.aclose()
