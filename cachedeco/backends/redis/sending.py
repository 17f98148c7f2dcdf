"""Sending a packed command on a connection the caller holds, in each flavour.

redis-py's asyncio connections wrap every send in ``asyncio.wait_for`` when they have a
socket timeout (ours always do), which on Python 3.11 runs the send as a task of its own:
15-17 µs of CPU per command here, a fifth of a hit. :func:`asend_packed` bounds the send with
``asyncio.timeout`` instead, which only arms a timer. The sync flavour has nothing to save:
its socket carries the timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.exceptions

__all__ = ["asend_packed", "send_packed"]


def send_packed(connection: Any, command: list[bytes]) -> None:
    """Send ``command`` on a sync ``connection`` (its socket timeout applies)."""
    connection.send_packed_command(command)


async def asend_packed(connection: Any, command: list[bytes]) -> None:
    """Send ``command`` on an asyncio ``connection`` that this task holds, within the
    connection's socket timeout, without a task per send (see the module docstring). The
    connection is connected first, under its own connect timeout; a send that times out
    drops it, as redis-py's does."""
    timeout = connection.socket_timeout
    if not timeout:
        await connection.send_packed_command(command)
        return
    if not connection.is_connected:
        await connection.connect()
    connection.socket_timeout = None  # redis-py then sends without wait_for
    try:
        async with asyncio.timeout(timeout):
            await connection.send_packed_command(command)
    except TimeoutError as exc:  # our timer (redis-py dropped the connection on its way out)
        raise redis.exceptions.TimeoutError("Timeout writing to socket") from exc
    finally:
        connection.socket_timeout = timeout
