"""Counting a registry's connections on the servers: name them with the registry option
``client_name=`` and count that name in ``CLIENT LIST`` on each server holding entries (the
single server, every cluster primary, or the primary the sentinels name)."""

from __future__ import annotations

import time
from typing import Any

from tests.support.deployments import Deployment

__all__ = ["named", "settled"]


def named(deployment: Deployment, name: str) -> dict[str, int]:
    """How many connections called ``name`` each server of ``deployment`` holds now."""
    raw: Any = deployment.raw
    if deployment.name == "cluster":
        servers = {node.name: raw.get_redis_connection(node) for node in raw.get_primaries()}
    else:
        servers = {deployment.name: raw}
    return {where: sum(1 for c in server.client_list() if c.get("name") == name)
            for where, server in servers.items()}


def settled(deployment: Deployment, name: str, timeout: float = 5.0) -> dict[str, int]:
    """:func:`named` once no server holds such a connection any more, or after ``timeout``
    seconds (a closed socket leaves the server's list a moment after the close)."""
    end = time.monotonic() + timeout
    while True:
        counts = named(deployment, name)
        if not any(counts.values()) or time.monotonic() > end:
            return counts
        time.sleep(0.02)
