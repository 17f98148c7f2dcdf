"""An ASGI lifespan for cachedeco: configure a registry when the app starts, and flush its
write-behind queues and close it on the app's event loop when the app stops.

    app = FastAPI(lifespan=lifespan("redis://127.0.0.1:6379/0", prefix="shop"))

It works with FastAPI, Starlette and any framework that takes a lifespan as a callable
``app -> async context manager``, and imports none of them (no extra needed). Composed with an
app's own lifespan by nesting it: ``async with cache_lifespan(app): ... yield``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from cachedeco.api.registry import Registry
from cachedeco.api.registry import registry as default_registry
from cachedeco.core.logs import say
from cachedeco.errors import CacheError, ConfigurationError

__all__ = ["Lifespan", "lifespan"]


#: What ``FastAPI(lifespan=...)`` and ``Starlette(lifespan=...)`` take: a callable of the app
#: returning an async context manager.
Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[None]]


def lifespan(backend: object = None, *, registry: Registry | None = None,
             **settings: Any) -> Lifespan:
    """A lifespan that configures `registry` at start-up and flushes and closes it at shutdown.

    At start-up, when `backend` is given, `registry.configure(backend, **settings)` runs in the
    worker process (each worker of `uvicorn --workers N` has its own registry; Redis is
    shared). At shutdown, on the app's event loop: `aflush()` delivers every queued
    `@write_behind` record to its `flush` function (a backend fault there is logged, not
    raised: on Redis the records stay queued for the next process), then `aclose()` stops the
    background work and closes the connections this loop opened. Nothing runs per request.
    The registry may be started again afterwards (a second `TestClient(app)` session).

    Args:
        backend: The default backend to configure at start-up (a URL such as
            `"redis://127.0.0.1:6379/0"`, or a client), as for
            [`Registry`][cachedeco.Registry]; `None`: keep the registry's settings (it was
            configured elsewhere).
        registry: The registry to start and close; `None`: the default registry
            (`cachedeco.registry`, which every decorator without `registry=` uses).
        **settings: The other arguments of [`Registry`][cachedeco.Registry] (`prefix`,
            `ttl`, `on_error`, …), applied with `backend`.

    Returns:
        A callable of the app returning an async context manager, for
            `FastAPI(lifespan=...)`, `Starlette(lifespan=...)` or an `async with` inside
            the app's own lifespan.

    Raises:
        ConfigurationError: `settings` without a `backend` (they would be ignored), or a
            registry given as the backend.
    """
    if isinstance(backend, Registry):
        raise ConfigurationError("lifespan() takes a registry by keyword: "
                                 "lifespan(registry=reg), or lifespan(url, registry=reg, ...)")
    if backend is None and settings:
        raise ConfigurationError(f"lifespan() got settings {sorted(settings)} but no backend: "
                                 "give the backend URL too, or configure the registry yourself")
    chosen = default_registry if registry is None else registry

    @contextlib.asynccontextmanager
    async def cachedeco_lifespan(app: Any) -> AsyncIterator[None]:
        if backend is not None:
            chosen.configure(backend, **settings)
        try:
            yield
        finally:
            await shutdown(chosen)

    return cachedeco_lifespan


async def shutdown(registry: Registry) -> None:
    """Flush `registry`'s write-behind queues, then close it on the running loop.

    Args:
        registry: The registry to flush and close.
    """
    try:
        await registry.aflush()
    except CacheError as exc:  # the backend is down: on Redis the records stay queued
        say(registry.prefix, logging.WARNING, "write-behind records not flushed at shutdown "
            "(%s: %s); they stay queued", type(exc).__name__, exc)
    await registry.aclose()
