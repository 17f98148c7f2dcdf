"""Redis ACL users confined to a test's prefix, created with ``ACL SETUSER`` on every node
given and deleted after; :func:`user_url` logs a URL in as such a user, and the
``confined_url`` fixture is the test's deployment logged in as one."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.cluster import RedisCluster

from tests.support.deployments import Deployment

__all__ = ["API_RULES", "MINIMAL_COMMANDS", "admins", "confined_url", "confined_user", "user_url"]

#: What the documentation promises to support: every command but the dangerous ones, on the prefix.
API_RULES = ("+@all", "-@dangerous")
#: What cachedeco's cache, tags, invalidation and clear() run (scripts' commands included).
MINIMAL_COMMANDS = ("+get", "+mget", "+set", "+getrange", "+pexpire", "+evalsha",
                    "+script|load", "+scan", "+unlink", "+hincrby",
                    "+incr")


def admins(raw: Any) -> list[Any]:
    """The clients to create a user with: ``raw`` itself, or a client of every cluster node."""
    if isinstance(raw, RedisCluster):
        return [raw.get_redis_connection(node) for node in raw.get_nodes()]
    return [raw]


@contextlib.contextmanager
def confined_user(admins: Sequence[Any], prefix: str, rules: Sequence[str] = API_RULES,
                  *, keys: str | None = None) -> Iterator[tuple[str, str]]:
    """A fresh user ``(name, password)`` on every client of ``admins`` that may touch the keys
    and channels ``prefix:*`` (or the key pattern ``keys``) and run ``rules``."""
    name, password = f"u-{prefix}-{secrets.token_hex(3)}", secrets.token_hex(12)
    pattern = keys or f"{prefix}:*"
    for admin in admins:
        admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}",
                              f"~{pattern}", f"&{pattern}", *rules)
    try:
        yield name, password
    finally:
        for admin in admins:
            admin.execute_command("ACL", "DELUSER", name)


def user_url(url: str, name: str, password: str) -> str:
    """``url`` logging in as ``name`` (a cluster URL: on every node it lists)."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"{name}:{password}@{parts.netloc.rpartition('@')[2]}").geturl()


@pytest.fixture
def confined_url(request: pytest.FixtureRequest, deployment: Deployment,
                 prefix: str) -> Iterator[str]:
    """The deployment's URL logging in as a fresh user confined to the test's prefix, allowed
    what the documentation promises (``"api"``, the default) or, parametrized indirectly with
    ``"minimal"``, only :data:`MINIMAL_COMMANDS`."""
    rules = {"api": API_RULES, "minimal": ("-@all", *MINIMAL_COMMANDS)}[
        getattr(request, "param", "api")]
    with confined_user(admins(deployment.raw), prefix, rules) as (name, password):
        yield user_url(deployment.url, name, password)
