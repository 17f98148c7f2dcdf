"""What a ready client's own settings cost a call when Redis is down or frozen.

The clients cachedeco makes from a URL wait at most ``socket_timeout`` (1 s) for a server and
never retry: the circuit breaker, the fallback to the function and auto-recovery stand in for
retries. A ready client keeps the settings it was given, and redis-py's defaults are not
those: redis-py 7.x waits without a timeout and retries 3 times, 8.x waits 5 s and retries
10 times. Through such a client a frozen server holds every call for minutes, a stopped one
for seconds, before the function serves it. :func:`slow_failures` says so, for the registry
to log once.
"""

from __future__ import annotations

import inspect
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.connection
import redis.cluster
import redis.connection

__all__ = ["slow_failures"]

_UNIX = (redis.connection.UnixDomainSocketConnection,
         redis.asyncio.connection.UnixDomainSocketConnection)

ADVICE = ("give it socket_timeout=1.0, socket_connect_timeout=1.0 and "
          "retry=Retry(NoBackoff(), 0), as the clients cachedeco makes from a URL have")


def slow_failures(client: object) -> str:
    """Why a call through ``client`` may wait long on a down or frozen Redis, and what to give
    it instead; "" when its timeouts are set and it does not retry (or when it opens no
    socket: fakeredis)."""
    found = _settings(client)
    if found is None:
        return ""
    kwargs, connection_class, retries = found
    names = ("socket_timeout",) if issubclass(connection_class, _UNIX) else (  # a unix socket
        "socket_timeout", "socket_connect_timeout")  # connects at once or fails: not asked
    unbounded = [name for name in names if _setting(kwargs, connection_class, name) is None]
    faults = []
    if unbounded:
        faults.append(f"has no {' and no '.join(unbounded)} (a frozen or unreachable Redis "
                      "holds a call until the operating system gives up)")
    if retries:
        faults.append(f"retries a failed command up to {retries} time(s) (a call waits "
                      "through them all while Redis is down)")
    return f"the ready client {' and '.join(faults)}; {ADVICE}" if faults else ""


def _settings(client: object) -> tuple[dict[str, Any], Any, int] | None:
    """``client``'s connection settings, its connection class and how many times it retries
    a command; None for a client of another kind, or a fake one."""
    if isinstance(client, redis.cluster.RedisCluster):
        kwargs = dict(client.nodes_manager.connection_kwargs)
        connection_class = kwargs.get("connection_class", redis.connection.Connection)
        retries = _retries(getattr(client, "retry", None))
    elif isinstance(client, redis.asyncio.cluster.RedisCluster):
        kwargs = dict(client.connection_kwargs)
        connection_class = kwargs.get("connection_class", redis.asyncio.connection.Connection)
        retries = _retries(getattr(client, "retry", None))
    elif isinstance(client, redis.Redis | redis.asyncio.Redis):
        pool = client.connection_pool
        kwargs, connection_class = dict(pool.connection_kwargs), pool.connection_class
        retries = _retries(kwargs.get("retry")) or int(bool(kwargs.get("retry_on_timeout")))
    else:
        return None
    if connection_class.__module__.startswith("fakeredis"):  # no socket to wait on
        return None
    return kwargs, connection_class, retries


def _retries(retry: Any) -> int:
    """How many times ``retry`` (a redis-py ``Retry``, or None) tries a command again."""
    count = getattr(retry, "get_retries", None)
    return int(count()) if callable(count) else 0


def _setting(kwargs: dict[str, Any], connection_class: Any, name: str) -> Any:
    """The value of ``name`` a connection of ``connection_class`` made with ``kwargs`` has:
    the given one, else the default of the first class of its MRO that names it (defaults
    differ between redis-py versions)."""
    if name in kwargs:
        return kwargs[name]
    for cls in connection_class.__mro__:
        parameter = inspect.signature(cls.__init__).parameters.get(name)
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            return parameter.default
    return None
