"""Whether the Redis server is new enough, asked only once a command has been refused.

cachedeco needs Redis 7.0 (``SET … NX GET``, ``PEXPIRE … GT``). An older server answers most
commands (a hit's ``GET`` works) and refuses those with a bare ``syntax error`` or ``wrong
number of arguments``: without this check, an old server looks like a backend fault on every
lock, tagged store and invalidation, logged now and then, while the functions run uncached.
So the first refused command has the backend ask the server's version (``HELLO``, which the
prefix-limited ACL user may run, unlike ``INFO``), and an old server becomes a
:class:`~cachedeco.errors.ConfigurationError` naming it. Nothing is asked while commands work.
"""

from __future__ import annotations

from typing import Any, Final

import redis.exceptions

__all__ = ["REQUIRED", "aask", "ask", "problem"]

#: The oldest Redis cachedeco runs on.
REQUIRED: Final = (7, 0)


def problem(hello: object) -> str | None:
    """What is wrong with the server that answered ``HELLO`` with ``hello`` (a flat list of
    names and values, or a mapping), or None: new enough, or not Redis itself (Valkey starts
    at 7.2; a server of another name keeps its own versions)."""
    fields = _fields(hello)
    server, version = fields.get("server"), fields.get("version")
    if server != "redis" or version is None:
        return None
    try:
        numbers = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return None
    if numbers >= REQUIRED:
        return None
    need = ".".join(map(str, REQUIRED))
    return (f"the server runs Redis {version}, and cachedeco needs Redis {need} or newer "
            "(it uses SET … NX GET and PEXPIRE … GT); upgrade the server")


def ask(client: Any) -> str | None:
    """:func:`problem` of the server behind a sync redis-py ``client`` (a cluster client asks
    its default node); None when new enough or when it cannot tell (``HELLO`` refused). A
    server that does not answer raises, as any command would."""
    try:
        return problem(client.execute_command("HELLO", **_routing(client)))
    except redis.exceptions.ResponseError:
        return None


async def aask(client: Any) -> str | None:
    """:func:`ask` for an asyncio redis-py ``client``."""
    try:
        return problem(await client.execute_command("HELLO", **_routing(client)))
    except redis.exceptions.ResponseError:
        return None


def _routing(client: Any) -> dict[str, Any]:
    """Where a cluster client sends ``HELLO`` (a keyless command): its default node."""
    node = getattr(client, "get_default_node", None)
    return {} if node is None else {"target_nodes": node()}


def _fields(hello: object) -> dict[str, str]:
    """``HELLO``'s text fields by name (RESP2 gives a flat list, RESP3 a mapping)."""
    if isinstance(hello, dict):
        pairs = list(hello.items())
    elif isinstance(hello, list | tuple):
        pairs = list(zip(hello[::2], hello[1::2], strict=False))
    else:
        return {}
    return {_text(name): _text(value) for name, value in pairs
            if isinstance(value, bytes | str)}


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
