"""The public :class:`Registry`: the registry core plus the decorator conveniences
(``reg.cached``, ``reg.write_through``, ``reg.write_behind``, ``reg.lock``), and the default
registry every decorator without ``registry=`` uses."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

from cachedeco.api.cached import cached
from cachedeco.api.cached_many import cached_many
from cachedeco.api.lock import Lock
from cachedeco.api.write_behind import write_behind
from cachedeco.api.write_through import write_through
from cachedeco.backends.contracts.queues import DeadLetter
from cachedeco.errors import ConfigurationError
from cachedeco.runtime import registry as core

__all__ = ["Registry", "registry"]

D = TypeVar("D", bound=Callable[..., Any])


class _OnRegistry(Generic[D]):
    """A module-level decorator as a registry method: ``reg.cached`` is ``cached`` with
    ``registry=reg``, typed exactly like it (overloads and all)."""

    def __init__(self, decorator: D) -> None:
        self.decorator = decorator
        self.__doc__ = f"``@cachedeco.{decorator.__name__}`` bound to this registry."

    def __get__(self, obj: object, owner: type[Any] | None = None) -> D:
        if obj is None:
            return self.decorator
        decorator = self.decorator

        @functools.wraps(decorator)
        def on_registry(*args: Any, **kwargs: Any) -> Any:
            if "registry" in kwargs:
                raise ConfigurationError(f"reg.{decorator.__name__}() is bound to its "
                                         "registry: do not pass registry=")
            return decorator(*args, registry=obj, **kwargs)

        return on_registry  # type: ignore[return-value]


class Registry(core.Registry):
    """Named backends and the settings of every function decorated through it.

    Creating one opens no connection: from a URL the registry makes a sync and an asyncio
    client lazily, at first use. Every setting is checked here, whatever the backends (a
    URL's query options too): a bad one is a `ConfigurationError`. `reg.cached`,
    `reg.cached_many`, `reg.write_through` and `reg.write_behind` are the module-level
    decorators bound to this registry; `with reg:` / `async with reg:` close it on exit.

    Args:
        backend: The default backend: `"memory://"` (in-process, bounded LRU;
            `?maxsize=N`), `"redis://host:port/db"`, `"rediss://…"`, `"unix://…"`,
            `"redis+cluster://host:port[,host:port…]"`,
            `"redis+sentinel://host:port[,…]/service[/db]"`, or a ready client
            (`redis.Redis`, `redis.asyncio.Redis`, their cluster clients, fakeredis), used
            with its own timeouts and retries (logged when unbounded or retrying).
        backends: More backends by name (`{"local": "memory://"}`), chosen by a decorator's
            `backend=`; `"default"` is `backend` (given here, `backend` is left out: both
            given, and different, is a `ConfigurationError`).
        prefix: Every key and channel the registry uses starts with `prefix + ":"`.
        ttl: The default TTL of every decorator: seconds (> 0) or a `timedelta`.
        jitter: The default fraction by which stored TTLs are spread, in `[0, 1)`.
        serializer: `"orjson"` (typed by the return annotation), `"pickle"` (signed with
            `secret`) or an object with `dumps(obj) -> bytes` and `loads(data) -> obj`.
        secret: The key that signs pickled payloads (HMAC); required by `"pickle"`.
        on_error: `"fallback"`: a backend fault runs the function uncached (logged,
            counted, and a circuit breaker skips the backend for a cooldown); `"raise"`:
            it raises `BackendError`.
        lock_timeout: Seconds a `lock=True` waiter waits before computing the value itself.
        near_cache: How many decoded values each process keeps in memory in front of each
            Redis backend, served without a round trip and kept coherent by Redis
            (`CLIENT TRACKING`); `0` (the default): none. `memory://` ignores it, and so
            does a ready Sentinel-managed client (logged: give a URL).
        encryption_key: A str or bytes of at least 32 bytes, or `[current, older, …]`
            during a rotation (writes use the first, every listed key is read), for the
            functions marked `sensitive=True`: their values are encrypted and authenticated
            (AES-256-GCM) and their arguments in key names are a keyed hash. Needs
            `pip install 'cachedeco[crypto]'`.
        spool: A local file path (SQLite, WAL mode) that keeps what could not reach a backend
            that is down, write-behind records and pending invalidations, until it is back;
            delivered by this process or the next one started with the same spool. With it
            a `@write_behind` call returns during an outage (without it, it raises
            `BackendError`). A path that cannot be a file is a `ConfigurationError`.
        **backend_options: `socket_timeout`, `socket_connect_timeout` (seconds),
            `max_connections` (default 64: the connections to the server, to Sentinel's
            primary or to each cluster node, per flavour), `pool_timeout` (seconds a burst
            of callers waits for a free connection, default 5), `maxsize` (the `memory://`
            LRU's size in entries, default 10,000; tag tokens are kept apart),
            `tag_ttl` (seconds a tag token outlives its last entry, default 3600),
            `breaker_threshold` (consecutive failures that open the circuit breaker,
            default 5), `breaker_cooldown` (seconds it stays open, default 5),
            `stats_interval` (seconds between two reports of this process's counters to the
            service-wide `prefix:~stats` hash on Redis, default 5; 0: none), and any
            redis-py connection keyword the backend's connections take (`password`,
            `client_name`, TLS options such as `ssl_ca_certs` with `rediss://`, or with
            `ssl=True` on a cluster or sentinel URL); one they cannot take is refused here.

    Raises:
        ConfigurationError: A bad setting, an unknown option or a malformed URL.
    """

    cached = _OnRegistry(cached)
    cached_many = _OnRegistry(cached_many)
    write_through = _OnRegistry(write_through)
    write_behind = _OnRegistry(write_behind)

    def lock(self, name: str, *, ttl: float = 10.0, timeout: float | None = None,
             backend: str = "default") -> Lock:
        """A distributed mutex on this registry, for `with` and `async with`.

        Args:
            name: The lock's name (its key is under the registry's prefix).
            ttl: Seconds the lock lives unless released, so a crashed owner cannot keep it.
            timeout: Seconds to wait for it (`None`: without limit; `0`: one try).
            backend: The name of the backend that holds it.

        Returns:
            A [`Lock`][cachedeco.api.lock.Lock].
        """
        return Lock(self, name, ttl=ttl, timeout=timeout, backend=backend)

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """The write-behind records that used up their retries.

        Args:
            limit: The most dead letters returned per `@write_behind` function.

        Returns:
            The dead letters of every `@write_behind` function bound to this registry.
        """
        return [d for s in self._services.values() for d in s.dead_letters(limit)]

    async def adead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """The asyncio form of [`dead_letters`][cachedeco.Registry.dead_letters]: the same
        arguments."""
        return [d for s in self._services.values() for d in await s.adead_letters(limit)]

    def replay_dead_letters(self) -> int:
        """Queue every write-behind dead letter again; return how many."""
        return sum(s.replay_dead_letters() for s in self._services.values())

    async def areplay_dead_letters(self) -> int:
        """The asyncio form of
        [`replay_dead_letters`][cachedeco.Registry.replay_dead_letters]."""
        return sum([await s.areplay_dead_letters() for s in self._services.values()])


registry: Final = Registry()
core.set_default_registry(registry)
