"""``@write_through``: the database write runs first; on success the listed tags are
invalidated, then its result becomes the cached entry of a ``@cached`` reader (or of a key
template), stored with the tags' new tokens: a hit.
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
from cachedeco.flows._async import change as change_async
from cachedeco.flows._sync import change as change_sync
from cachedeco.flows.link import Link
from cachedeco.runtime.registry import Registry

__all__ = ["write_through"]

F = TypeVar("F", bound=Callable[..., Any])


def write_through(target: Any = None, *, key: str | None = None, ttl: TtlArg = None,
                  tags: TagsArg = (), invalidate: Iterable[str] = (), sensitive: bool = False,
                  backend: str = "default", registry: Registry | None = None
                  ) -> Callable[[F], F]:
    """Store a writer's result as a cached entry once the write succeeded.

    The function (the database write) runs first; if it raises, the cache is untouched (but
    for a cancellation, below). Then the `invalidate` tags are invalidated, and its result is
    stored as the entry named by `target` or `key` (after the invalidation, so that it
    carries the tags' new tokens and is a hit), with a compare-and-set that a concurrent
    read's fill can never overwrite. The store holds only while the entry is what it was
    before the write (read then: one round trip); when another write-through of the key, a
    fill or an invalidation changed it meanwhile, the entry is dropped instead, since which
    write the database committed last is not known: the next read loads it. If
    the store or the invalidation cannot reach the backend after the write succeeded, the
    old entry is not left to be served: auto-recovery drops it (and invalidates the tags)
    once the backend answers again, and this process does not serve it meanwhile (counted;
    raised under `on_error="raise"`, and retried all the same). An asyncio writer cancelled
    by its caller, or a synchronous one interrupted (`KeyboardInterrupt`, `SystemExit`),
    may have committed: the entry is dropped and the `invalidate` tags invalidated the same
    way. While caching is switched off the write runs alone.

    Args:
        target: A `@cached` function: the result becomes its entry for the arguments the
            writer shares with it by name (each of the target's parameters must be one of
            the writer's). Exactly one of `target` and `key`.
        key: A key template over the writer's parameters, naming the entry instead.
        ttl: Seconds, a `timedelta` or a function `ttl(result) -> seconds`; `None`: the
            target's (the registry's with `key`).
        tags: The entry's tag templates, with `key` only (a reader checks its own tags, so
            with a `target` its tags are used: giving others is a `ConfigurationError`).
        invalidate: Tag templates over the writer's parameters, invalidated before the
            store.
        sensitive: Encrypt the entry and hash the arguments in its key (needs the
            registry's `encryption_key=`). With a `target`, the target decides; `True`
            insists that it is sensitive too.
        backend: The name of the registry's backend to use.
        registry: The registry to bind to; `None`: the default `cachedeco.registry`.

    Returns:
        A decorator that wraps the writer, keeping its signature and flavour.

    Raises:
        ConfigurationError: Both or neither of `target` and `key`, or a target parameter
            the writer lacks.
    """
    check_placement(backend, registry)
    sensitive = check_flag(sensitive, "sensitive")

    def decorate(writer: F) -> F:
        func, kind = unwrap_callable(writer, "write_through")
        link = Link(func, "write_through", target, key=key, ttl=ttl, tags=tags,
                    invalidate=invalidate, backend=backend, registry=registry,
                    sensitive=sensitive)
        wrapper = (_async_writer if inspect.iscoroutinefunction(func) else _sync_writer)(
            link, func)
        if kind == "staticmethod":
            return cast(F, staticmethod(wrapper))
        if kind == "classmethod":
            return cast(F, classmethod(wrapper))
        return cast(F, wrapper)

    return decorate


def _async_writer(link: Link, func: Callable[..., Any]) -> Callable[..., Any]:
    """The asyncio writer's wrapper: the write, then the cache's changes."""

    @functools.wraps(func)
    async def awrapper(*args: Any, **kwargs: Any) -> Any:
        bound = link.bound()
        if not bound.enabled:  # caching is switched off: the write alone
            return await func(*args, **kwargs)
        where = link.locate(bound, args, kwargs)
        # before the write: its store holds only while nothing else changed since
        seen = await change_async.read_marker(bound, where.key, where.tag_keys)
        stale = link.stale_tags(where.values)
        own = frozenset(map(bound.keyspace.tag, stale))
        try:
            result = await func(*args, **kwargs)
            if stale:  # first, so the entry stored next carries the tags' new tokens
                try:
                    await link.spec.registry.ainvalidate_tags(
                        *stale, backend=bound.slot.name)
                except BackendError as exc:  # on_error="raise"; kept and retried
                    await change_async.put(bound, where.key, where.tag_keys, result,
                                           where.aliases, seen=seen, own=own)
                    raise exc from exc.__cause__
            await change_async.put(bound, where.key, where.tag_keys, result,
                                   where.aliases, seen=seen, own=own)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled: the write may have
                # committed, its cache changes not: made by auto-recovery
                bound.unsettled([where.key, *where.aliases], sorted(own))
            raise
        return result

    return awrapper


def _sync_writer(link: Link, func: Callable[..., Any]) -> Callable[..., Any]:
    """The synchronous twin of `_async_writer`, differing only where I/O happens."""

    @functools.wraps(func)
    def swrapper(*args: Any, **kwargs: Any) -> Any:
        bound = link.bound()
        if not bound.enabled:  # caching is switched off: the write alone
            return func(*args, **kwargs)
        where = link.locate(bound, args, kwargs)
        # before the write: its store holds only while nothing else changed since
        seen = change_sync.read_marker(bound, where.key, where.tag_keys)
        stale = link.stale_tags(where.values)
        own = frozenset(map(bound.keyspace.tag, stale))
        try:
            result = func(*args, **kwargs)
            if stale:  # first, so the entry stored next carries the tags' new tokens
                try:
                    link.spec.registry.invalidate_tags(*stale, backend=bound.slot.name)
                except BackendError as exc:  # on_error="raise"; kept and retried
                    change_sync.put(bound, where.key, where.tag_keys, result,
                                    where.aliases, seen=seen, own=own)
                    raise exc from exc.__cause__
            change_sync.put(bound, where.key, where.tag_keys, result, where.aliases,
                            seen=seen, own=own)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # interrupted (KeyboardInterrupt,
                # SystemExit): the write may have committed, as a cancelled one
                bound.unsettled([where.key, *where.aliases], sorted(own))
            raise
        return result

    return swrapper
