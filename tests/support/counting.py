"""Clients that record every send: one send is one round trip (a pipeline is one send).

:class:`CountingClient` / :class:`AsyncCountingClient` hold a client and the list its
connections append each packed command to; :func:`names` reads the command names back.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
import redis.asyncio.connection
import redis.connection

__all__ = ["AsyncCountingClient", "CountingClient", "flat", "names"]


class CountingConnection(redis.connection.Connection):
    """Appends every packed send to its class's ``sends``."""

    sends: list[Any]

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends.append(command)
        super().send_packed_command(command, check_health)


class AsyncCountingConnection(redis.asyncio.connection.Connection):
    """The asyncio twin of :class:`CountingConnection`."""

    sends: list[Any]

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends.append(command)
        await super().send_packed_command(command, check_health)


def _where(url: str) -> dict[str, Any]:
    parts = redis.connection.parse_url(url)
    return {"host": parts["host"], "port": parts["port"], "db": parts.get("db", 0)}


class CountingClient:
    """A client (``.client``) of ``url`` whose every send is appended to ``.sends``."""

    def __init__(self, url: str) -> None:
        self.sends: list[Any] = []
        connection = type("Counting", (CountingConnection,), {"sends": self.sends})
        self.client = redis.Redis.from_pool(
            redis.ConnectionPool(connection_class=connection, **_where(url)))

    def close(self) -> None:
        self.client.close()


class AsyncCountingClient:
    """The asyncio twin of :class:`CountingClient`."""

    def __init__(self, url: str) -> None:
        self.sends: list[Any] = []
        connection = type("ACounting", (AsyncCountingConnection,), {"sends": self.sends})
        self.client = redis.asyncio.Redis.from_pool(
            redis.asyncio.ConnectionPool(connection_class=connection, **_where(url)))

    async def aclose(self) -> None:
        await self.client.aclose()


def flat(sends: list[Any]) -> bytes:
    """Every send as one byte string."""
    out = b""
    for command in sends:
        parts = command if isinstance(command, list | tuple) else [command]
        out += b"".join(p.encode() if isinstance(p, str) else bytes(p) for p in parts)
    return out


def names(sends: list[Any]) -> list[str]:
    """The (first) command name of each send, lower-cased: ``["mget", "evalsha", …]``."""
    return [flat([send]).split(b"\r\n")[2].decode().lower() for send in sends]
