"""Reads and stores sent straight on a pooled connection, asyncio flavour
(``_sync/direct.py`` is generated from this file).

A hit's ``GET`` or ``MGET`` and a miss's ``EVALSHA`` of the store script need none of
redis-py's per-command layers: their replies are used as they come (no response callback),
and the clients cachedeco makes retry nothing. Sending them on a connection from the client's
pool directly saves 3-4 µs of CPU per read and more per store (a script call goes through
more of those layers). Only for those clients: a client the user hands over keeps redis-py's
path (its retry policy, its callbacks, a single-connection client's lock).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import redis.asyncio
import redis.commands.core
import redis.exceptions

from cachedeco.backends.redis.sending import asend_packed

__all__ = ["DirectScript", "direct"]


def _name_wanted(pool_class: Any) -> tuple[str, ...]:
    """What ``get_connection`` must be given: a command name before redis-py 5.3 (later
    ones deprecate it)."""
    param = inspect.signature(pool_class.get_connection).parameters.get("command_name")
    return ("GET",) if param is not None and param.default is inspect.Parameter.empty else ()


_NAME = _name_wanted(redis.asyncio.ConnectionPool)
Pack = Callable[[tuple[Any, ...]], bytes]


def _hiredis_pack() -> Pack | None:
    """hiredis's command packer, or None without the hiredis extra."""
    try:
        from hiredis import pack_command
    except ImportError:
        return None
    return pack_command


_HIREDIS_PACK = _hiredis_pack()


def direct(client: redis.asyncio.Redis) -> Callable[..., Any]:
    """``execute_command`` for commands whose reply needs no callback (``GET``, ``MGET``,
    ``EVALSHA``) over ``client``'s pool, without the layers (see the module docstring)."""
    pool = client.connection_pool
    return functools.partial(_send, pool, _packer(pool.connection_kwargs))


def _packer(settings: dict[str, Any]) -> Pack | None:
    """hiredis's packer, where it packs what we send (str, bytes and int arguments) as the
    pool's connections would: strings as strict UTF-8. None: the connection packs (redis-py
    checks and encodes every argument in Python first)."""
    if settings.get("encoding", "utf-8").lower() not in ("utf-8", "utf8") or settings.get(
            "encoding_errors", "strict") != "strict":
        return None
    return _HIREDIS_PACK


class DirectScript:
    """A script registered with redis-py, run with ``EVALSHA`` through ``send`` (see
    :func:`direct`): called like redis-py's ``Script``, and like it, loading the script
    again when the server does not know it (restarted, or its scripts flushed)."""

    def __init__(self, send: Callable[..., Any], script: redis.commands.core.AsyncScript
                 ) -> None:
        self._send = send
        self._script = script

    async def __call__(self, keys: Any = (), args: Any = ()) -> Any:
        script = self._script
        try:
            return await self._send("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            await script.registered_client.script_load(script.script)
            return await self._send("EVALSHA", script.sha, len(keys), *keys, *args)


async def _send(pool: Any, pack: Pack | None, *args: Any) -> Any:
    """One command and its reply on a connection from ``pool``, packed by ``pack`` (None:
    by the connection). A connection that failed mid-command is dropped (a reply error
    leaves it usable), as redis-py does."""
    connection = await pool.get_connection(*_NAME)
    try:
        await asend_packed(connection, connection.pack_command(*args) if pack is None
                           else [pack(args)])
        return await connection.read_response()
    except redis.exceptions.ResponseError:
        raise
    except BaseException:
        await connection.disconnect(True)  # at once (asyncio: nowait)
        raise
    finally:
        await pool.release(connection)
