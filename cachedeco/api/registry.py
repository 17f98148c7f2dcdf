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

    ``Registry(backend="memory://", *, backends=None, prefix="cachedeco", ttl=3600,
    jitter=0.1, serializer="orjson", secret=None, on_error="fallback", lock_timeout=10.0,
    encryption_key=None, **backend_options)``: ``backend`` is a URL (``memory://``,
    ``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``, ``redis+sentinel://``)
    or a ready redis-py client, and ``backends`` names more of them; every key starts with
    ``prefix:``; ``ttl`` (seconds or a timedelta) and ``jitter`` (a fraction) are the
    defaults of every decorator; ``serializer`` is ``"orjson"``, ``"pickle"`` (signed with
    ``secret``) or an object with ``dumps``/``loads``; ``on_error`` is ``"fallback"`` (a
    backend fault runs the function uncached) or ``"raise"``; ``lock_timeout`` bounds a
    ``lock=True`` wait; ``encryption_key`` (str or bytes of at least 32 bytes, or
    ``[current, older, …]`` during a rotation; needs ``cachedeco[crypto]``) encrypts and
    authenticates what ``sensitive=True`` functions store and hashes their arguments in key
    names (writes use the first key, every listed key is read). Backend options:
    ``socket_timeout``, ``socket_connect_timeout``, ``max_connections``, ``pool_timeout``,
    ``maxsize`` (memory), ``tag_ttl``, ``breaker_threshold``, ``breaker_cooldown``,
    ``stats_interval`` (seconds between two reports of this process's counters to the
    service-wide ``prefix:~stats`` on Redis, default 5; 0: none) and any redis-py connection
    keyword, all checked whatever the backends (as are a URL's query options);
    ``max_connections`` (64) bounds the connections to the server, to Sentinel's primary or to
    each cluster node, and a burst of callers waits up to ``pool_timeout`` (5 s) for one.
    Creating one opens no connection. ``disable()``, ``enable()`` and
    ``with reg.disabled():`` switch caching off and on for every function bound to it.
    """

    cached = _OnRegistry(cached)
    cached_many = _OnRegistry(cached_many)
    write_through = _OnRegistry(write_through)
    write_behind = _OnRegistry(write_behind)

    def lock(self, name: str, *, ttl: float = 10.0, timeout: float | None = None,
             backend: str = "default") -> Lock:
        """A distributed mutex for ``with`` and ``async with`` (see :class:`Lock`)."""
        return Lock(self, name, ttl=ttl, timeout=timeout, backend=backend)


registry: Final = Registry()
core.set_default_registry(registry)
