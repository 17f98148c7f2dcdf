# GENERATED from _async/test_flows.py by tools/unasync.py: do not edit.
"""The cache flows (miss, hit, tags, invalidation, write-through, patterns, clear) on every
deployment, from a URL and, where a user may hand one over, from a ready client."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cachedeco import Registry
from tests.support._sync.flows import check_flows
from tests.support.deployments import Deployment


def test_flows_from_a_url(
        make_registry: Callable[..., Registry], deployment: Deployment, prefix: str) -> None:
    # on_error="raise": a refused command must fail the test, not fall back silently
    reg = make_registry(deployment.url, on_error="raise")
    check_flows(reg, deployment.raw if deployment.has_server else None, prefix)


@pytest.mark.deployments("redis", "cluster")
def test_flows_over_a_ready_client(
        make_registry: Callable[..., Registry], deployment: Deployment, prefix: str) -> None:
    client = deployment.client()
    try:
        check_flows(make_registry(client, on_error="raise"), deployment.raw, prefix)
    finally:
        client.close()
