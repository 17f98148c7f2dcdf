"""cachedeco: decorator-based memoization over Redis (or in memory), correct under concurrency.

The public API is exactly the names in `__all__` below, plus `cachedeco.errors` (the
exception hierarchy) and `cachedeco.metrics` (the exporters). Everything else (the packages
`core`, `backends`, `runtime`, `flows`, `api` and `exporters`) is private and may change in
any release.
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
    """Replace the default registry's settings and return it (`cachedeco.registry`).

    Decorators bind to the default registry at call time, so this may run at start-up,
    after the decorated functions were imported.

    Args:
        backend: The default backend, as for [`Registry`][cachedeco.Registry].
        **settings: Every other argument of [`Registry`][cachedeco.Registry] (`prefix`,
            `ttl`, `jitter`, `on_error`, …), documented there; those not given take their
            defaults.

    Raises:
        ConfigurationError: A bad setting; the registry is then left as it was.
    """
    return registry.configure(backend, **settings)


@contextlib.contextmanager
def disabled() -> Iterator[Registry]:
    """`with cachedeco.disabled():` caching is off on the default registry inside the block.

    Every function bound to it runs its function and neither reads nor writes the cache;
    see [`Registry.disable`][cachedeco.Registry.disable].
    """
    with registry.disabled() as reg:
        yield reg


def invalidate_tags(*tags: str, backend: str = "default") -> None:
    """Make every entry stored with any of `tags` a miss, in every process, in one round trip.

    Args:
        *tags: Tags as rendered (`"user:7"`), not templates.
        backend: The name of the default registry's backend.
    """
    registry.invalidate_tags(*tags, backend=backend)


async def ainvalidate_tags(*tags: str, backend: str = "default") -> None:
    """The asyncio form of [`invalidate_tags`][cachedeco.invalidate_tags]: the same
    arguments."""
    await registry.ainvalidate_tags(*tags, backend=backend)


def lock(name: str, *, ttl: float = 10.0, timeout: float | None = None,
         backend: str = "default") -> _Lock:
    """A distributed mutex on the default registry, for `with` and `async with`.

    Only its owner's token releases it, so an owner whose lock expired never deletes the next
    owner's; a waiter acquires within a round trip of the release, not after a poll.

    Args:
        name: The lock's name (its key is under the registry's prefix).
        ttl: Seconds the lock lives unless released, so a crashed owner cannot keep it.
        timeout: Seconds to wait for it (`None`: without limit; `0`: one try).
        backend: The name of the default registry's backend.

    Returns:
        A [`Lock`][cachedeco.api.lock.Lock]: `with cachedeco.lock("nightly-report"): ...`.
    """
    return registry.lock(name, ttl=ttl, timeout=timeout, backend=backend)
