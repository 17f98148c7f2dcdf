"""The public :class:`Registry`: the registry core plus the decorator conveniences
(``reg.cached``, ``reg.write_through``, ``reg.write_behind``, ``reg.lock``), and the default
registry every decorator without ``registry=`` uses."""

from __future__ import annotations

from typing import Any, Final

from cachedeco.api.cached import cached
from cachedeco.api.lock import Lock
from cachedeco.api.write_behind import write_behind
from cachedeco.api.write_through import write_through
from cachedeco.runtime import registry as core

__all__ = ["Registry", "registry"]


class Registry(core.Registry):
    """Named backends and the settings of every function decorated through it.

    ``Registry(backend="memory://", *, backends=None, prefix="cachedeco", ttl=3600,
    jitter=0.1, serializer="orjson", secret=None, on_error="fallback", lock_timeout=10.0,
    encryption_key=None, **backend_options)``: ``backend`` is a URL (``memory://``,
    ``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``, ``redis+sentinel://``)
    or a ready redis-py client, and
    ``backends`` names more of them; every key starts with ``prefix:``; ``ttl`` (seconds) and
    ``jitter`` (a fraction) are the defaults of every decorator; ``serializer`` is
    ``"orjson"``, ``"pickle"`` (signed with ``secret``) or an object with ``dumps``/``loads``;
    ``on_error`` is ``"fallback"`` (a backend fault runs the function uncached) or
    ``"raise"``; ``lock_timeout`` bounds a ``lock=True`` wait; ``encryption_key`` (str or
    bytes of at least 32 bytes, or ``[current, older, …]`` during a rotation; needs
    ``cachedeco[crypto]``) encrypts and authenticates what ``sensitive=True`` functions
    store and hashes their arguments in key names (writes use the first key, every listed
    key is read). Backend options: ``socket_timeout``, ``socket_connect_timeout``,
    ``max_connections``, ``pool_timeout``, ``maxsize`` (memory), ``tag_ttl``,
    ``breaker_threshold``, ``breaker_cooldown`` and any redis-py connection keyword, all
    checked whatever the backends (as are a URL's query options). Creating one opens no
    connection.
    """

    def cached(self, *args: Any, **kwargs: Any) -> Any:
        """``@cachedeco.cached`` bound to this registry."""
        return cached(*args, registry=self, **kwargs)

    def write_through(self, *args: Any, **kwargs: Any) -> Any:
        """``@cachedeco.write_through`` bound to this registry."""
        return write_through(*args, registry=self, **kwargs)

    def write_behind(self, *args: Any, **kwargs: Any) -> Any:
        """``@cachedeco.write_behind`` bound to this registry."""
        return write_behind(*args, registry=self, **kwargs)

    def lock(self, name: str, *, ttl: float = 10.0, timeout: float | None = None,
             backend: str = "default") -> Lock:
        """A distributed mutex for ``with`` and ``async with`` (see :class:`Lock`)."""
        return Lock(self, name, ttl=ttl, timeout=timeout, backend=backend)


registry: Final = Registry()
core.set_default_registry(registry)
