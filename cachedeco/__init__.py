"""cachedeco: decorator-based memoization over Redis (or in memory), correct under concurrency.

The public API is exactly the names in ``__all__`` below, plus ``cachedeco.errors`` (the
exception hierarchy) and, from the later modules that say so, their documented names.
Everything else — the packages ``core``, ``backends``, ``runtime``, ``flows`` and ``api`` —
is private and may change in any release.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from cachedeco.api.cached import cached
from cachedeco.api.cached_many import cached_many
from cachedeco.api.lock import Lock as _Lock
from cachedeco.api.registry import Registry, registry
from cachedeco.api.write_behind import write_behind
from cachedeco.api.write_through import write_through
from cachedeco.core.entry import MISS
from cachedeco.core.stats import Stats
from cachedeco.errors import (
    BackendError,
    CacheError,
    ConfigurationError,
    LockTimeout,
    SerializationError,
)

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022 - plainly sorted (tests/unit/test_registry.py), MISS among the classes
    "BackendError",
    "CacheError",
    "ConfigurationError",
    "LockTimeout",
    "MISS",
    "Registry",
    "SerializationError",
    "Stats",
    "ainvalidate_tags",
    "cached",
    "cached_many",
    "configure",
    "disabled",
    "invalidate_tags",
    "lock",
    "registry",
    "write_behind",
    "write_through",
]


def configure(backend: object = "memory://", **settings: Any) -> Registry:
    """Replace the default registry's settings (see :class:`Registry`) and return it."""
    return registry.configure(backend, **settings)


@contextlib.contextmanager
def disabled() -> Iterator[Registry]:
    """``with cachedeco.disabled():`` caching is off on the default registry inside the block
    (see :meth:`Registry.disabled`)."""
    with registry.disabled() as reg:
        yield reg


def invalidate_tags(*tags: str, backend: str = "default") -> None:
    """Make every entry stored with any of ``tags`` a miss, in every process, in one round trip."""
    registry.invalidate_tags(*tags, backend=backend)


async def ainvalidate_tags(*tags: str, backend: str = "default") -> None:
    """The asyncio form of :func:`invalidate_tags`."""
    await registry.ainvalidate_tags(*tags, backend=backend)


def lock(name: str, *, ttl: float = 10.0, timeout: float | None = None,
         backend: str = "default") -> _Lock:
    """A distributed mutex on the default registry, for ``with`` and ``async with``."""
    return registry.lock(name, ttl=ttl, timeout=timeout, backend=backend)
