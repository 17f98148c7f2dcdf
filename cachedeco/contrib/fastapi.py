"""FastAPI dependencies for per-request use of cachedeco (``pip install 'cachedeco[fastapi]'``).

- :func:`registry_dependency`: the registry in a route, for an invalidation or a lock.
- :func:`invalidations`: an :class:`Invalidations` collector; the tags a route adds are
  invalidated in one round trip when the route function returns (or raises), before the
  response is sent, so a client that got the response never reads the old value.

The lifespan that configures and closes the registry is
:func:`cachedeco.contrib.starlette.lifespan`, re-exported here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Depends

from cachedeco.api.registry import Registry
from cachedeco.api.registry import registry as default_registry
from cachedeco.contrib.starlette import lifespan
from cachedeco.runtime.invalidation import check_tags

__all__ = ["Invalidations", "invalidations", "lifespan", "registry_dependency"]


def registry_dependency(registry: Registry | None = None) -> Callable[[], Registry]:
    """A dependency that gives a route the registry: `Depends(registry_dependency())`.

    Args:
        registry: The registry to hand out; `None`: the default registry
            (`cachedeco.registry`).

    Returns:
        A function without parameters returning the registry, for `Depends(...)`.
    """
    chosen = default_registry if registry is None else registry

    def cache_registry() -> Registry:
        return chosen

    return cache_registry


class Invalidations:
    """The tags one request changed; invalidated together when its route function ends."""

    def __init__(self) -> None:
        self._tags: dict[str, None] = {}  # insertion-ordered, without duplicates

    def add(self, *tags: str) -> None:
        """Invalidate `tags` (as rendered, e.g. `"product:42"`) when the route function ends.

        Args:
            *tags: Tags to invalidate; one given twice is invalidated once.

        Raises:
            ConfigurationError: A tag that is not a non-empty string, here rather than when
                the route has ended (the tags added before it are still invalidated then).
        """
        check_tags(tags)
        self._tags.update(dict.fromkeys(tags))

    @property
    def tags(self) -> tuple[str, ...]:
        """The tags added so far, in the order first added."""
        return tuple(self._tags)


def invalidations(registry: Registry | None = None, *, backend: str = "default") -> Any:
    """Each request's [`Invalidations`][cachedeco.contrib.fastapi.Invalidations], a dependency.

    After the route function returns, and also when it raises (a write that failed half-way
    may have landed: a needless invalidation costs one miss, a missing one serves an old
    value), the collected tags are invalidated with one `ainvalidate_tags` call, before the
    response is sent (FastAPI's `scope="function"`). A request that added no tag sends
    nothing.

    ```python
    Changes = Annotated[Invalidations, invalidations()]

    @app.post("/products/{product_id}/rename")
    async def rename(product_id: int, name: str, changes: Changes) -> dict:
        await db.rename_product(product_id, name)
        changes.add(f"product:{product_id}", "products")
        return {"ok": True}
    ```

    Args:
        registry: The registry whose tags are invalidated; `None`: the default registry.
        backend: The name of that registry's backend.

    Returns:
        A `Depends(...)` marker for a route parameter (or an `Annotated` alias).
    """
    chosen = default_registry if registry is None else registry

    async def collect() -> AsyncIterator[Invalidations]:
        changed = Invalidations()
        try:
            yield changed
        finally:
            if changed.tags:
                await chosen.ainvalidate_tags(*changed.tags, backend=backend)

    return Depends(collect, scope="function")
