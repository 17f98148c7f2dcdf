"""``@write_through``: the database write runs first; on success its result becomes the cached
entry of a ``@cached`` reader (or of a key template), then the listed tags are invalidated.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from cachedeco.api.checks import check_flag, check_placement, unwrap_callable
from cachedeco.api.typing import TtlArg
from cachedeco.core.keys.tags import TagsArg
from cachedeco.errors import BackendError
from cachedeco.flows._async import read as read_async
from cachedeco.flows._sync import read as read_sync
from cachedeco.flows.link import Link
from cachedeco.runtime.registry import Registry

__all__ = ["write_through"]

F = TypeVar("F", bound=Callable[..., Any])


def write_through(target: Any = None, *, key: str | None = None, ttl: TtlArg = None,
                  tags: TagsArg = (), invalidate: Iterable[str] = (), sensitive: bool = False,
                  backend: str = "default", registry: Registry | None = None
                  ) -> Callable[[F], F]:
    """Store a writer's result as a cached entry once the write succeeded.

    Exactly one of ``target`` (a ``@cached`` function, whose parameters the writer must have
    by name) and ``key`` (a key template) names the entry; ``ttl`` (seconds, a timedelta or
    ``ttl(result) -> seconds``) and ``tags`` default to the target's; ``invalidate`` lists
    tag templates to invalidate after the write. While caching is switched off the write
    runs alone. ``sensitive=True`` encrypts the stored entry and hashes the arguments in its
    key (it needs the registry's ``encryption_key=``); with a ``target``, the target decides,
    and ``sensitive=True`` insists that it is sensitive too.
    """
    check_placement(backend, registry)
    sensitive = check_flag(sensitive, "sensitive")

    def decorate(writer: F) -> F:
        func, kind = unwrap_callable(writer, "write_through")
        link = Link(func, "write_through", target, key=key, ttl=ttl, tags=tags,
                    invalidate=invalidate, backend=backend, registry=registry,
                    sensitive=sensitive)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                result = await func(*args, **kwargs)
                bound = link.bound()
                if not bound.enabled:  # caching is switched off: the write alone
                    return result
                where = link.locate(bound, args, kwargs)
                stale = link.stale_tags(where.values)
                if stale:  # first, so the entry stored next carries the tags' new tokens
                    try:
                        await link.spec.registry.ainvalidate_tags(*stale, backend=bound.slot.name)
                    except BackendError as exc:
                        link.invalidation_failed(bound, exc)
                await read_async.put(bound, where.key, where.tag_keys, result, where.aliases)
                return result

            wrapper: Callable[..., Any] = awrapper
        else:

            @functools.wraps(func)
            def swrapper(*args: Any, **kwargs: Any) -> Any:
                result = func(*args, **kwargs)
                bound = link.bound()
                if not bound.enabled:  # caching is switched off: the write alone
                    return result
                where = link.locate(bound, args, kwargs)
                stale = link.stale_tags(where.values)
                if stale:  # first, so the entry stored next carries the tags' new tokens
                    try:
                        link.spec.registry.invalidate_tags(*stale, backend=bound.slot.name)
                    except BackendError as exc:
                        link.invalidation_failed(bound, exc)
                read_sync.put(bound, where.key, where.tag_keys, result, where.aliases)
                return result

            wrapper = swrapper
        if kind == "staticmethod":
            return cast(F, staticmethod(wrapper))
        if kind == "classmethod":
            return cast(F, classmethod(wrapper))
        return cast(F, wrapper)

    return decorate
