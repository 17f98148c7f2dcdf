# GENERATED from _async/direct.py by tools/unasync.py: do not edit.
"""Reads sent straight on a pooled connection, sync flavour (``_sync/direct.py`` is
generated from this file).

A hit's ``GET`` or ``MGET`` needs none of redis-py's per-command layers: its reply is used as
it comes (no response callback), and the clients cachedeco makes retry nothing. Sending it on
a connection from the client's pool directly saves 3-4 µs of CPU per read. Only for those
clients: a client the user hands over keeps redis-py's path (its retry policy, its callbacks,
a single-connection client's lock).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import redis
import redis.exceptions

__all__ = ["direct"]


def _name_wanted(pool_class: Any) -> tuple[str, ...]:
    """What ``get_connection`` must be given: a command name before redis-py 5.3 (later
    ones deprecate it)."""
    param = inspect.signature(pool_class.get_connection).parameters.get("command_name")
    return ("GET",) if param is not None and param.default is inspect.Parameter.empty else ()


_NAME = _name_wanted(redis.ConnectionPool)


def direct(client: redis.Redis) -> Callable[..., Any]:
    """``execute_command`` for ``GET`` and ``MGET`` over ``client``'s pool, without the
    layers (see the module docstring)."""
    return functools.partial(_send, client.connection_pool)


def _send(pool: Any, *args: Any) -> Any:
    """One command and its reply on a connection from ``pool``. A connection that failed
    mid-command is dropped (a reply error leaves it usable), as redis-py does."""
    connection = pool.get_connection(*_NAME)
    try:
        connection.send_packed_command(connection.pack_command(*args))
        return connection.read_response()
    except redis.exceptions.ResponseError:
        raise
    except BaseException:
        connection.disconnect(True)  # at once (asyncio: nowait)
        raise
    finally:
        pool.release(connection)
